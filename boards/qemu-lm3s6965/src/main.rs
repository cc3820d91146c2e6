//! Rearguard's standby listener as firmware for QEMU's `lm3s6965evb` (a Cortex-M3 standing in
//! for a storage controller).
//!
//! - shared disk: SD card on SSI0 (SPI mode), CS = PD0 ([`sd`])
//! - heartbeat link: UART1, COBS frames ([`link`])
//! - console: UART0 ([`uart::Console`])
//! - boot gate: PF0 driven high, plus a console line starting `BOOT RELEASED`; the node the
//!   secondary is to become on PB0–PB4 (set before PF0 rises)
//! - time base: SysTick at 100 Hz (QEMU without icount drifts at 1 kHz)
//!
//! Everything else is the unchanged `rearguard-firmware` application.
#![no_std]
#![no_main]

#[macro_use]
mod log;
mod mem;
mod regs;
mod sd;
mod stack;
mod uart;

use core::cell::RefCell;
use core::mem::MaybeUninit;
use core::fmt::Write;
use core::sync::atomic::{AtomicU32, Ordering};
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::{entry, exception};
use panic_halt as _;
use rearguard_firmware::board::{BootGate, FrameLink};
use rearguard_firmware::menu::{self, Menu, Request, Status};
use rearguard_firmware::{nv, report, App, Event, StartError};
use rearguard_shared::config::ListenerConfig;
use rearguard_shared::disk::HeaderError;
use rearguard_shared::link::{Feed, FrameReader, FramingError};
use rearguard_shared::listener::Takeover;
use rearguard_shared::packed;
use rearguard_shared::text::Text;
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

/// Core cycles since reset (wrapping every 5.7 minutes): finer than [`now`], for timing a poll.
fn cycles() -> u32 {
    const RELOAD: u32 = SYSCLK_HZ / TICK_HZ;
    loop {
        let ticks = TICKS.load(Ordering::Relaxed);
        let left = cortex_m::peripheral::SYST::get_current();
        // A tick between the two reads would pair the new count with the old ticks.
        if TICKS.load(Ordering::Relaxed) == ticks {
            return ticks.wrapping_mul(RELOAD).wrapping_add(RELOAD - 1 - left);
        }
    }
}

/// The last and the longest poll, in microseconds (the status screen shows them).
static POLL_US: [AtomicU32; 2] = [AtomicU32::new(0), AtomicU32::new(0)];

#[exception]
fn SysTick() {
    TICKS.fetch_add(1, Ordering::Relaxed);
}

/// The LM3S6965's interrupts this board takes (its vector numbers).
#[derive(Clone, Copy)]
enum Irq {
    Uart0 = 5,
    Uart1 = 6,
}

// SAFETY: the numbers are the LM3S6965's UART0 and UART1 interrupts.
unsafe impl cortex_m::interrupt::InterruptNumber for Irq {
    fn number(self) -> u16 {
        self as u16
    }
}

extern "C" fn uart0() {
    uart::CONSOLE.on_interrupt(&uart::CONSOLE_RX);
}

extern "C" fn uart1() {
    uart::LINK.on_interrupt(&uart::LINK_RX);
}

extern "C" {
    /// cortex-m-rt's handler for an unexpected interrupt.
    fn DefaultHandler();
}

/// The device's part of the vector table, up to the last interrupt used (UART1): the
/// LM3S6965 has 44, and a full table would cost 148 bytes of flash for interrupts that are
/// never enabled. cortex-m-rt's `device` feature leaves this table to the board, which
/// supplies it here, and its (empty) `device.x` from build.rs.
#[link_section = ".vector_table.interrupts"]
#[no_mangle]
static __INTERRUPTS: [unsafe extern "C" fn(); 7] =
    [DefaultHandler, DefaultHandler, DefaultHandler, DefaultHandler, DefaultHandler, uart0, uart1];

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
                    warn!("link: framing error {=str}", e.name());
                    FRAMING_ERRORS[e as usize].fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        None
    }
}

