//! `rearguard check-config FILE`: everything the agent or listener would check at start,
//! without running it.

use rearguard_board_linux::config::LinuxListenerConfig;
use rearguard_host_agent::agent::preflight;
use rearguard_host_agent::config::agent::AgentConfig;
use rearguard_host_agent::config::{ConfigKind, Source};
use std::path::Path;

pub fn run(file: &Path) -> anyhow::Result<u8> {
    let src = Source::read(file)?;
    let kind = ConfigKind::of(&src)?;
    if kind == ConfigKind::Pair {
        return super::pair_cmd::check_config(&src);
    }
    if kind == ConfigKind::Listener {
        let cfg = LinuxListenerConfig::from_source(&src)?;
        let timeout = rearguard_board_linux::check(&cfg)?;
        if cfg.listener.timeout < timeout {
            println!(
                "warning: [listener] timeout_ms = {} is below the disk's {} ms; the listener will use {} ms so the primary's fencing bound holds",
                cfg.listener.timeout.as_millis(),
                timeout.as_millis(),
                timeout.as_millis()
            );
        }
        let watched = match cfg.watch {
            Some(w) => format!("primaries {w} as a spare"),
            None => format!("node {}", cfg.listener.primary_node),
        };
        println!(
            "ok: listener config {} — watches {watched} on {} (cluster {:#x}), timeout {} ms, poll {} ms",
            file.display(),
            cfg.device.display(),
            cfg.listener.cluster_id,
            timeout.as_millis(),
            cfg.listener.poll_period.as_millis()
        );
    } else {
        let cfg = AgentConfig::from_source(&src)?;
        let p = preflight(&cfg)?;
        println!(
            "ok: agent config {} — node {} on {} (cluster {:#x}); fenced within {} ms of a stall, secondary waits {} ms (needs ≥ {} ms)",
            file.display(),
            cfg.node_id,
            cfg.device.display(),
            cfg.cluster_id,
            cfg.fencing_budget().worst_case_fenced_after().as_millis(),
            p.header.timeout.as_millis(),
            cfg.fencing_budget().min_timeout().as_millis()
        );
    }
    Ok(0)
}
