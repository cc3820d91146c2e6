//! Console text for the controller firmware without `core::fmt`'s number formatting and
//! padding (`Formatter::pad`, `pad_integral`, the decimal tables): together about 2 KiB of
//! a 32 KiB flash budget. Numbers are written by [`Text::n`] and [`Text::hex`] in 32 bits
//! (64-bit division is another library routine); a value past `u32::MAX` prints as the
//! maximum. Only [`Text::d`] goes through `core::fmt`, for a board's own error types.
//!
//! ```
//! # use rearguard_shared::text::Text;
//! let mut s = String::new();
//! Text::new(&mut s).s("cluster ").hex(0xc0ffee).s(", node ").n(3).nl().unwrap();
//! assert_eq!(s, "cluster 0xc0ffee, node 3\n");
//! ```

use crate::Duration;
use core::fmt::{Display, Result, Write};

/// Writes pieces in order; the first error is kept and later pieces are skipped. Methods
/// take and return `&mut Text` and are never inlined: a line is a row of short calls.
pub struct Text<'a> {
    out: &'a mut dyn Write,
    r: Result,
}

impl<'a> Text<'a> {
    pub fn new(out: &'a mut dyn Write) -> Text<'a> {
        Text { out, r: Ok(()) }
    }

    #[inline(never)]
    pub fn s(&mut self, s: &str) -> &mut Self {
        if self.r.is_ok() {
            self.r = self.out.write_str(s);
        }
        self
    }

    /// Decimal.
    pub fn n(&mut self, n: impl TryInto<u32>) -> &mut Self {
        self.radix(n.try_into().unwrap_or(u32::MAX), 10, 1)
    }

    /// `0x` and lower-case hex digits.
    pub fn hex(&mut self, n: u32) -> &mut Self {
        self.s("0x").radix(n, 16, 1)
    }

    /// `0x` and all eight hex digits (`0x0000002a`), as ids are printed elsewhere.
    pub fn hex8(&mut self, n: u32) -> &mut Self {
        self.s("0x").radix(n, 16, 8)
    }

    /// Whole milliseconds: `1500 ms`.
    #[inline(never)]
    pub fn ms(&mut self, d: Duration) -> &mut Self {
        self.n(d.as_millis()).s(" ms")
    }

    /// Anything else through its `Display` (the one `core::fmt` path).
    #[inline(never)]
    pub fn d(&mut self, x: &dyn Display) -> &mut Self {
        if self.r.is_ok() {
            self.r = write!(self.out, "{x}");
        }
        self
    }

    /// Ends the line.
    pub fn nl(&mut self) -> Result {
        self.s("\n").r
    }

    pub fn end(&mut self) -> Result {
        self.r
    }

    #[inline(never)]
    fn radix(&mut self, mut n: u32, radix: u32, width: usize) -> &mut Self {
        let mut buf = [b'0'; 10];
        let mut i = buf.len();
        while n > 0 || i + width > buf.len() {
            i -= 1;
            let d = (n % radix) as u8;
            buf[i] = if d < 10 { b'0' + d } else { b'a' - 10 + d };
            n /= radix;
        }
        for &c in &buf[i..] {
            if self.r.is_ok() {
                self.r = self.out.write_char(c as char);
            }
        }
        self
    }
}

/// A `&str` as a `Display` that writes it as it is: `str`'s own `Display` honours width and
/// fill, which brings `Formatter::pad` into the image.
pub struct Plain<'a>(pub &'a str);

impl Display for Plain<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> Result {
        f.write_str(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::String;

    fn text(f: impl FnOnce(&mut Text)) -> String {
        let mut s = String::new();
        let mut t = Text::new(&mut s);
        f(&mut t);
        t.end().unwrap();
        s
    }

    #[test]
    fn numbers_in_decimal_and_hex_at_their_limits() {
        assert_eq!(text(|t| _ = t.n(0u32).s(" ").n(u32::MAX).s(" ").n(7u8)), "0 4294967295 7");
        assert_eq!(text(|t| _ = t.n(u64::MAX)), "4294967295");
        assert_eq!(text(|t| _ = t.hex(0).s(" ").hex(0xdead_beef)), "0x0 0xdeadbeef");
        assert_eq!(text(|t| _ = t.hex8(0x2a).s(" ").hex8(u32::MAX)), "0x0000002a 0xffffffff");
        assert_eq!(text(|t| _ = t.ms(Duration::from_millis(1500))), "1500 ms");
        assert_eq!(text(|t| _ = t.d(&"x").d(&12).d(&Plain("y"))), "x12y");
    }
}
