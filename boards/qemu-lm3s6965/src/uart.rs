//! UART0 (console) and UART1 (heartbeat link): polled transmit, interrupt-driven receive into
//! ring buffers.
//!
//! When a ring buffer fills, the receive interrupt is masked instead of dropping bytes: the
//! UART's FIFO then fills and the sender is held off (QEMU's chardev back-pressures; on real
//! hardware the link layer's CRC and COBS resynchronisation cover an overrun). The main loop
//! unmasks it after draining.

use crate::regs::{UartRegs, RCGC1, UART0, UART1};
use core::cell::RefCell;
use critical_section::Mutex;
use heapless::Deque;

const FR_RXFE: u32 = 1 << 4;
const FR_TXFF: u32 = 1 << 5;
/// Receive and receive-timeout interrupts.
const IM_RX: u32 = (1 << 4) | (1 << 6);

pub type Ring<const N: usize> = Mutex<RefCell<Deque<u8, N>>>;
pub static CONSOLE_RX: Ring<128> = Mutex::new(RefCell::new(Deque::new()));
pub static LINK_RX: Ring<128> = Mutex::new(RefCell::new(Deque::new()));

#[derive(Clone, Copy)]
pub struct Uart(UartRegs);
pub const CONSOLE: Uart = Uart(UART0);
pub const LINK: Uart = Uart(UART1);

impl Uart {
    /// 115200 8N1 with FIFOs, receive interrupts on. `sysclk_hz` sets the divisor (QEMU
    /// ignores it; real silicon needs it right).
    pub fn init(self, sysclk_hz: u32) {
        RCGC1.set_bits(0b11);
        let r = self.0;
        r.ctl().write(0);
        // Divisor = sysclk / (16 × baud), as 16.6 fixed point.
        let div64 = (sysclk_hz as u64 * 4 / 115_200) as u32;
        r.ibrd().write(div64 >> 6);
        r.fbrd().write(div64 & 0x3F);
        r.lcrh().write(0x70); // 8 data bits, FIFO enabled
        r.icr().write(0x7FF);
        r.im().write(IM_RX);
        r.ctl().write((1 << 9) | (1 << 8) | 1); // RXE | TXE | UARTEN
    }

    pub fn write_byte(self, b: u8) {
        while self.0.fr().read() & FR_TXFF != 0 {}
        self.0.dr().write(b as u32);
    }

    /// Interrupt handler body: hardware FIFO → ring; masks itself if the ring is full.
    pub fn on_interrupt<const N: usize>(self, ring: &Ring<N>) {
        critical_section::with(|cs| {
            let mut q = ring.borrow_ref_mut(cs);
            while self.0.fr().read() & FR_RXFE == 0 {
                if q.is_full() {
                    self.0.im().write(0);
                    return;
                }
                let _ = q.push_back(self.0.dr().read() as u8);
            }
        });
    }

    /// Takes one received byte, if any (main loop side).
    pub fn pop<const N: usize>(self, ring: &Ring<N>) -> Option<u8> {
        let b = critical_section::with(|cs| ring.borrow_ref_mut(cs).pop_front());
        if b.is_none() {
            // Drained: let the receive interrupt back in (a no-op when it was never masked).
            self.0.im().write(IM_RX);
        }
        b
    }
}

/// The console as a `core::fmt::Write` sink (CRLF line ends for VT100 terminals).
pub struct Console;

impl core::fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                CONSOLE.write_byte(b'\r');
            }
            CONSOLE.write_byte(b);
        }
        Ok(())
    }
}
