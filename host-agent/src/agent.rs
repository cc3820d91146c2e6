//! The primary's agent: writes its heartbeat slot every interval, reads its mailbox, and
//! fences itself when it can no longer prove it is alive or when the secondary has taken over.

use crate::blockdev::{DirectDisk, DiskError};
use crate::config::agent::AgentConfig;
use crate::fence::{FenceError, Fencer};
use crate::time::{now, unix_secs};
use rearguard_shared::disk::{DiskHeader, HeaderError, MailboxError, MailboxMessage, BLOCK};
use rearguard_shared::fencing::FencingViolation;
use rearguard_shared::heartbeat::{self, HealthFlags, Heartbeat, NodeState, Role, Verifier};
use rearguard_shared::{Duration, Instant};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Disk(#[from] DiskError),
    #[error("{path}: {source}")]
    Header { path: PathBuf, source: HeaderError },
    #[error("{path} belongs to cluster {disk:#x}, but {config} says [cluster] id = {ours:#x}: fix the id, or check that this is the right disk")]
    ClusterMismatch { path: PathBuf, config: PathBuf, disk: u32, ours: u32 },
    #[error("{config}: [cluster] node_id = {node}, but {path} has only {slots} slot(s): use a node id below {slots}, or re-initialise with `rearguard disk init --primaries N --spares S`")]
    NoSlot { path: PathBuf, config: PathBuf, node: u8, slots: u8 },
    #[error("{config}: {violation}")]
    Fencing { config: PathBuf, violation: FencingViolation },
    #[error("{path}: node {node}'s mailbox holds {what}. The secondary owns this disk now; this node must not serve. \
             Once the secondary is shut down, clear the claim with `rearguard disk clear {path}` and start the agent again")]
    Claimed { path: PathBuf, node: u8, what: String },
    #[error("{path}: node {node}'s mailbox is unreadable ({source}); refusing to serve, as it may hold a torn takeover claim. \
             Inspect with `rearguard disk dump {path}`; clear with `rearguard disk clear {path}` once the secondary is down")]
    MailboxCorrupt { path: PathBuf, node: u8, source: MailboxError },
    #[error(transparent)]
    Fence(#[from] FenceError),
}

impl AgentError {
    /// Exit status for the CLI: 3 means "a takeover claim forbids serving".
    pub fn exit_code(&self) -> i32 {
        match self {
            AgentError::Claimed { .. } | AgentError::MailboxCorrupt { .. } => 3,
            _ => 1,
        }
    }
}

/// How a running agent ended.
#[derive(Debug, PartialEq, Eq)]
pub enum AgentExit {
    /// Stopped on request (SIGTERM/SIGINT); the last heartbeat says `Leaving`.
    Stopped,
}

/// What the agent checks before it writes anything; shared with `check-config`.
pub struct Preflight {
    pub disk: DirectDisk,
    pub header: DiskHeader,
    pub slot: u64,
    pub mailbox: u64,
    /// The epoch last written in our slot, if readable.
    pub previous_epoch: Option<u32>,
    /// A test message found in the mailbox at start (sender, sequence): acknowledged in the
    /// first heartbeat.
    pub pending_test: Option<(u8, u32)>,
}

pub fn preflight(cfg: &AgentConfig) -> Result<Preflight, AgentError> {
    let mut disk = DirectDisk::open(&cfg.device, true)?;
    let mut block = [0u8; BLOCK];
    disk.read_block(0, &mut block)?;
    let header =
        DiskHeader::decode(&block).map_err(|source| AgentError::Header { path: cfg.device.clone(), source })?;
    let v = Verifier { cluster_id: cfg.cluster_id, key: cfg.key.as_ref() };
    v.check_cluster(header.cluster_id).map_err(|_| AgentError::ClusterMismatch {
        path: cfg.device.clone(),
        config: cfg.file.clone(),
        disk: header.cluster_id,
        ours: cfg.cluster_id,
    })?;
    let (Some(slot), Some(mailbox)) = (header.slot_offset(cfg.node_id), header.mailbox_offset(cfg.node_id)) else {
        return Err(AgentError::NoSlot {
            path: cfg.device.clone(),
            config: cfg.file.clone(),
            node: cfg.node_id,
            slots: header.slot_count,
        });
    };
    cfg.fencing_budget()
        .check(header.timeout)
        .map_err(|violation| AgentError::Fencing { config: cfg.file.clone(), violation })?;
    let pending_test = check_mailbox(cfg, &mut disk, mailbox, &mut block)?;
    disk.read_block(slot, &mut block)?;
    let previous_epoch = heartbeat::decode(&block, &v).ok().map(|hb| hb.boot_epoch);
    Ok(Preflight { disk, header, slot, mailbox, previous_epoch, pending_test })
}

/// Reads this node's mailbox: `Ok(Some((by, seq)))` for a test message, `Ok(None)` when
/// empty, an error (stop serving) for a claim, a poison pill or a corrupt mailbox. The agent
/// never writes its mailbox: a claim written meanwhile must not be overwritten.
fn check_mailbox(
    cfg: &AgentConfig,
    disk: &mut DirectDisk,
    mailbox: u64,
    block: &mut [u8; BLOCK],
) -> Result<Option<(u8, u32)>, AgentError> {
    disk.read_block(mailbox, block)?;
    match MailboxMessage::decode(block) {
        Ok(MailboxMessage::Empty) => Ok(None),
        Ok(MailboxMessage::Test { by, seq }) => Ok(Some((by, seq))),
        Ok(
            MailboxMessage::TakeoverClaim { by, primary_epoch } | MailboxMessage::PendingClaim { by, primary_epoch },
        ) => Err(AgentError::Claimed {
            path: cfg.device.clone(),
            node: cfg.node_id,
            what: format!("a takeover claim by node {by} (it saw this node's boot epoch {primary_epoch} last)"),
        }),
        Ok(MailboxMessage::Poison { by }) => Err(AgentError::Claimed {
            path: cfg.device.clone(),
            node: cfg.node_id,
            what: format!("a poison pill from node {by}"),
        }),
        Err(source) => Err(AgentError::MailboxCorrupt { path: cfg.device.clone(), node: cfg.node_id, source }),
    }
}

/// Options the CLI passes in that are not part of the config file.
#[derive(Clone, Copy, Debug)]
pub struct AgentOptions {
    pub build_stamp: u32,
    pub config_digest: u32,
}

/// Runs the agent until `stop` is set (clean exit) or it must stop serving (error; the node
/// has been fenced by then).
pub fn run(cfg: &AgentConfig, opts: AgentOptions, stop: Arc<AtomicBool>) -> Result<AgentExit, AgentError> {
    let Preflight { mut disk, header, slot, mailbox, previous_epoch, pending_test } = preflight(cfg)?;
    let fencer = Arc::new(Fencer::arm(&cfg.fence)?);
    let epoch = previous_epoch.map_or(0, |e| e.saturating_add(1)).max(unix_secs() as u32);
    let started = now();
    if !disk.is_direct() {
        tracing::warn!(device = %cfg.device.display(), "O_DIRECT refused by this filesystem; using O_DSYNC writes through the page cache");
    }
    tracing::info!(
        device = %cfg.device.display(), node = cfg.node_id, epoch, interval_ms = cfg.interval.as_millis(),
        secondary_timeout_ms = header.timeout.as_millis(), "primary agent started"
    );

    // The watchdog thread: fences the node if no heartbeat cycle has completed within
    // interval + write_deadline (a hung write, a hung mailbox read, a stalled process).
    let last_good = Arc::new(AtomicU64::new(started.as_millis()));
    let budget = cfg.interval + cfg.write_deadline;
    // Set only when the main loop has finished its last disk access: a SIGTERM must not
    // switch the monitor off before the final "leaving" write, which can hang too.
    let done = Arc::new(AtomicBool::new(false));
    {
        let (last_good, fencer, done) = (last_good.clone(), fencer.clone(), done.clone());
        let device = cfg.device.clone();
        let tick = std::time::Duration::from_millis((cfg.write_deadline.as_millis() / 4).clamp(1, 10));
        std::thread::Builder::new()
            .name("fence-monitor".into())
            .spawn(move || loop {
                std::thread::sleep(tick);
                if done.load(Ordering::Acquire) {
                    return;
                }
                let since = now().saturating_since(Instant::from_millis(last_good.load(Ordering::Acquire)));
                if since > budget {
                    let why =
                        format!("no heartbeat cycle on {} completed in {} (limit {})", device.display(), since, budget);
                    fencer.fire(&why);
                    crate::sys::print_fatal(&format!("rearguard agent: fenced: {why}"));
                    std::process::exit(4);
                }
            })
            .expect("spawn fence monitor");
    }

    let verifier_key = cfg.key.clone();
    let mut serial = cfg.serial.clone().map(crate::serial::SerialSink::new);
    let mut block = [0u8; BLOCK];
    let mut frame = [0u8; heartbeat::MAX_FRAME];
    let mut sequence: u64 = 0;
    let mut next = started;
    let mut state = NodeState::Active;
    let fencing = cfg.fencing_budget();
    let mut acks = TestAcks::default();
    acks.see(pending_test);
    let mut ack_now = false;
    let systemd = crate::sys::SystemdNotify::from_env();
    let mut ready = false;
    loop {
        let leaving = stop.load(Ordering::Relaxed);
        if leaving {
            state = NodeState::Leaving;
        }
        sequence += 1;
        let t = now();
        let hb = Heartbeat {
            cluster_id: cfg.cluster_id,
            node_id: cfg.node_id,
            role: Role::Primary,
            boot_epoch: epoch,
            sequence,
            uptime: t.saturating_since(started),
            state,
            health: HealthFlags::OK,
            config_digest: opts.config_digest,
            build_stamp: opts.build_stamp,
            budget: fencing,
            test_acks: acks.count,
            last_test: acks.last,
        };
        let n = heartbeat::encode(&hb, verifier_key.as_ref(), &mut frame);
        if let Some(s) = serial.as_mut() {
            s.send(&frame[..n]); // never blocks; see serial.rs
        }
        block.fill(0);
        block[..n].copy_from_slice(&frame[..n]);
        if let Err(e) = disk.write_block(slot, &block) {
            // Not fatal by itself: the fence monitor decides if writes stay failed too long.
            tracing::warn!(error = %e, "heartbeat write failed");
        } else {
            match check_mailbox(cfg, &mut disk, mailbox, &mut block) {
                Ok(found) => {
                    ack_now = acks.see(found);
                    let done = now();
                    last_good.store(done.as_millis(), Ordering::Release);
                    fencer.pet();
                    if !std::mem::replace(&mut ready, true) {
                        // READY after the first full cycle: the mailbox says this node may serve.
                        systemd.ready(&format!(
                            "primary node {}: serving, a heartbeat every {} to {}",
                            cfg.node_id,
                            cfg.interval,
                            cfg.device.display()
                        ));
                    }
                    // Early warning, before the deadline fences the node: the disk is slow.
                    let took = done.saturating_since(t);
                    if took.saturating_mul(2) > cfg.write_deadline {
                        tracing::warn!(
                            took_ms = took.as_millis(),
                            deadline_ms = cfg.write_deadline.as_millis(),
                            "slow heartbeat cycle (write + mailbox read)"
                        );
                    }
                }
                Err(e @ (AgentError::Claimed { .. } | AgentError::MailboxCorrupt { .. })) => {
                    done.store(true, Ordering::Release);
                    fencer.fire(&e.to_string());
                    return Err(e);
                }
                Err(e) => tracing::warn!(error = %e, "mailbox read failed"),
            }
        }
        if leaving {
            tracing::info!(sequence, "stopped; last heartbeat says leaving");
            done.store(true, Ordering::Release);
            fencer.disarm();
            return Ok(AgentExit::Stopped);
        }
        next = next + cfg.interval;
        let t = now();
        if std::mem::take(&mut ack_now) {
            // A new test message: acknowledge it now rather than an interval later (a drill
            // waits at most two intervals after writing it). The schedule restarts here.
            next = t;
        } else if next <= t {
            // Fell behind (a slow write): skip missed beats rather than bursting.
            next = t + Duration::from_millis(1);
        }
        systemd.pet();
        sleep_until(next, &stop);
    }
}

/// Test messages acknowledged so far, as the heartbeat reports them.
#[derive(Default)]
struct TestAcks {
    count: u32,
    last: u32,
}

impl TestAcks {
    /// A message stays in the mailbox until someone clears it; each is acknowledged once.
    /// True for a message not seen before.
    fn see(&mut self, found: Option<(u8, u32)>) -> bool {
        let Some((by, seq)) = found.filter(|&(_, seq)| seq != self.last) else { return false };
        self.count = self.count.wrapping_add(1);
        self.last = seq;
        tracing::info!(by, seq, acks = self.count, "test message in the mailbox; acknowledged in the next heartbeat");
        true
    }
}

fn sleep_until(deadline: Instant, stop: &AtomicBool) {
    loop {
        let t = now();
        if t >= deadline || stop.load(Ordering::Relaxed) {
            return;
        }
        let left = deadline.saturating_since(t).as_millis().min(50);
        std::thread::sleep(std::time::Duration::from_millis(left));
    }
}
