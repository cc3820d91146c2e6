//! Console text for the controller firmware without `core::fmt`'s number formatting and
//! padding (`Formatter::pad`, `pad_integral`, the decimal tables): together about 2 KiB of
//! a 32 KiB flash budget. Numbers are written by [`Text::n`] and [`Text::hex`] in 32 bits
//! (64-bit division is another library routine); a value past `u32::MAX` prints as the
//! maximum. Only [`Text::d`] goes through `core::fmt`, for a board's own error types.
//! Messages written as [`packed!`](crate::packed) literals are stored with common words as
//! one-byte tokens, and [`Text::s`] writes them out as typed.
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
    out: &'a mut dyn Out,
    r: Result,
}

impl<'a> Text<'a> {
    pub fn new(out: &'a mut dyn Out) -> Text<'a> {
        Text { out, r: Ok(()) }
    }

    /// A piece of text, its [`packed!`](crate::packed) words written out in full.
    #[inline(never)]
    pub fn s(&mut self, s: &str) -> &mut Self {
        let mut plain = 0;
        for (i, b) in s.bytes().enumerate() {
            if let Some(w) = word(b) {
                self.put(s.get(plain..i).unwrap_or_default()).put(w);
                plain = i + 1;
            }
        }
        self.put(s.get(plain..).unwrap_or_default())
    }

    fn put(&mut self, s: &str) -> &mut Self {
        if self.r.is_ok() {
            self.r = self.out.put(s);
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

    /// Anything that [`Say`]s itself (the firmware's errors and reports), without
    /// `core::fmt`.
    #[inline(never)]
    pub fn say(&mut self, x: &dyn Say) -> &mut Self {
        if self.r.is_ok() {
            x.say(self);
        }
        self
    }

    /// Anything else through its `Display` (the one `core::fmt` path; the controller has no
    /// caller left, so none of `core::fmt`'s machinery is in its image).
    #[inline(never)]
    pub fn d(&mut self, x: &dyn Display) -> &mut Self {
        if self.r.is_ok() {
            self.r = write!(Adapter(&mut *self.out), "{x}");
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
        const DIGITS: &str = "0123456789abcdef";
        let mut buf = [0u8; 10];
        let mut i = buf.len();
        while n > 0 || i + width > buf.len() {
            i -= 1;
            buf[i] = (n % radix) as u8;
            n /= radix;
        }
        for &d in &buf[i..] {
            let d = usize::from(d);
            self.put(DIGITS.get(d..d + 1).unwrap_or_default());
        }
        self
    }
}

/// Where a [`Text`] writes: anything `core::fmt::Write`, through `write_str` alone. A
/// `dyn core::fmt::Write` would bring `write_char`'s and `write_fmt`'s code into a
/// controller's image through its vtable, called or not.
pub trait Out {
    fn put(&mut self, s: &str) -> Result;
}

impl<W: Write + ?Sized> Out for W {
    fn put(&mut self, s: &str) -> Result {
        self.write_str(s)
    }
}

/// [`Text::d`]'s way back into `core::fmt`.
struct Adapter<'b>(&'b mut dyn Out);

impl Write for Adapter<'_> {
    fn write_str(&mut self, s: &str) -> Result {
        self.0.put(s)
    }
}

/// A value that writes itself onto a line through [`Text`]: the firmware's `Display`,
/// without `core::fmt` (its machinery and a vtable per type: about 0.5 KiB of a controller's
/// 32). A type that also needs `Display` (the Linux side's error chains) implements it with
/// [`Said`]. A board's error types implement it too (the board traits ask for it).
pub trait Say {
    fn say(&self, t: &mut Text<'_>);
}

impl Say for &str {
    fn say(&self, t: &mut Text<'_>) {
        t.s(self);
    }
}

/// A board whose operations cannot fail.
impl Say for core::convert::Infallible {
    fn say(&self, _: &mut Text<'_>) {
        match *self {}
    }
}

/// Boards (and tests) whose errors carry nothing to say.
impl Say for () {
    fn say(&self, t: &mut Text<'_>) {
        t.s("error");
    }
}

/// `Display` for a [`Say`] type: `impl Display for X { fn fmt(…) { Said(self).fmt(f) } }`.
pub struct Said<'a, T>(pub &'a T);

impl<T: Say> Display for Said<'_, T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> Result {
        Text::new(f).say(self.0).end()
    }
}

/// Pieces of text common in the firmware's messages, picked for the most bytes saved over
/// them. In a literal packed by [`packed!`](crate::packed), byte `TOKENS[i]` stands for
/// `WORDS[i]`: the messages take about a quarter less of a controller's 32 KiB of flash.
/// Tokens are control bytes no message contains (never `\t`, `\n`, `\r`, backspace or
/// escape), so any other text passes through [`Text::s`] unchanged. A new word is a one-line
/// change here; every packed literal follows it at the next build.
pub const WORDS: [&str; 26] = [
    "primary",
    " the ",
    "e ",
    "t ",
    "shared disk",
    "ing",
    "timeout",
    ": ",
    "er",
    "ar",
    "se",
    "watch",
    "s ",
    "no",
    "d ",
    "or",
    "re",
    "confi",
    ", ",
    "claim",
    "`rearguard disk ",
    "save",
    "en",
    "th",
    "release",
    "on",
];
const TOKENS: [u8; 26] = [
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x0b, 0x0c, 0x0e, 0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17,
    0x18, 0x19, 0x1a, 0x1c, 0x1d, 0x1e, 0x1f,
];

