//! Log macros: defmt frames over semihosting with the `defmt` feature, nothing without it
//! (the budgeted release image has no room for a logger, and QEMU without semihosting would
//! fault on the first semihosting call). Read the frames with `defmt-print` (README.md).

#[cfg(feature = "defmt")]
use defmt_semihosting as _; // the global logger

#[cfg(feature = "defmt")]
macro_rules! info {
    ($($t:tt)*) => { defmt::info!($($t)*) };
}
// Without defmt the arguments are type-checked but never evaluated (no code, no warnings).
#[cfg(not(feature = "defmt"))]
macro_rules! info {
    ($fmt:literal $(, $arg:expr)* $(,)?) => {{
        if false {
            $(let _ = &$arg;)*
        }
    }};
}

#[cfg(feature = "defmt")]
macro_rules! warn {
    ($($t:tt)*) => { defmt::warn!($($t)*) };
}
#[cfg(not(feature = "defmt"))]
macro_rules! warn {
    ($fmt:literal $(, $arg:expr)* $(,)?) => {{
        if false {
            $(let _ = &$arg;)*
        }
    }};
}

#[cfg(feature = "defmt")]
defmt::timestamp!("{=u32:010}ms", crate::TICKS.load(core::sync::atomic::Ordering::Relaxed) * 10);
