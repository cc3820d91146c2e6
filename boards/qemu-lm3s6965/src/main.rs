//! Rearguard's standby listener as firmware for QEMU's `lm3s6965evb` (a Cortex-M3 standing in
//! for a storage controller).
//!
//! - shared disk: SD card on SSI0 (SPI mode), CS = PD0 ([`sd`])
//! - heartbeat link: UART1, COBS frames ([`link`])
//! - console: UART0 ([`uart::Console`])
//! - boot gate: PF0 driven high, plus a console line starting `BOOT RELEASED`
//! - time base: SysTick at 100 Hz (QEMU without icount drifts at 1 kHz)
//!
//! Everything else is the unchanged `rearguard-firmware` application.
#![no_std]
#![no_main]

mod regs;
mod sd;
mod uart;

use core::fmt::Write;
use core::sync::atomic::{AtomicU32, Ordering};
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::{entry, exception};
use lm3s6965::interrupt;
use panic_halt as _;
use rearguard_firmware::board::{BootGate, FrameLink, NvCopy, NvStore};
use rearguard_firmware::{App, Event};
use rearguard_shared::config::{self, ListenerConfig, RECORD_LEN};
use rearguard_shared::disk::{DiskHeader, HeaderError};
use rearguard_shared::link::{Feed, FrameReader};
use rearguard_shared::Instant;
use uart::Console;

/// The core clock SysTick counts. QEMU's lm3s6965evb nominally runs at 12 MHz, but keeps its
/// clock period in whole nanoseconds (80 ns), so SysTick effectively counts 12.5 MHz: measured,
/// 100 ticks of 120 000 cycles took 0.96 s of wall time; with 125 000 they take 1.00 s. On real
/// silicon this is whatever the PLL is set to.
const SYSCLK_HZ: u32 = 12_500_000;
const TICK_HZ: u32 = 100;
const TICK_MS: u64 = 1000 / TICK_HZ as u64;

static TICKS: AtomicU32 = AtomicU32::new(0);

fn now() -> Instant {
    Instant::from_millis(TICKS.load(Ordering::Relaxed) as u64 * TICK_MS)
}

#[exception]
fn SysTick() {
    TICKS.fetch_add(1, Ordering::Relaxed);
}

#[interrupt]
fn UART0() {
    uart::CONSOLE.on_interrupt(&uart::CONSOLE_RX);
}

#[interrupt]
fn UART1() {
    uart::LINK.on_interrupt(&uart::LINK_RX);
}

/// Chunks on the link that were not frames, by [`rearguard_shared::link::FramingError`].
static FRAMING_ERRORS: [AtomicU32; 2] = [AtomicU32::new(0), AtomicU32::new(0)];

/// UART1 as a [`FrameLink`]: bytes from the receive ring through the COBS reader.
struct UartLink {
    reader: FrameReader,
}

