//! Stack high-water mark, to show that the firmware keeps within its RAM budget.
//!
//! At reset the free RAM between the end of the statics and the current stack pointer is
//! filled with a pattern; the deepest word no longer holding it is the stack's peak so far.
//! The status screen prints it.

const PATTERN: u32 = 0x5AA5_5AA5;

extern "C" {
    // Provided by cortex-m-rt's link.x: end of .bss/.uninit (start of free RAM) and the
    // initial stack pointer (top of RAM).
    static mut __sheap: u32;
    static _stack_start: u32;
}

fn bounds() -> (*mut u32, usize) {
    let lo = &raw mut __sheap;
    let hi = &raw const _stack_start as usize;
    (lo, hi)
}

/// Fills free RAM below the current stack pointer with the pattern (call first in `main`).
pub fn paint() {
    let (lo, _) = bounds();
    let sp = cortex_m::register::msp::read() as usize;
    let mut p = lo;
    // Leave 64 bytes below the stack pointer untouched: this function's own frame.
    while (p as usize) < sp - 64 {
        // SAFETY: `p` runs over free RAM between the statics and the live stack, which nothing
        // else uses; the write is aligned and in bounds of the RAM region.
        unsafe { core::ptr::write_volatile(p, PATTERN) };
        p = p.wrapping_add(1);
    }
}

/// Bytes of RAM the stack can use: from the end of the statics to the top of RAM.
pub fn room() -> u32 {
    let (lo, hi) = bounds();
    (hi - lo as usize) as u32
}

/// Bytes of stack used at the deepest point so far (equal to [`room`] if it overflowed).
pub fn peak() -> u32 {
    let (lo, hi) = bounds();
    let mut p = lo;
    // SAFETY: reads of painted free RAM, aligned and in bounds; stops at the first word the
    // stack has written, which is below the live stack pointer.
    while (p as usize) < hi && unsafe { core::ptr::read_volatile(p) } == PATTERN {
        p = p.wrapping_add(1);
    }
    (hi - p as usize) as u32
}