/// PF0 (the EVB's user LED): low holds the secondary at POST, high lets it boot. PB0–PB4
/// say which node's boot configuration it takes (a spare of several primaries); they are set
/// before PF0 rises, so whoever samples them on the rising edge reads the right node.
struct GpioGate;

/// The node-number pins on port B.
const NODE_PINS: u8 = 0x1f;

impl GpioGate {
    fn init() {
        regs::RCGC2.set_bits(1 << 5 | 1 << 1);
        for (port, pins) in [(regs::GPIO_F, 1), (regs::GPIO_B, NODE_PINS)] {
            port.dir().set_bits(pins as u32);
            port.den().set_bits(pins as u32);
            port.data(pins).write(0);
        }
    }
}

impl BootGate for GpioGate {
    type Error = core::convert::Infallible;
    fn release(&mut self, t: Option<&Takeover>) -> Result<(), Self::Error> {
        // A primary passing through (no takeover) boots as itself: node pins stay 0.
        regs::GPIO_B.data(NODE_PINS).write(t.map_or(0, |t| t.node as u32));
        regs::GPIO_F.data(1).write(1);
        Ok(())
    }
    fn check(&mut self) -> Result<&'static str, &'static str> {
        let outputs =
            regs::GPIO_F.dir().read() & 1 != 0 && regs::GPIO_B.dir().read() & NODE_PINS as u32 == NODE_PINS as u32;
        if outputs && regs::GPIO_F.data(1).read() == 0 {
            Ok(packed!("PF0 low (secondary held at POST), PB0-PB4 outputs"))
        } else {
            Err(packed!("PF0 high, or PF0 or PB0-PB4 not an output: the secondary is not held"))
        }
    }
}

/// A spare of up to 31 primaries (every other slot of a full disk); one primary's secondary
/// is the same application watching one.
type BoardApp<'c> = App<sd::SdDisk<'c>, UartLink, GpioGate, 31>;

/// The application, built by a constant and (re)started in place ([`App::blank`]): a spare of
/// 31 primaries is 3.5 KiB, and 8 KiB of RAM has no room for it twice, in a static and in a
/// temporary on the stack.
static mut APP: MaybeUninit<BoardApp<'static>> = MaybeUninit::uninit();

/// Builds [`APP`] in place. Not inlined, so that the compiler writes the application
/// straight into the static: the disassembly shows 1.5 KiB of stack for the smaller parts,
/// at boot only, and no 3.6 KiB copy (written in `main`, the copy stayed in its frame under
/// every poll).
#[inline(never)]
fn init_app() -> &'static mut BoardApp<'static> {
    // SAFETY: called once, from `main`, which never returns; no interrupt handler touches
    // APP: this is the only reference to it, ever.
    blank_into(unsafe { &mut *core::ptr::addr_of_mut!(APP) })
}

#[inline(never)]
fn blank_into(place: &'static mut MaybeUninit<BoardApp<'static>>) -> &'static mut BoardApp<'static> {
    place.write(App::blank(GpioGate))
}

