//! Why the election did what it did, or did not: the reasons it reports to logs, hooks,
//! the status screen and the operator.

use crate::heartbeat::HealthFlags;
use crate::time::Duration;

/// Why the node took the VIPs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TakeoverReason {
    /// Nothing heard from a peer while listening: after start, after own health
    /// recovered, or after maintenance ended, with the peer silent.
    AloneAtStart,
    PeerDead {
        silent_for: Duration,
    },
    /// The peer resigned in our favour (switchover, preempt request, its health).
    PeerYielded,
    /// The peer is alive but not eligible (unhealthy, maintenance, leaving).
    PeerIneligible,
    /// Neither holds the VIPs and we are the preferred node.
    Preferred,
}

impl core::fmt::Display for TakeoverReason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            TakeoverReason::AloneAtStart => {
                f.write_str("no peer heard in a dead interval of listening (start, or recovery)")
            }
            TakeoverReason::PeerDead { silent_for } => write!(f, "peer silent for {silent_for} on every medium"),
            TakeoverReason::PeerYielded => f.write_str("peer resigned in our favour"),
            TakeoverReason::PeerIneligible => f.write_str("peer alive but not eligible"),
            TakeoverReason::Preferred => f.write_str("neither node active and this node is preferred"),
        }
    }
}

/// Why the node gave the VIPs up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResignReason {
    /// Operator switchover on this node.
    Switchover,
    /// The peer asked (preempt, or a switchover issued on the peer).
    PeerRequested,
    /// Own tracked checks failed while a healthy peer was alive.
    Unhealthy(HealthFlags),
    Maintenance,
    /// Both were active; the peer wins `(term, priority, lower id)`.
    LostConflict {
        peer_term: u32,
    },
    Shutdown,
}

impl core::fmt::Display for ResignReason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ResignReason::Switchover => f.write_str("operator switchover"),
            ResignReason::PeerRequested => f.write_str("peer requested the VIPs (preempt or switchover)"),
            ResignReason::Unhealthy(h) => write!(f, "own health checks failing (flags {:#06x})", h.0),
            ResignReason::Maintenance => f.write_str("maintenance mode"),
            ResignReason::LostConflict { peer_term } => {
                write!(f, "both active; peer wins with term {peer_term}")
            }
            ResignReason::Shutdown => f.write_str("shutting down"),
        }
    }
}

/// Why the state changed (the reason a [`super::Transition`] reports to hooks and logs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeReason {
    TookOver(TakeoverReason),
    Resigned(ResignReason),
    /// Heard the peer while starting: the rules decide on what it says.
    PeerHeard,
    /// Listened a dead interval and heard nobody, but cannot hold the VIPs itself.
    AloneIneligible,
    /// Own checks recovered, or maintenance ended, with the peer silent: what we know of
    /// it is stale, so listen for a dead interval before deciding.
    Relisten,
    MaintenanceOn,
    MaintenanceOff,
}

impl core::fmt::Display for ChangeReason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ChangeReason::TookOver(r) => write!(f, "took over: {r}"),
            ChangeReason::Resigned(r) => write!(f, "resigned: {r}"),
            ChangeReason::PeerHeard => f.write_str("peer heard while starting"),
            ChangeReason::AloneIneligible => f.write_str("no peer heard while starting, and not eligible to take over"),
            ChangeReason::Relisten => f.write_str("peer silent: listening for a dead interval before deciding"),
            ChangeReason::MaintenanceOn => f.write_str("maintenance mode on"),
            ChangeReason::MaintenanceOff => f.write_str("maintenance mode off"),
        }
    }
}

/// Why a non-active node is not taking the VIPs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blocker {
    Maintenance,
    /// Own tracked checks fail.
    Unhealthy(HealthFlags),
    Starting {
        remaining: Duration,
    },
    /// The peer holds the VIPs and is alive.
    PeerActive,
    /// Neither is active yet and the peer is preferred.
    PeerPreferred,
    /// We resigned in the peer's favour and wait for it to take over.
    Yielding,
}

impl core::fmt::Display for Blocker {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Blocker::Maintenance => f.write_str("maintenance mode"),
            Blocker::Unhealthy(h) => write!(f, "own health checks failing (flags {:#06x})", h.0),
            Blocker::Starting { remaining } => write!(f, "starting, listening for the peer ({remaining} left)"),
            Blocker::PeerActive => f.write_str("peer is active and alive"),
            Blocker::PeerPreferred => f.write_str("peer is preferred"),
            Blocker::Yielding => f.write_str("resigned, waiting for the peer to take over"),
        }
    }
}

/// A peer that runs another build or another pair policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mismatch {
    Build { ours: u32, theirs: u32 },
    Config { ours: u32, theirs: u32 },
}

impl core::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Mismatch::Build { ours, theirs } => {
                write!(f, "peer build stamp {theirs:#010x} differs from ours {ours:#010x}; run the same release on both nodes")
            }
            Mismatch::Config { ours, theirs } => write!(
                f,
                "peer pair-config digest {theirs:#010x} differs from ours {ours:#010x}; make the [pair] policy identical on both nodes"
            ),
        }
    }
}

/// Why an operator switchover was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwitchoverError {
    PeerNotAlive,
    PeerIneligible,
    PeerRefused(Mismatch),
    InMaintenance,
    Unhealthy(HealthFlags),
    Starting,
}

impl core::fmt::Display for SwitchoverError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SwitchoverError::PeerNotAlive => f.write_str("peer is not alive: nobody to hand over to"),
            SwitchoverError::PeerIneligible => f.write_str("peer is not eligible (unhealthy or in maintenance)"),
            SwitchoverError::PeerRefused(m) => write!(f, "peer refused: {m}"),
            SwitchoverError::InMaintenance => f.write_str("this node is in maintenance; turn it off first"),
            SwitchoverError::Unhealthy(h) => write!(f, "this node's health checks fail (flags {:#06x})", h.0),
            SwitchoverError::Starting => f.write_str("still starting; try again in a moment"),
        }
    }
}
