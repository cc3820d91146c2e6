//! Memory-mapped registers of the LM3S6965, and the only `unsafe` of the firmware.
//!
//! A [`Reg`] can only be built in this module, from an address in the data sheet, so reading
//! or writing one is sound wherever it happens.

#[derive(Clone, Copy)]
pub struct Reg(u32);

impl Reg {
    #[inline(always)]
    pub fn read(self) -> u32 {
        // SAFETY: `self.0` is one of the peripheral register addresses defined below (aligned,
        // always mapped on this chip); a volatile read has no other effect than the device's.
        unsafe { core::ptr::read_volatile(self.0 as *const u32) }
    }
    #[inline(always)]
    pub fn write(self, v: u32) {
        // SAFETY: as for `read`: a register address from this module, written volatile.
        unsafe { core::ptr::write_volatile(self.0 as *mut u32, v) }
    }
    #[inline(always)]
    pub fn set_bits(self, bits: u32) {
        self.write(self.read() | bits)
    }
}

const SYSCTL: u32 = 0x400F_E000;
/// Run-mode clock gating: UART0 (bit 0), UART1 (bit 1), SSI0 (bit 4).
pub const RCGC1: Reg = Reg(SYSCTL + 0x104);
/// Run-mode clock gating: GPIO ports A (bit 0), B (bit 1), D (bit 3), F (bit 5).
pub const RCGC2: Reg = Reg(SYSCTL + 0x108);

/// A PL061 GPIO port (Stellaris variant with a digital-enable register).
#[derive(Clone, Copy)]
pub struct Gpio(u32);
pub const GPIO_A: Gpio = Gpio(0x4000_4000);
pub const GPIO_B: Gpio = Gpio(0x4000_5000);
pub const GPIO_D: Gpio = Gpio(0x4000_7000);
pub const GPIO_F: Gpio = Gpio(0x4002_5000);

impl Gpio {
    /// The masked data register: bits of `mask` only (address bits 9:2 select the pins).
    pub fn data(self, mask: u8) -> Reg {
        Reg(self.0 + ((mask as u32) << 2))
    }
    pub fn dir(self) -> Reg {
        Reg(self.0 + 0x400)
    }
    pub fn afsel(self) -> Reg {
        Reg(self.0 + 0x420)
    }
    pub fn den(self) -> Reg {
        Reg(self.0 + 0x51C)
    }
}

/// A PL011 UART (Stellaris variant).
#[derive(Clone, Copy)]
pub struct UartRegs(u32);
pub const UART0: UartRegs = UartRegs(0x4000_C000);
pub const UART1: UartRegs = UartRegs(0x4000_D000);

impl UartRegs {
    pub fn dr(self) -> Reg {
        Reg(self.0)
    }
    pub fn fr(self) -> Reg {
        Reg(self.0 + 0x18)
    }
    pub fn ibrd(self) -> Reg {
        Reg(self.0 + 0x24)
    }
    pub fn fbrd(self) -> Reg {
        Reg(self.0 + 0x28)
    }
    pub fn lcrh(self) -> Reg {
        Reg(self.0 + 0x2C)
    }
    pub fn ctl(self) -> Reg {
        Reg(self.0 + 0x30)
    }
    pub fn im(self) -> Reg {
        Reg(self.0 + 0x38)
    }
    pub fn icr(self) -> Reg {
        Reg(self.0 + 0x44)
    }
}

/// SSI0, a PL022 synchronous serial port (SPI master here).
pub mod ssi0 {
    use super::Reg;
    const BASE: u32 = 0x4000_8000;
    pub const CR0: Reg = Reg(BASE);
    pub const CR1: Reg = Reg(BASE + 0x04);
    pub const DR: Reg = Reg(BASE + 0x08);
    pub const SR: Reg = Reg(BASE + 0x0C);
    pub const CPSR: Reg = Reg(BASE + 0x10);
}