fn framing() -> [(&'static str, u32); 2] {
    [
        (FramingError::BadCobs.name(), FRAMING_ERRORS[FramingError::BadCobs as usize].load(Ordering::Relaxed)),
        (FramingError::Overlong.name(), FRAMING_ERRORS[FramingError::Overlong as usize].load(Ordering::Relaxed)),
    ]
}

#[entry]
fn main() -> ! {
    stack::paint();
    let mut cp = cortex_m::Peripherals::take().unwrap();
    uart::CONSOLE.init(SYSCLK_HZ);
    uart::LINK.init(SYSCLK_HZ);
    GpioGate::init();
    cp.SYST.set_clock_source(SystClkSource::Core);
    cp.SYST.set_reload(SYSCLK_HZ / TICK_HZ - 1);
    cp.SYST.clear_current();
    cp.SYST.enable_interrupt();
    cp.SYST.enable_counter();
    // SAFETY: the handlers above only touch their own ring buffer through a critical section.
    unsafe {
        cortex_m::peripheral::NVIC::unmask(Irq::Uart0);
        cortex_m::peripheral::NVIC::unmask(Irq::Uart1);
    }
    let mut con = Console;
    let _ = con.write_str(concat!("\nrearguard listener firmware ", env!("CARGO_PKG_VERSION"), " (lm3s6965evb)\n"));
    info!("boot: rearguard listener firmware {=str}", env!("CARGO_PKG_VERSION"));

    let card: &'static Result<RefCell<sd::Card>, sd::CardError> =
        cortex_m::singleton!(: Result<RefCell<sd::Card>, sd::CardError> = sd::Card::init(sd::Spi::init()).map(RefCell::new))
            .expect("main runs once");
    // A fresh handle on the card whenever one is needed (disk medium, config store).
    let handle = || card.as_ref().ok().map(|c| sd::SdDisk { card: c, sectors: c.borrow().sectors });
    let (cfg, persist) = boot_config(handle(), &mut con);
    let app = init_app();
    start(app, cfg.clone(), handle(), &mut con);
    let mut menu = Menu::new(cfg, persist);
    let _ = Text::new(&mut con).s(packed!("type help for the configuration menu\n")).end();
    let _ = con.write_str(menu::PROMPT);

    let mut next_poll = now();
    let mut read_failures = 0u32;
    loop {
        let t = now();
        if app.is_running() && t >= next_poll {
            next_poll = t + app.config().poll_period;
            poll(app, t, handle(), &mut con, &mut read_failures);
        }
        while let Some(b) = uart::CONSOLE.pop(&uart::CONSOLE_RX) {
            if menu.feed(b, &mut con)
                && console_line(&mut menu, app, handle(), handle(), &mut con, &mut read_failures)
            {
                next_poll = now();
            }
        }
        cortex_m::asm::wfi();
    }
}

/// One poll of every medium (out of `main` so its frame is not under every console line).
#[inline(never)]
fn poll(app: &mut BoardApp<'_>, t: Instant, nv: Option<sd::SdDisk<'_>>, con: &mut Console, read_failures: &mut u32) {
    let start = cycles();
    app.poll_with(t, &mut |ev| report(con, &ev, read_failures));
    app.drill_poll(t, con);
    if let Some(mut nv) = nv {
        app.store_marks(&mut nv, t, con);
    }
    // 12.5 cycles a microsecond (see SYSCLK_HZ), to 2 µs.
    let us = cycles().wrapping_sub(start) / 25 * 2;
    POLL_US[0].store(us, Ordering::Relaxed);
    POLL_US[1].fetch_max(us, Ordering::Relaxed);
}

#[inline(never)]
fn release_now(app: &mut BoardApp<'_>, t: Instant, con: &mut Console, read_failures: &mut u32) {
    app.release_now(t, &mut |ev| report(con, &ev, read_failures));
}

/// Reads the config copies from the SD card and says which one is used.
#[inline(never)]
fn boot_config(disk: Option<sd::SdDisk<'_>>, con: &mut Console) -> (ListenerConfig, nv::Persist) {
    match disk {
        Some(mut d) => {
            let _ = Text::new(&mut *con).s("sd: ").n(d.sectors / 2).s(" KiB").nl();
            info!("sd: {=u32} sectors", d.sectors);
            let (cfg, persist, report) = nv::load(&mut d);
            match report {
                nv::LoadReport::Loaded { generation, other: None, .. } => {
                    info!("config: generation {=u32}", generation)
                }
                nv::LoadReport::Loaded { generation, other: Some(_), .. } => {
                    warn!("config: generation {=u32}, the other copy is unusable", generation)
                }
                _ => warn!("config: no valid copy, factory settings"),
            }
            let _ = Text::new(&mut *con).say(&report).nl();
            (cfg, persist)
        }
        None => {
            warn!("sd: no card");
            let _ = Text::new(&mut *con).s(packed!("sd: no card: serial link only, factory settings, no saving\n")).end();
            (ListenerConfig::factory(), nv::Persist::NONE)
        }
    }
}

/// Runs one completed console line. Kept out of `main` so its buffers are on the stack only
/// while a line runs, not under every heartbeat poll. Returns whether the listener restarted.
#[inline(never)]
fn console_line<'c>(
    menu: &mut Menu,
    app: &mut BoardApp<'c>,
    mut nv: Option<sd::SdDisk<'c>>,
    disk: Option<sd::SdDisk<'c>>,
    con: &mut Console,
    read_failures: &mut u32,
) -> bool {
    let t = now();
    let mut status = Status::of(app.is_running().then_some(&*app), framing(), t);
    status.stack_peak = Some((stack::peak(), stack::room()));
    status.poll_us = Some((POLL_US[0].load(Ordering::Relaxed), POLL_US[1].load(Ordering::Relaxed)));
    let mut restarted = false;
    match menu.run_line(&status, nv.as_mut(), con) {
        Request::None => {}
        Request::ReleaseNow if app.is_running() => release_now(app, t, con, read_failures),
        Request::ReleaseNow => {
            let _ = GpioGate.release(None);
            let _ = report::released_without_listener(con);
        }
        Request::Drill => app.drill_start(t, con),
        Request::Apply(cfg) => {
            info!("console: settings saved");
            if app.gate_opened() {
                let _ = report::saved_after_release(con);
            } else {
                start(app, cfg, disk, con);
                restarted = true;
            }
        }
    }
    let _ = con.write_str(menu::PROMPT);
    restarted
}

