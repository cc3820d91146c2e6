//! Loading and saving the listener config in a board's [`NvStore`], power-loss-safely.
//!
//! The A/B scheme itself lives in `rearguard_shared::config`; this module drives it over the
//! board trait: a save writes the copy *not* in use with the next generation and reads it
//! back, so an interrupted or failed save leaves the copy in use untouched.

use crate::board::{NvCopy, NvStore};
use rearguard_shared::config::{self, decode_record, encode_record, ListenerConfig, RecordError, RECORD_LEN};
use rearguard_shared::packed;
use rearguard_shared::text::{Said, Say, Text};

/// What loading found; the board prints it, so an operator sees which copy is in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadReport<E> {
    /// `from` was used; `other` says why the other copy was not, if it was unusable.
    Loaded { from: NvCopy, generation: u32, other: Option<RecordError> },
    /// Neither copy is valid: factory settings are in use.
    Factory { a: RecordError, b: RecordError },
    /// The store could not be read: factory settings are in use.
    Unreadable(E),
}

impl<E: Say> core::fmt::Display for LoadReport<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        Said(self).fmt(f)
    }
}

impl<E: Say> Say for LoadReport<E> {
    fn say(&self, t: &mut Text<'_>) {
        match self {
            LoadReport::Loaded { from, generation, other } => {
                let t = t.s(packed!("config: copy ")).s(from.name()).s(packed!(" (generation ")).n(*generation).s(")");
                match other {
                    Some(p) => p
                        .text(t.s(packed!("; copy ")).s(from.other().name()).s(packed!(" unusable (")))
                        .s(packed!("), using copy "))
                        .s(from.name()),
                    None => t,
                }
            }
            LoadReport::Factory { a, b } => {
                b.text(a.text(t.s(packed!("config: no valid copy (A: "))).s("; B: ")).s(packed!("); factory settings"))
            }
            LoadReport::Unreadable(e) => {
                t.s(packed!("config: store unreadable (")).say(e).s(packed!("); factory settings"))
            }
        };
    }
}

/// Where the running config came from, so the next save goes to the other copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Persist {
    in_use: Option<(NvCopy, u32)>,
}

// Not inlined: in its caller the compiler splits the config into scalars and moves each field
// through every branch (464 bytes of a controller's flash).
#[inline(never)]
pub fn load<S: NvStore>(nv: &mut S) -> (ListenerConfig, Persist, LoadReport<S::Error>) {
    let mut a = [0u8; RECORD_LEN];
    let mut b = [0u8; RECORD_LEN];
    if let Err(e) = nv.read_copy(NvCopy::A, &mut a).and_then(|()| nv.read_copy(NvCopy::B, &mut b)) {
        return (ListenerConfig::factory(), Persist { in_use: None }, LoadReport::Unreadable(e));
    }
    match config::load(&a, &b) {
        Ok(l) => {
            let report = LoadReport::Loaded { from: l.from, generation: l.generation, other: l.other_problem };
            (l.config, Persist { in_use: Some((l.from, l.generation)) }, report)
        }
        Err((a, b)) => (ListenerConfig::factory(), Persist { in_use: None }, LoadReport::Factory { a, b }),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaveError<E> {
    Write(E),
    /// The copy read back differs from what was written (failing medium).
    Verify(Option<RecordError>),
}

impl<E: Say> core::fmt::Display for SaveError<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        Said(self).fmt(f)
    }
}

impl<E: Say> Say for SaveError<E> {
    fn say(&self, t: &mut Text<'_>) {
        match self {
            SaveError::Write(e) => t.s(packed!("write failed (")).say(e).s(")"),
            SaveError::Verify(e) => {
                t.s(packed!("read-back check failed ("));
                match e {
                    Some(e) => e.text(t),
                    None => t.s(packed!("different record")),
                }
                .s(")")
            }
        };
    }
}

impl Persist {
    pub const NONE: Persist = Persist { in_use: None };

    /// Saves `cfg` over the copy not in use; returns the copy and generation written.
    pub fn save<S: NvStore>(&mut self, nv: &mut S, cfg: &ListenerConfig) -> Result<(NvCopy, u32), SaveError<S::Error>> {
        let (target, generation) = match self.in_use {
            Some((c, g)) => (c.other(), g.wrapping_add(1)),
            None => (NvCopy::A, 1),
        };
        let mut rec = [0u8; RECORD_LEN];
        encode_record(cfg, generation, &mut rec);
        nv.write_copy(target, &rec).map_err(SaveError::Write)?;
        let mut back = [0u8; RECORD_LEN];
        nv.read_copy(target, &mut back).map_err(SaveError::Write)?;
        match decode_record(&back) {
            Ok((g, c)) if g == generation && c == *cfg => {}
            Ok(_) => return Err(SaveError::Verify(None)),
            Err(e) => return Err(SaveError::Verify(Some(e))),
        }
        self.in_use = Some((target, generation));
        Ok((target, generation))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rearguard_shared::Duration;

    /// Two copies in RAM; `tear_next_write` makes the next write fail after writing only its
    /// first 16 bytes, as a power cut would.
    #[derive(Default)]
    pub struct RamNv {
        pub a: Option<[u8; RECORD_LEN]>,
        pub b: Option<[u8; RECORD_LEN]>,
        pub tear_next_write: bool,
    }

    impl NvStore for RamNv {
        type Error = &'static str;
        fn read_copy(&mut self, copy: NvCopy, buf: &mut [u8; RECORD_LEN]) -> Result<(), &'static str> {
            *buf = match copy {
                NvCopy::A => self.a,
                NvCopy::B => self.b,
            }
            .unwrap_or([0xFF; RECORD_LEN]);
            Ok(())
        }
        fn write_copy(&mut self, copy: NvCopy, buf: &[u8; RECORD_LEN]) -> Result<(), &'static str> {
            let slot = match copy {
                NvCopy::A => &mut self.a,
                NvCopy::B => &mut self.b,
            };
            if core::mem::take(&mut self.tear_next_write) {
                let mut torn = slot.unwrap_or([0xFF; RECORD_LEN]);
                torn[..16].copy_from_slice(&buf[..16]); // header and generation, not the body
                *slot = Some(torn);
                return Err("power cut");
            }
            *slot = Some(*buf);
            Ok(())
        }
    }

    fn cfg(ms: u64) -> ListenerConfig {
        ListenerConfig { timeout: Duration::from_millis(ms), ..ListenerConfig::factory() }
    }

    #[test]
    fn saves_alternate_and_a_torn_save_keeps_the_previous_config() {
        let mut nv = RamNv::default();
        let (c, mut p, r) = load(&mut nv);
        assert_eq!(c, ListenerConfig::factory());
        assert!(matches!(r, LoadReport::Factory { .. }));
        assert_eq!(p.save(&mut nv, &cfg(2000)).unwrap(), (NvCopy::A, 1));
        assert_eq!(p.save(&mut nv, &cfg(3000)).unwrap(), (NvCopy::B, 2));
        nv.tear_next_write = true;
        assert!(p.save(&mut nv, &cfg(4000)).is_err());
        let (c, _, r) = load(&mut nv);
        assert_eq!(c.timeout, Duration::from_millis(3000));
        assert!(matches!(r, LoadReport::Loaded { from: NvCopy::B, generation: 2, other: Some(_) }), "{r:?}");
    }
}
