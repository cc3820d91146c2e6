//! Anti-replay across restarts: the highest (epoch, sequence) read from each primary's slot
//! is kept in `[listener] state_dir`, so heartbeat records captured from the disk and written
//! back after this listener restarts are refused instead of being taken as a baseline and
//! then as progress (which would hold the spare back from a dead primary).
//!
//! The file, `listener-replay-marks`, has one line per primary, `node P epoch E seq S`, the
//! pair agent's words (`host-agent/src/pair/persist.rs`), replaced atomically by its
//! `write_atomic`. As there, the mark is exact (the newest record read, never leased ahead)
//! and written about once a second while it moves, and at a clean stop: a live primary's next
//! record is above it, so a restarted listener sees it at once; records captured in the last
//! second before a crash can be replayed once each. Only the previous run's marks refuse
//! records; within a run the listener's own detector refuses what is not new.
//!
//! A refused record is handed to the listener as a blank sector (it counts a
//! `never-written` slot: no liveness) and reported here, once per refused record.

use rearguard_host_agent::pair::persist::write_atomic;
use rearguard_shared::config::ListenerConfig;
use rearguard_shared::disk::RECORD_SECTOR;
use rearguard_shared::heartbeat;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tracing::warn;

const NODES: usize = 32;
/// How often a moving mark is written.
const STORE_EVERY: Duration = Duration::from_secs(1);

type Mark = Option<(u32, u64)>;

pub struct ReplayGuard {
    file: PathBuf,
    cfg: ListenerConfig,
    /// The previous run's marks: records at or below them are refused.
    floor: [Mark; NODES],
    marks: [Mark; NODES],
    stored: [Mark; NODES],
    stored_at: Option<Instant>,
    /// The last record refused per node, so each is reported once.
    refused: [Mark; NODES],
    write_failed: bool,
}

fn parse(text: &str) -> Option<[Mark; NODES]> {
    let mut marks = [None; NODES];
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let w: Vec<&str> = line.split_whitespace().collect();
        let ["node", p, "epoch", e, "seq", s] = w.as_slice() else { return None };
        let p: usize = p.parse().ok().filter(|&p: &usize| p < NODES)?;
        marks[p] = Some((e.parse().ok()?, s.parse().ok()?));
    }
    Some(marks)
}

fn lines(marks: &[Mark; NODES]) -> String {
    let mut out = String::new();
    for (p, m) in marks.iter().enumerate() {
        if let Some((e, s)) = m {
            out.push_str(&format!("node {p} epoch {e} seq {s}\n"));
        }
    }
    out
}