/// (Re)starts the listener with `cfg`; on a refused config it stays stopped (holding) and says
/// why, and the menu can fix it.
#[inline(never)]
fn start<'c>(a: &mut BoardApp<'c>, cfg: ListenerConfig, disk: Option<sd::SdDisk<'c>>, con: &mut Console) {
    // The replay marks sit on the same card, beside the config copies.
    let nv = disk.as_ref().map(|d| sd::SdDisk { card: d.card, sectors: d.sectors });
    let link = || Some(UartLink { reader: FrameReader::new() });
    let mut started = a.start(cfg.clone(), disk, link(), now());
    // A blank card is not an error: the link alone is watched (any other header problem is
    // refused, and the message names the fix).
    if let Err(StartError::Header(HeaderError::NotInitialised)) = started {
        let _ = Text::new(&mut *con).s(packed!("shared disk: no heartbeat area (blank): serial link only\n")).end();
        started = a.start(cfg, None, link(), now());
    }
    if let Err(e) = started {
        warn!("listener refused to start");
        let _ = Text::new(&mut *con).s("ERROR: ").say(&e).s(packed!("\nholding the boot until this is fixed (type help)")).nl();
        return;
    }
    if let Some(mut nv) = nv {
        a.load_marks(&mut nv, now(), con);
    }
    let c = a.config();
    info!(
        "listener started: timeout {=u64} ms, poll {=u64} ms, disk medium {=bool}",
        a.listener().params().timeout.as_millis(),
        c.poll_period.as_millis(),
        a.disk_medium().is_some()
    );
    let media = match (a.disk_medium(), a.link_medium()) {
        (Some(_), Some(_)) => "disk+serial",
        (Some(_), None) => "disk",
        _ => "serial",
    };
    // A spare's line names its primaries; this build is always its disk's only spare.
    let _ = report::started(con, c, a.listener().params().timeout, media);
}

/// Logs an event and prints its line. Only the first failed slot read is shown: the console
/// is the operator's, and a dead card must not bury it at the poll rate.
#[inline(never)]
fn report<DE: rearguard_shared::text::Say>(
    con: &mut Console,
    ev: &Event<DE, core::convert::Infallible>,
    read_failures: &mut u32,
) {
    match ev {
        Event::State(s) => info!("state: {=str}", s.name()),
        Event::Released { .. } | Event::PassThrough => info!("BOOT RELEASED"),
        Event::ClaimWritten { .. } => info!("takeover claim written"),
        Event::ClaimFailed(_) => warn!("takeover claim not written"),
        Event::DiskReadFailed(_) => warn!("shared disk read failed"),
        _ => {}
    }
    if let Event::DiskReadFailed(_) = ev {
        *read_failures = read_failures.saturating_add(1);
        if *read_failures > 1 {
            return;
        }
    }
    let _ = report::event(con, ev, *read_failures);
}
