//! Line editing on a raw serial console: echo, backspace/DEL, Ctrl-U, Ctrl-C, CR/LF/CRLF, and
//! VT100 escape sequences (arrow keys, function keys) swallowed. Only printable ASCII is kept;
//! a line that overflows or carries any other byte is marked so that it is refused whole, never
//! acted upon in part.

use core::fmt::Write;

/// Longest accepted input line.
pub const MAX_LINE: usize = 80;

/// What one byte did to the line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edit {
    /// Still typing.
    Pending,
    /// The line is complete: read it with [`LineEditor::complete`].
    Line,
    /// Ctrl-C: the line was dropped, and so should be any pending question.
    Cancelled,
}

/// A completed line, as far as the editor can judge it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Complete<'a> {
    /// Printable ASCII only.
    Line(&'a str),
    /// Went past [`MAX_LINE`].
    Overlong,
    /// Carried a control or non-ASCII byte.
    BadByte,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Esc {
    None,
    /// Saw ESC.
    Start,
    /// Inside `ESC [` or `ESC O`: until a final byte.
    Csi,
}

pub struct LineEditor {
    /// Only printable ASCII is stored (a `String`, so no UTF-8 check is linked to read it).
    line: heapless::String<MAX_LINE>,
    overlong: bool,
    bad_byte: bool,
    last_cr: bool,
    esc: Esc,
}

impl LineEditor {
    pub fn new() -> LineEditor {
        LineEditor { line: heapless::String::new(), overlong: false, bad_byte: false, last_cr: false, esc: Esc::None }
    }

    /// Feeds one console byte and echoes it.
    pub fn feed(&mut self, b: u8, out: &mut impl Write) -> Edit {
        match self.esc {
            Esc::Start => {
                self.esc = if b == b'[' || b == b'O' { Esc::Csi } else { Esc::None };
                return Edit::Pending;
            }
            Esc::Csi => {
                if (0x40..=0x7E).contains(&b) {
                    self.esc = Esc::None;
                }
                return Edit::Pending;
            }
            Esc::None => {}
        }
        let after_cr = core::mem::replace(&mut self.last_cr, b == b'\r');
        match b {
            b'\r' => {
                let _ = out.write_str("\r\n");
                Edit::Line
            }
            b'\n' if after_cr => Edit::Pending, // the LF of a CRLF
            b'\n' => {
                let _ = out.write_str("\r\n");
                Edit::Line
            }
            0x1B => {
                self.esc = Esc::Start;
                Edit::Pending
            }
            0x08 | 0x7F => {
                // Every byte kept is ASCII: drop one by length (`pop` decodes a UTF-8 char).
                if let Some(n) = self.line.len().checked_sub(1) {
                    self.line.truncate(n);
                    let _ = out.write_str("\x08 \x08");
                }
                Edit::Pending
            }
            0x03 => {
                self.clear();
                let _ = out.write_str("^C\r\n");
                Edit::Cancelled
            }
            0x15 => {
                for _ in 0..self.line.len() {
                    let _ = out.write_str("\x08 \x08");
                }
                self.line.clear();
                Edit::Pending
            }
            b'\t' => self.push(b' ', out),
            0x20..=0x7E => self.push(b, out),
            _ => {
                self.bad_byte = true;
                Edit::Pending
            }
        }
    }

    fn push(&mut self, b: u8, out: &mut impl Write) -> Edit {
        if self.line.push(b as char).is_err() {
            if !self.overlong {
                let _ = out.write_char('\x07');
            }
            self.overlong = true;
        } else {
            let _ = out.write_char(b as char);
        }
        Edit::Pending
    }

    /// The line typed so far, judged. Call [`LineEditor::clear`] once it has been acted upon.
    pub fn complete(&self) -> Complete<'_> {
        if self.overlong {
            Complete::Overlong
        } else if self.bad_byte {
            Complete::BadByte
        } else {
            Complete::Line(&self.line)
        }
    }

    pub fn clear(&mut self) {
        self.line.clear();
        self.overlong = false;
        self.bad_byte = false;
    }
}

impl Default for LineEditor {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::String;

    fn type_in(e: &mut LineEditor, input: &[u8]) -> (String, Edit) {
        let mut echo = String::new();
        let mut last = Edit::Pending;
        for &b in input {
            last = e.feed(b, &mut echo);
        }
        (echo, last)
    }

    #[test]
    fn crlf_ends_one_line_and_escape_sequences_are_swallowed() {
        let mut e = LineEditor::new();
        let (echo, edit) = type_in(&mut e, b"\x1b[Ast\x1bOPx\x7fat\r");
        assert_eq!(edit, Edit::Line);
        assert_eq!(echo, "stx\x08 \x08at\r\n");
        assert_eq!(e.complete(), Complete::Line("stat"));
        e.clear();
        assert_eq!(type_in(&mut e, b"\n").1, Edit::Pending, "the LF of a CRLF is not a second line");
    }

    #[test]
    fn a_line_past_the_limit_or_with_a_control_byte_is_refused_whole() {
        let mut e = LineEditor::new();
        type_in(&mut e, &[b'x'; MAX_LINE + 1]);
        assert_eq!(e.complete(), Complete::Overlong);
        e.clear();
        type_in(&mut e, b"save\x01");
        assert_eq!(e.complete(), Complete::BadByte);
        assert_eq!(type_in(&mut e, b"\x03").1, Edit::Cancelled);
        assert_eq!(e.complete(), Complete::Line(""));
    }
}