impl ReplayGuard {
    /// Reads `state_dir/listener-replay-marks`. Missing: a first start. Unreadable or
    /// garbled: reported, and this run starts without marks.
    pub fn open(state_dir: &Path, cfg: &ListenerConfig) -> ReplayGuard {
        let file = state_dir.join("listener-replay-marks");
        let floor = match std::fs::read_to_string(&file) {
            Ok(text) => parse(&text).unwrap_or_else(|| {
                warn!(
                    "{}: not replay marks (lines \"node P epoch E seq S\"); starting without them (delete the file)",
                    file.display()
                );
                [None; NODES]
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => [None; NODES],
            Err(e) => {
                warn!("cannot read {}: {e}; starting without replay marks", file.display());
                [None; NODES]
            }
        };
        ReplayGuard {
            file,
            cfg: cfg.clone(),
            floor,
            marks: floor,
            stored: floor,
            stored_at: None,
            refused: [None; NODES],
            write_failed: false,
        }
    }

    /// Looks at a sector just read: a heartbeat at or below its sender's mark from before the
    /// restart is blanked (and reported); a newer one moves the mark.
    pub fn check(&mut self, sector: &mut [u8; RECORD_SECTOR]) {
        let Ok(hb) = heartbeat::decode(sector, &self.cfg.verifier()) else { return };
        let (node, this) = (hb.node_id as usize, (hb.boot_epoch, hb.sequence));
        if node >= NODES {
            return;
        }
        if let Some(floor) = self.floor[node].filter(|&f| this <= f) {
            sector.fill(0);
            if self.refused[node] != Some(this) {
                self.refused[node] = Some(this);
                warn!(
                    "slot {node}: replay refused: epoch {} seq {} is at or below epoch {} seq {} read before this \
                     listener restarted ({})",
                    this.0,
                    this.1,
                    floor.0,
                    floor.1,
                    self.file.display()
                );
            }
            return;
        }
        if self.marks[node].is_none_or(|m| this > m) {
            self.marks[node] = Some(this);
        }
        if self.marks != self.stored && self.stored_at.is_none_or(|t| t.elapsed() >= STORE_EVERY) {
            self.store();
        }
    }

    fn store(&mut self) {
        self.stored_at = Some(Instant::now());
        match write_atomic(&self.file, lines(&self.marks).as_bytes()) {
            Ok(()) => {
                self.stored = self.marks;
                self.write_failed = false;
            }
            Err(e) if !std::mem::replace(&mut self.write_failed, true) => warn!(
                "cannot write {}: {e}; after a restart, slot records replayed from before it may be taken as \
                 liveness (fix the state_dir's permissions or space)",
                self.file.display()
            ),
            Err(_) => {}
        }
    }
}

impl Drop for ReplayGuard {
    /// A clean stop leaves the exact marks.
    fn drop(&mut self) {
        if self.marks != self.stored {
            self.store();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rearguard_shared::heartbeat::{HealthFlags, Heartbeat, NodeState, Role, MAX_FRAME};

    fn cfg() -> ListenerConfig {
        let mut c = ListenerConfig::factory();
        c.cluster_id = 7;
        c
    }

    fn sector(node: u8, epoch: u32, seq: u64) -> [u8; RECORD_SECTOR] {
        let hb = Heartbeat {
            cluster_id: 7,
            node_id: node,
            role: Role::Primary,
            boot_epoch: epoch,
            sequence: seq,
            uptime: rearguard_shared::Duration::ZERO,
            state: NodeState::Active,
            health: HealthFlags::OK,
            config_digest: 0,
            build_stamp: 0,
            budget: rearguard_shared::fencing::FencingBudget::NONE,
            test_acks: 0,
            last_test: 0,
        };
        let mut f = [0u8; MAX_FRAME];
        let n = heartbeat::encode(&hb, None, &mut f);
        let mut s = [0u8; RECORD_SECTOR];
        s[..n].copy_from_slice(&f[..n]);
        s
    }

    fn passes(g: &mut ReplayGuard, node: u8, epoch: u32, seq: u64) -> bool {
        let mut s = sector(node, epoch, seq);
        g.check(&mut s);
        s != [0; RECORD_SECTOR]
    }

    #[test]
    fn records_read_before_a_restart_are_refused_after_it_and_new_ones_pass() {
        let dir = std::env::temp_dir().join(format!("rg-replay-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut g = ReplayGuard::open(&dir, &cfg());
        for seq in 1..=50 {
            assert!(passes(&mut g, 0, 3, seq));
            assert!(passes(&mut g, 2, 1, seq));
        }
        drop(g); // a clean stop: the exact marks
        assert_eq!(
            std::fs::read_to_string(dir.join("listener-replay-marks")).unwrap(),
            "node 0 epoch 3 seq 50\nnode 2 epoch 1 seq 50\n"
        );
        let mut g = ReplayGuard::open(&dir, &cfg());
        for seq in 1..=50 {
            assert!(!passes(&mut g, 0, 3, seq), "seq {seq} replayed");
        }
        assert!(!passes(&mut g, 0, 2, 999), "an older incarnation");
        assert!(passes(&mut g, 0, 3, 51), "the live primary's next record");
        assert!(passes(&mut g, 2, 2, 1), "a restarted primary");
        assert!(passes(&mut g, 1, 1, 1), "a primary never seen");
        std::fs::write(dir.join("listener-replay-marks"), "node x\n").unwrap();
        let mut g = ReplayGuard::open(&dir, &cfg());
        assert!(passes(&mut g, 0, 3, 1), "a garbled file is reported and ignored");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