impl FrameLink for UartLink {
    fn next_frame(&mut self, buf: &mut [u8]) -> Option<usize> {
        while let Some(b) = uart::LINK.pop(&uart::LINK_RX) {
            match self.reader.feed(b) {
                Feed::Pending => {}
                Feed::Frame(n) => {
                    let n = n.min(buf.len());
                    buf[..n].copy_from_slice(&self.reader.frame()[..n]);
                    return Some(n);
                }
                Feed::Bad(e) => {
                    FRAMING_ERRORS[e as usize].fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        None
    }
}

/// PF0 (the EVB's user LED): low holds the secondary at POST, high lets it boot.
struct GpioGate;

impl GpioGate {
    fn init() -> GpioGate {
        regs::RCGC2.set_bits(1 << 5);
        regs::GPIO_F.dir().set_bits(1);
        regs::GPIO_F.den().set_bits(1);
        regs::GPIO_F.data(1).write(0);
        GpioGate
    }
}

impl BootGate for GpioGate {
    type Error = core::convert::Infallible;
    fn release(&mut self) -> Result<(), Self::Error> {
        regs::GPIO_F.data(1).write(1);
        Ok(())
    }
}

#[entry]
fn main() -> ! {
    let mut cp = cortex_m::Peripherals::take().unwrap();
    uart::CONSOLE.init(SYSCLK_HZ);
    uart::LINK.init(SYSCLK_HZ);
    let gate = GpioGate::init();
    cp.SYST.set_clock_source(SystClkSource::Core);
    cp.SYST.set_reload(SYSCLK_HZ / TICK_HZ - 1);
    cp.SYST.clear_current();
    cp.SYST.enable_interrupt();
    cp.SYST.enable_counter();
    // SAFETY: the handlers above only touch their own ring buffer through a critical section.
    unsafe {
        cortex_m::peripheral::NVIC::unmask(lm3s6965::Interrupt::UART0);
        cortex_m::peripheral::NVIC::unmask(lm3s6965::Interrupt::UART1);
    }
    let mut con = Console;
    let _ = writeln!(con, "\nrearguard listener firmware {} (lm3s6965evb)", env!("CARGO_PKG_VERSION"));

    let card = sd::Card::init(sd::Spi::init()).map(core::cell::RefCell::new);
    let mut disk = match &card {
        Ok(card) => {
            let sectors = card.borrow().sectors;
            let _ = writeln!(con, "sd: {} KiB", sectors / 2);
            Some(sd::SdDisk { card, sectors })
        }
        Err(e) => {
            let _ = writeln!(con, "sd: no card ({e:?}): no shared disk and no saved config; serial link only");
            None
        }
    };
    let cfg = load_config(disk.as_mut(), &mut con);
    let use_disk = match disk.as_mut() {
        Some(d) => disk_has_area(d, &mut con),
        None => false,
    };
    let link = UartLink { reader: FrameReader::new() };
    let t0 = now();
    // Built in place: the application's 4 KiB block buffer must not be copied on the stack.
    let mut place = None;
    if let Err(e) = App::new_in(&mut place, cfg, if use_disk { disk } else { None }, Some(link), gate, t0) {
        let _ = writeln!(con, "ERROR: {e}\nholding the boot until this is fixed");
    }
    let mut app = place.as_mut();
    if let Some(a) = app.as_ref() {
        let c = a.config();
        let _ = writeln!(
            con,
            "listening: role {:?}, cluster {:#x}, watching node {}, timeout {}, poll {}, media: {}",
            c.role,
            c.cluster_id,
            c.primary_node,
            a.listener().params().timeout,
            c.poll_period,
            if a.disk_medium().is_some() { "disk+serial" } else { "serial" }
        );
    }
    let mut next_poll = t0;
    let mut disk_error_shown = false;
    loop {
        let t = now();
        if let Some(a) = app.as_mut() {
            if t >= next_poll {
                next_poll = t + a.config().poll_period;
                for ev in a.poll(t) {
                    report(&mut con, ev, &mut disk_error_shown);
                }
            }
        }
        // Console bytes are consumed here; the menu arrives in a later step.
        while uart::CONSOLE.pop(&uart::CONSOLE_RX).is_some() {}
        cortex_m::asm::wfi();
    }
}

fn report<DE: core::fmt::Debug>(con: &mut Console, ev: Event<DE, core::convert::Infallible>, disk_error_shown: &mut bool) {
    let _ = match ev {
        Event::State(s) => writeln!(con, "state: {}", s.name()),
        Event::TimeoutRaised { configured, disk } => {
            writeln!(con, "timeout raised from {configured} to {disk}: the shared disk header asks for it")
        }
        Event::ClaimWritten { primary_epoch } => writeln!(con, "takeover claim written (primary epoch {primary_epoch:?})"),
        Event::ClaimFailed(e) => writeln!(con, "takeover claim NOT written: {e:?}"),
        Event::Released(reason) => writeln!(con, "BOOT RELEASED: {reason}"),
        Event::PassThrough => writeln!(con, "BOOT RELEASED: role is primary (pass-through, nothing watched)"),
        Event::GateFailed(e) => match e {},
        Event::DiskReadFailed(e) => {
            if core::mem::replace(disk_error_shown, true) {
                Ok(())
            } else {
                writeln!(con, "shared disk: read failed ({e:?}); not liveness, the timeout decides")
            }
        }
    };
}

/// Reads both config copies; says which one is used and why the other is not.
#[inline(never)]
fn load_config<S: NvStore>(nv: Option<&mut S>, con: &mut Console) -> ListenerConfig {
    let Some(nv) = nv else { return ListenerConfig::factory() };
    let mut a = [0u8; RECORD_LEN];
    let mut b = [0u8; RECORD_LEN];
    let ra = nv.read_copy(NvCopy::A, &mut a);
    let rb = nv.read_copy(NvCopy::B, &mut b);
    if ra.is_err() || rb.is_err() {
        let _ = writeln!(con, "config: cannot read the config copies ({ra:?}, {rb:?}): factory defaults");
        return ListenerConfig::factory();
    }
    match config::load(&a, &b) {
        Ok(l) => {
            let _ = write!(con, "config: copy {} (generation {})", l.from.name(), l.generation);
            if let Some(p) = l.other_problem {
                let _ = write!(con, "; copy {} unusable: {p}", l.from.other().name());
            }
            let _ = writeln!(con);
            l.config
        }
        Err((ea, eb)) => {
            let _ = writeln!(con, "config: no valid copy (A: {ea}; B: {eb}): factory defaults");
            ListenerConfig::factory()
        }
    }
}

/// Whether the SD card holds a heartbeat area. A blank card means "serial link only"; any
/// other header problem is left for the application to refuse (it names the fix).
#[inline(never)]
fn disk_has_area(d: &mut sd::SdDisk<'_>, con: &mut Console) -> bool {
    // The header sits in the first sector; reading only that keeps 4 KiB off the stack.
    let mut sector = [0u8; 512];
    if d.read_sector(0, &mut sector).is_err() {
        return true;
    }
    match DiskHeader::decode(&sector) {
        Err(HeaderError::NotInitialised) => {
            let _ = writeln!(con, "shared disk: no heartbeat area (blank): serial link only");
            false
        }
        _ => true,
    }
}
