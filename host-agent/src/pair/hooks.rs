//! Operator hooks on state changes, called as keepalived calls its notify scripts so that
//! existing scripts keep working.

use crate::config::pair::PairConfig;
use rearguard_shared::election::PairState;
use tracing::warn;

/// keepalived's name for the state a node entered: a node that is not active because its
/// own checks fail is FAULT, not BACKUP, so scripts can tell "standing by" from "broken".
pub(super) fn keepalived_state(to: PairState, healthy: bool) -> &'static str {
    match to {
        PairState::Active => "MASTER",
        PairState::Standby | PairState::Starting | PairState::Maintenance if !healthy => "FAULT",
        _ => "BACKUP",
    }
}

/// keepalived-compatible notify: `SCRIPT INSTANCE NAME STATE PRIORITY`, plus RG_* variables.
pub(super) fn run(
    cfg: &PairConfig,
    state: &str,
    rg_state: PairState,
    term: u32,
    priority: u8,
    peer: Option<u8>,
    reason: &str,
) {
    for hook in &cfg.hooks {
        let vips: Vec<String> = cfg.vips.iter().map(|v| format!("{}/{}@{}", v.addr, v.prefix, v.interface)).collect();
        let child = std::process::Command::new(hook)
            .args(["INSTANCE", &cfg.name, state, &priority.to_string()])
            .env("RG_STATE", rg_state.name())
            .env("RG_KEEPALIVED_STATE", state)
            .env("RG_NODE_ID", cfg.node_id.to_string())
            .env("RG_PEER_ID", peer.map(|p| p.to_string()).unwrap_or_default())
            .env("RG_TERM", term.to_string())
            .env("RG_PRIORITY", priority.to_string())
            .env("RG_REASON", reason)
            .env("RG_VIPS", vips.join(" "))
            .stdin(std::process::Stdio::null())
            .spawn();
        match child {
            Ok(mut c) => {
                // Reap without blocking the election loop.
                let _ = std::thread::Builder::new().stack_size(64 * 1024).spawn(move || {
                    let _ = c.wait();
                });
            }
            Err(e) => warn!("hook {}: cannot run: {e}", hook.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_is_master_whatever_the_health() {
        assert_eq!(keepalived_state(PairState::Active, true), "MASTER");
        assert_eq!(keepalived_state(PairState::Active, false), "MASTER");
    }

    #[test]
    fn not_active_is_backup_when_healthy_and_fault_when_not() {
        for s in [PairState::Starting, PairState::Standby, PairState::Maintenance] {
            assert_eq!(keepalived_state(s, true), "BACKUP", "{s:?}");
            assert_eq!(keepalived_state(s, false), "FAULT", "{s:?}");
        }
    }
}