/// [`WORDS`] end to end, and where each one ends in it (built at compile time: only these
/// two are in the image, not a table of string slices).
const DICT_LEN: usize = {
    let (mut i, mut n) = (0, 0);
    while i < WORDS.len() {
        n += WORDS[i].len();
        i += 1;
    }
    n
};
const DICT_BYTES: [u8; DICT_LEN] = {
    let mut out = [0u8; DICT_LEN];
    let (mut i, mut n) = (0, 0);
    while i < WORDS.len() {
        let w = WORDS[i].as_bytes();
        let mut j = 0;
        while j < w.len() {
            out[n] = w[j];
            n += 1;
            j += 1;
        }
        i += 1;
    }
    out
};
const DICT: &str = match core::str::from_utf8(&DICT_BYTES) {
    Ok(s) => s,
    Err(_) => panic!("words are ASCII"),
};
const ENDS: [u8; WORDS.len()] = {
    let mut out = [0u8; WORDS.len()];
    let (mut i, mut n) = (0, 0);
    while i < WORDS.len() {
        n += WORDS[i].len();
        assert!(n < 256);
        out[i] = n as u8;
        i += 1;
    }
    out
};

/// The word a token byte stands for.
fn word(b: u8) -> Option<&'static str> {
    let i = TOKENS.iter().position(|&t| t == b)?;
    let start = if i == 0 { 0 } else { ENDS[i - 1] };
    DICT.get(usize::from(start)..usize::from(ENDS[i]))
}

/// The longest word of [`WORDS`] at the start of `s[at..]`, as (index, length).
const fn longest_word(s: &[u8], at: usize) -> Option<(usize, usize)> {
    let mut best: Option<(usize, usize)> = None;
    let mut i = 0;
    while i < WORDS.len() {
        let w = WORDS[i].as_bytes();
        let mut n = 0;
        while n < w.len() && at + n < s.len() && s[at + n] == w[n] {
            n += 1;
        }
        if n == w.len() {
            best = match best {
                Some((_, len)) if len >= n => best,
                _ => Some((i, n)),
            };
        }
        i += 1;
    }
    best
}

/// Bytes `s` packs into (see [`pack`]).
pub const fn packed_len(s: &str) -> usize {
    let b = s.as_bytes();
    let (mut at, mut n) = (0, 0);
    while at < b.len() {
        assert!(b[at] >= 0x20 || b[at] == b'\n', "a packed literal holds no control bytes but newlines");
        at += match longest_word(b, at) {
            Some((_, len)) => len,
            None => 1,
        };
        n += 1;
    }
    n
}

/// `s` with every word of [`WORDS`] (longest first, left to right) replaced by its token.
pub const fn pack<const N: usize>(s: &str) -> [u8; N] {
    let b = s.as_bytes();
    let mut out = [0u8; N];
    let (mut at, mut n) = (0, 0);
    while at < b.len() {
        match longest_word(b, at) {
            Some((i, len)) => {
                out[n] = TOKENS[i];
                at += len;
            }
            None => {
                out[n] = b[at];
                at += 1;
            }
        }
        n += 1;
    }
    out
}

/// A string literal packed at compile time for [`Text::s`], which writes it out as written.
/// Only for text that reaches the console through [`Text::s`] (any other path would show the
/// tokens).
#[macro_export]
macro_rules! packed {
    ($s:literal) => {{
        const N: usize = $crate::text::packed_len($s);
        const P: [u8; N] = $crate::text::pack::<N>($s);
        const S: &str = match core::str::from_utf8(&P) {
            Ok(s) => s,
            Err(_) => panic!("tokens are ASCII"),
        };
        S
    }};
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

    #[test]
    fn packed_text_is_written_as_it_was_typed() {
        const P: &str = crate::packed!("the secondary's timeout; release the shared disk, or not: never");
        assert!(P.len() < "the secondary's timeout; release the shared disk, or not: never".len());
        assert_eq!(text(|t| _ = t.s(P)), "the secondary's timeout; release the shared disk, or not: never");
        // Every token alone, doubled, and between plain bytes; any other byte is itself.
        for (&tok, w) in TOKENS.iter().zip(WORDS) {
            let s = std::format!("x{}{}y", tok as char, tok as char);
            assert_eq!(text(|t| _ = t.s(&s)), std::format!("x{w}{w}y"));
        }
        for b in (0u8..0x80).filter(|b| !TOKENS.contains(b)) {
            assert_eq!(word(b), None, "{b:#x}");
        }
        assert_eq!(text(|t| _ = t.s("\t\r\x08\x1b[A")), "\t\r\x08\x1b[A");
        // Text with no tokens, or only newlines, is untouched.
        assert_eq!(text(|t| _ = t.s("plain\nline\n").s("")), "plain\nline\n");
    }
}
