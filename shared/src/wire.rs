//! postcard 1.x's wire format, written by hand for the few record types Rearguard sends and
//! stores (heartbeat, pair advert, listener config).
//!
//! Why not postcard itself: serde's generic deserialisation machinery took about 2 KiB of the
//! controller firmware's 32 KiB flash. Every byte written here is the byte postcard writes,
//! and every input is accepted or refused as postcard 1.1 accepts or refuses it
//! (`shared/tests/wire_postcard.rs` and the `wire_postcard` fuzz target check both against
//! postcard), so frames on the wire and records on disk are unchanged:
//!
//! | type | bytes |
//! |---|---|
//! | `u8` | one raw byte |
//! | `u16`, `u32`, `u64` | LEB128 varint (see [`Reader::varint`] for what is refused) |
//! | `bool` | `0` or `1`; any other byte is refused |
//! | `Option<T>` | tag `0` (none) or `1` then `T`; any other tag is refused |
//! | enum | variant index as a `u32` varint, then the variant's fields |
//! | struct, newtype | the fields in declaration order, nothing else |
//! | sequence (a key) | length as a `usize` varint, then the elements |
//!
//! Bytes after a decoded value are ignored, as `postcard::from_bytes` ignores them.

/// The output buffer is too small.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Full;

/// The input does not decode (ended early, a refused varint, tag, bool or variant index).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Malformed;

/// A value with a hand-written postcard encoding.
pub trait Wire: Sized {
    fn put(&self, w: &mut Writer<'_>) -> Result<(), Full>;
    fn get(r: &mut Reader<'_>) -> Result<Self, Malformed>;
}

/// Encodes `value` at the start of `buf`; returns the bytes written.
pub fn to_slice<T: Wire>(value: &T, buf: &mut [u8]) -> Result<usize, Full> {
    let mut w = Writer { buf, len: 0 };
    value.put(&mut w)?;
    Ok(w.len)
}

/// Decodes a `T` from the start of `bytes`, ignoring what follows it.
pub fn from_bytes<T: Wire>(bytes: &[u8]) -> Result<T, Malformed> {
    T::get(&mut Reader { bytes })
}

pub struct Writer<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl Writer<'_> {
    pub fn byte(&mut self, b: u8) -> Result<(), Full> {
        *self.buf.get_mut(self.len).ok_or(Full)? = b;
        self.len += 1;
        Ok(())
    }

    /// LEB128: seven bits a byte, least significant first, high bit set on all but the last.
    pub fn varint(&mut self, mut v: u64) -> Result<(), Full> {
        while v >= 0x80 {
            self.byte(v as u8 | 0x80)?;
            v >>= 7;
        }
        self.byte(v as u8)
    }
}

pub struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Whether the input is used up (a record's optional trailing field is absent).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn byte(&mut self) -> Result<u8, Malformed> {
        let (&b, rest) = self.bytes.split_first().ok_or(Malformed)?;
        self.bytes = rest;
        Ok(b)
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if n > self.bytes.len() {
            return Err(Malformed);
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    /// A varint for an unsigned integer of `bits` bits, by postcard 1.1's rules
    /// (`try_take_varint_u16/u32/u64`): at most `ceil(bits / 7)` bytes (3, 5, 10); if that
    /// many are used, the last one may only carry the bits that remain (at most 3, 15, 1).
    /// Overlong encodings within that length (`0x80 0x00` for 0) are accepted, as postcard
    /// accepts them; a value that needs more bits, or a continuation past the last byte,
    /// is refused.
    pub fn varint(&mut self, bits: u32) -> Result<u64, Malformed> {
        let max = bits.div_ceil(7);
        let mut out = 0u64;
        for i in 0..max {
            let b = self.byte()?;
            out |= u64::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                return if i == max - 1 && b >> (bits % 7) != 0 { Err(Malformed) } else { Ok(out) };
            }
        }
        Err(Malformed)
    }

    /// An enum's variant index (a `u32` varint).
    pub fn variant(&mut self) -> Result<u32, Malformed> {
        Ok(self.varint(32)? as u32)
    }

    /// A sequence length. postcard reads it as a `usize` varint, whose rules depend on the
    /// target's pointer width; this reads it by the 64-bit rules on every target, so a
    /// record that loads on a Linux host also loads on the controller. (The only difference
    /// is an overlong length of 6 to 10 bytes, which postcard refuses on a 32-bit target.)
    pub fn len(&mut self) -> Result<u64, Malformed> {
        self.varint(64)
    }
}

impl Wire for u8 {
    fn put(&self, w: &mut Writer<'_>) -> Result<(), Full> {
        w.byte(*self)
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, Malformed> {
        r.byte()
    }
}

impl Wire for u16 {
    fn put(&self, w: &mut Writer<'_>) -> Result<(), Full> {
        w.varint(u64::from(*self))
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, Malformed> {
        Ok(r.varint(16)? as u16)
    }
}

impl Wire for u32 {
    fn put(&self, w: &mut Writer<'_>) -> Result<(), Full> {
        w.varint(u64::from(*self))
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, Malformed> {
        Ok(r.varint(32)? as u32)
    }
}

impl Wire for u64 {
    fn put(&self, w: &mut Writer<'_>) -> Result<(), Full> {
        w.varint(*self)
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, Malformed> {
        r.varint(64)
    }
}

impl Wire for bool {
    fn put(&self, w: &mut Writer<'_>) -> Result<(), Full> {
        w.byte(u8::from(*self))
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, Malformed> {
        match r.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(Malformed),
        }
    }
}

impl<T: Wire> Wire for Option<T> {
    fn put(&self, w: &mut Writer<'_>) -> Result<(), Full> {
        match self {
            None => w.byte(0),
            Some(v) => {
                w.byte(1)?;
                v.put(w)
            }
        }
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, Malformed> {
        match r.byte()? {
            0 => Ok(None),
            1 => Ok(Some(T::get(r)?)),
            _ => Err(Malformed),
        }
    }
}

/// A struct (or newtype) whose encoding is its fields in declaration order, as serde's
/// derive and postcard encode it.
macro_rules! wire_struct {
    ($t:ty { $($f:tt),* $(,)? }) => {
        impl $crate::wire::Wire for $t {
            fn put(&self, w: &mut $crate::wire::Writer<'_>) -> Result<(), $crate::wire::Full> {
                $($crate::wire::Wire::put(&self.$f, w)?;)*
                Ok(())
            }
            fn get(r: &mut $crate::wire::Reader<'_>) -> Result<Self, $crate::wire::Malformed> {
                // Struct expression fields are evaluated in the order written.
                Ok(Self { $($f: $crate::wire::Wire::get(r)?,)* })
            }
        }
    };
}
pub(crate) use wire_struct;

/// A fieldless enum: its variant index, in declaration order.
macro_rules! wire_enum {
    ($t:ty { $($v:ident),* $(,)? }) => {
        impl $crate::wire::Wire for $t {
            fn put(&self, w: &mut $crate::wire::Writer<'_>) -> Result<(), $crate::wire::Full> {
                w.varint(*self as u64)
            }
            fn get(r: &mut $crate::wire::Reader<'_>) -> Result<Self, $crate::wire::Malformed> {
                const ALL: &[$t] = &[$(<$t>::$v),*];
                ALL.get(r.variant()? as usize).copied().ok_or($crate::wire::Malformed)
            }
        }
    };
}
pub(crate) use wire_enum;

impl Wire for crate::time::Duration {
    fn put(&self, w: &mut Writer<'_>) -> Result<(), Full> {
        w.varint(self.as_millis())
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, Malformed> {
        Ok(Self::from_millis(r.varint(64)?))
    }
}

wire_struct!(crate::fencing::FencingBudget { interval, write_deadline, fence_time });

#[cfg(test)]
mod tests {
    use super::*;

