//! What the pair agent keeps across restarts in `state_dir` (besides its boot epoch): the
//! highest term it knew, and a high-water mark of the peer's adverts, so that adverts
//! captured from the link and replayed after this node restarts are refused.
//!
//! The file, `pair-state-<node>`, is one line: `term T peer P epoch E seq S` (the peer part
//! once a peer was heard). It is replaced atomically (write a temporary file, fsync, rename,
//! fsync the directory), so a crash leaves the old version or the new, never a torn one.
//!
//! ## What a restart refuses, and why the mark is not written ahead
//!
//! The stored mark is the peer's newest accepted advert, exactly, written once per `ahead`
//! adverts (about once a second), and also whenever this node takes over (the peer just fell
//! silent: its last advert is the mark) and at a clean stop. After a restart every advert at
//! or below the mark is refused (`replay`, or `stale-epoch` for an older incarnation), and the
//! live peer's next advert is above it, so a restarted node hears a live peer at once.
//!
//! A mark leased *ahead* of what was accepted (an earlier design) would also refuse the last
//! second of captures after a crash, but it refused the live peer's own adverts for that
//! second too: a node killed and restarted beside a live active heard nobody, took over, and
//! the pair had two actives until the terms were compared (`tests/pair_failover.rs` caught
//! it). Never two actives weighs more, so after a *crash* while the peer was alive, adverts
//! captured in the last `ahead` intervals before it can be replayed once each; they can only
//! make a dead peer look alive for about a second, never add a holder.

use rearguard_shared::election::advert::Advert;
use rearguard_shared::reject::Reject;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use tracing::warn;

/// How long a lease covers; the file is written about this often while adverts flow.
pub const LEASE_MS: u64 = 1000;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Saved {
    pub term: u32,
    /// (peer node id, boot epoch, sequence).
    pub peer: Option<(u8, u32, u64)>,
}

impl Saved {
    fn parse(text: &str) -> Option<Saved> {
        let w: Vec<&str> = text.split_whitespace().collect();
        match w.as_slice() {
            ["term", t] => Some(Saved { term: t.parse().ok()?, peer: None }),
            ["term", t, "peer", p, "epoch", e, "seq", s] => {
                Some(Saved { term: t.parse().ok()?, peer: Some((p.parse().ok()?, e.parse().ok()?, s.parse().ok()?)) })
            }
            _ => None,
        }
    }

    fn line(&self) -> String {
        match self.peer {
            None => format!("term {}\n", self.term),
            Some((p, e, s)) => format!("term {} peer {p} epoch {e} seq {s}\n", self.term),
        }
    }
}

pub struct Persist {
    file: PathBuf,
    node_id: u8,
    /// The mark of the previous run: adverts at or below it are refused.
    floor: Option<(u8, u32, u64)>,
    /// What the file holds now.
    stored: Saved,
    ahead: u64,
    warned: bool,
}