    fn u16_of(b: &[u8]) -> Result<u16, Malformed> {
        from_bytes(b)
    }
    fn u32_of(b: &[u8]) -> Result<u32, Malformed> {
        from_bytes(b)
    }
    fn u64_of(b: &[u8]) -> Result<u64, Malformed> {
        from_bytes(b)
    }

    #[test]
    fn varints_take_postcards_limits() {
        assert_eq!(u16_of(&[0x80, 0x00]), Ok(0), "overlong but within three bytes");
        assert_eq!(u16_of(&[0xFF, 0xFF, 0x03]), Ok(u16::MAX));
        assert_eq!(u16_of(&[0xFF, 0xFF, 0x04]), Err(Malformed), "a 17th bit");
        assert_eq!(u16_of(&[0x80, 0x80, 0x80, 0x00]), Err(Malformed), "a fourth byte");
        assert_eq!(u32_of(&[0xFF, 0xFF, 0xFF, 0xFF, 0x0F]), Ok(u32::MAX));
        assert_eq!(u32_of(&[0xFF, 0xFF, 0xFF, 0xFF, 0x10]), Err(Malformed));
        assert_eq!(u32_of(&[0x80, 0x80]), Err(Malformed), "ends inside the varint");
        let mut max = [0xFFu8; 10];
        max[9] = 0x01;
        assert_eq!(u64_of(&max), Ok(u64::MAX));
        max[9] = 0x02;
        assert_eq!(u64_of(&max), Err(Malformed));
        let mut buf = [0u8; 10];
        assert_eq!(to_slice(&u64::MAX, &mut buf), Ok(10));
        assert_eq!(buf[9], 0x01);
        assert_eq!(to_slice(&u64::MAX, &mut buf[..9]), Err(Full));
    }

    #[test]
    fn bools_and_options_refuse_other_tags() {
        assert_eq!(from_bytes::<bool>(&[2]), Err(Malformed));
        assert_eq!(from_bytes::<Option<u8>>(&[1, 9, 0xAA]), Ok(Some(9)), "trailing bytes are ignored");
        assert_eq!(from_bytes::<Option<u8>>(&[2, 9]), Err(Malformed));
    }
}