impl Persist {
    /// Reads `state_dir/pair-state-<node>`. A missing file is a first start; an unreadable
    /// or garbled one is reported and treated as missing (the boot epoch file still orders
    /// this node's own incarnations).
    pub fn open(state_dir: &Path, node_id: u8, interval_ms: u64) -> Persist {
        let file = state_dir.join(format!("pair-state-{node_id}"));
        let stored = match std::fs::read_to_string(&file) {
            Ok(text) => Saved::parse(&text).unwrap_or_else(|| {
                warn!(
                    "{}: not a pair state line ({:?}); starting without a term or replay mark",
                    file.display(),
                    text.trim()
                );
                Saved::default()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Saved::default(),
            Err(e) => {
                warn!("cannot read {}: {e}; starting without a term or replay mark", file.display());
                Saved::default()
            }
        };
        Persist {
            file,
            node_id,
            floor: stored.peer,
            stored,
            ahead: (LEASE_MS / interval_ms.max(1)).max(1),
            warned: false,
        }
    }

    pub fn saved(&self) -> Saved {
        self.stored
    }

    /// Refuses an advert the previous run may have accepted; extends the lease before one
    /// above it is passed on.
    pub fn check(&mut self, frame: Result<Advert, Reject>) -> Result<Advert, Reject> {
        let a = frame?;
        let (node, epoch, seq) = (a.hb.node_id, a.hb.boot_epoch, a.hb.sequence);
        if let Some((p, e, s)) = self.floor {
            if p == node && (epoch, seq) <= (e, s) {
                return Err(if epoch < e { Reject::StaleEpoch } else { Reject::Replay });
            }
        }
        // Our own adverts looped back, or a node other than the peer we track: the election
        // refuses those (wrong-node); they must not move the mark.
        let other = node == self.node_id || self.stored.peer.is_some_and(|(p, _, _)| p != node);
        let covered =
            self.stored.peer.is_some_and(|(p, e, s)| p == node && e == epoch && seq < s.saturating_add(self.ahead));
        if !other && !covered {
            self.store(Saved { peer: Some((node, epoch, seq)), ..self.stored });
        }
        Ok(a)
    }

    /// The exact mark now (`last` is the newest advert accepted from the peer): at a
    /// takeover, when the peer has just fallen silent.
    pub fn mark(&mut self, last: Option<(u8, u32, u64)>) {
        if let Some(peer) = last {
            if self.stored.peer != Some(peer) {
                self.store(Saved { peer: Some(peer), ..self.stored });
            }
        }
    }

    /// Records a new highest term (before the takeover that carries it is carried out).
    pub fn term(&mut self, term: u32) {
        if term > self.stored.term {
            self.store(Saved { term, ..self.stored });
        }
    }

    /// At a clean stop: the exact mark (`last` is the newest advert accepted from the peer).
    pub fn stop(&mut self, term: u32, last: Option<(u8, u32, u64)>) {
        let peer = last.or(self.floor);
        self.store(Saved { term: term.max(self.stored.term), peer });
    }

    fn store(&mut self, s: Saved) {
        match write_atomic(&self.file, s.line().as_bytes()) {
            Ok(()) => {
                self.stored = s;
                self.warned = false;
            }
            Err(e) => {
                // Still in memory: this run goes on; only a restart could be fooled.
                self.stored = s;
                if !std::mem::replace(&mut self.warned, true) {
                    warn!(
                        "cannot write {}: {e}; after a restart, adverts replayed from before it may be accepted \
                         and the takeover term may repeat (fix the state_dir's permissions or space)",
                        self.file.display()
                    );
                }
            }
        }
    }
}

/// Replaces `file` with `bytes` atomically and durably.
pub fn write_atomic(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = file.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = file.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, file)?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rearguard_shared::heartbeat::{HealthFlags, Heartbeat, NodeState, Role};
    use rearguard_shared::Duration;

    fn adv(node: u8, epoch: u32, seq: u64) -> Result<Advert, Reject> {
        Ok(Advert {
            hb: Heartbeat {
                cluster_id: 1,
                node_id: node,
                role: Role::Secondary,
                boot_epoch: epoch,
                sequence: seq,
                uptime: Duration::ZERO,
                state: NodeState::Standby,
                health: HealthFlags::OK,
                config_digest: 0,
                build_stamp: 0,
                budget: rearguard_shared::fencing::FencingBudget::NONE,
                test_acks: 0,
                last_test: 0,
            },
            priority: 1,
            term: 0,
            flags: 0,
            ack_epoch: 0,
            ack_seq: 0,
        })
    }

    #[test]
    fn everything_accepted_up_to_the_mark_is_refused_after_a_crash_and_the_live_peer_passes() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Persist::open(dir.path(), 1, 100);
        for s in 1..=25 {
            assert!(p.check(adv(2, 7, s)).is_ok());
        }
        p.term(4);
        drop(p); // a crash: no stop(); marks were written at 1, 11, 21
        let mut p = Persist::open(dir.path(), 1, 100);
        assert_eq!(p.saved().term, 4);
        for s in 1..=21 {
            assert_eq!(p.check(adv(2, 7, s)).unwrap_err(), Reject::Replay, "seq {s}");
        }
        assert!(p.check(adv(2, 7, 26)).is_ok(), "the live peer's next advert passes at once");
        drop(p);
        let mut p = Persist::open(dir.path(), 1, 100);
        p.mark(Some((2, 7, 25))); // a takeover: the silent peer's last advert, exactly
        drop(p);
        let mut p = Persist::open(dir.path(), 1, 100);
        for s in 1..=25 {
            assert_eq!(p.check(adv(2, 7, s)).unwrap_err(), Reject::Replay, "seq {s} after a takeover's mark");
        }
        assert_eq!(p.check(adv(2, 6, 999)).unwrap_err(), Reject::StaleEpoch);
        assert!(p.check(adv(2, 8, 1)).is_ok(), "the peer restarted: a new epoch passes");
        assert!(p.check(adv(3, 7, 1)).is_ok(), "another node is the election's business");
        assert!(p.check(adv(1, 7, 1)).is_ok(), "our own advert looped back: the election's business too");
        assert_eq!(p.saved().peer, Some((2, 8, 1)), "neither moved the peer's mark");
    }

    #[test]
    fn a_clean_stop_leaves_the_exact_mark_and_writes_about_once_a_second() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pair-state-1");
        let mut p = Persist::open(dir.path(), 1, 100);
        let mut writes = 0;
        let mut last = String::new();
        for s in 1..=100 {
            p.check(adv(2, 7, s)).unwrap();
            let now = std::fs::read_to_string(&file).unwrap();
            if now != last {
                writes += 1;
                last = now;
            }
        }
        assert_eq!(writes, 10, "100 adverts at 100 ms: one write per second");
        p.stop(3, Some((2, 7, 100)));
        let mut p = Persist::open(dir.path(), 1, 100);
        assert_eq!(p.check(adv(2, 7, 100)).unwrap_err(), Reject::Replay);
        assert!(p.check(adv(2, 7, 101)).is_ok(), "the live peer's next advert passes at once");
    }

    #[test]
    fn a_garbled_file_is_reported_and_ignored() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pair-state-1"), "term x\n").unwrap();
        let mut p = Persist::open(dir.path(), 1, 100);
        assert_eq!(p.saved(), Saved::default());
        assert!(p.check(adv(2, 7, 1)).is_ok());
    }
}
