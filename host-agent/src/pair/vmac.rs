//! VIPs that move with their MAC (`vmac = true`): each lives on a macvlan with the VRRP
//! virtual MAC, up only on the active node. After a failover the switch learns the MAC's new
//! port from the announcements, and a neighbour cache that never updates (a pinned entry, a
//! device that ignores gratuitous ARP) still reaches the VIP.
//!
//! The sysctls keepalived's use_vmac users stumble on are set here, their previous values
//! kept in `state_dir` (so that `vip-cleanup` after a crash restores them too):
//! - parent `arp_ignore = 1`: answer ARP only for addresses of the receiving interface, or
//!   the parent answers for the VIP with its own MAC and the virtual MAC is pointless;
//! - parent `arp_announce = 2`: its own ARP requests carry its own address, not the VIP
//!   (replies from the VIP leave by the parent, whose route comes first): a neighbour that
//!   hears "VIP is at the parent's MAC" learns the very binding vmac avoids;
//! - parent `arp_filter = 1`, macvlan `arp_filter = 0`: the parent answers only for what it
//!   routes; the macvlan must answer for the VIP although the subnet's route leaves by the
//!   parent, which arp_filter = 1 would refuse;
//! - parent and macvlan `rp_filter = 2` (loose): the kernel applies the larger of `all` and
//!   the interface's value, so loose wins over a strict `all = 1`, which would drop packets
//!   to the VIP whose reverse route leaves by the parent.

use super::netlink::{Netlink, VipError};
use crate::config::pair::{PairConfig, Vmac};
use std::path::PathBuf;
use tracing::warn;

/// Every macvlan the config asks for, once each.
fn vmacs(cfg: &PairConfig) -> Vec<&Vmac> {
    let mut out: Vec<&Vmac> = Vec::new();
    for m in cfg.vips.iter().filter_map(|v| v.vmac.as_ref()) {
        if !out.iter().any(|o| o.name() == m.name()) {
            out.push(m);
        }
    }
    out
}

/// The sysctls set for one macvlan and its parent.
fn sysctls(m: &Vmac) -> Vec<(String, &'static str)> {
    let mut out = Vec::new();
    for (dev, keys) in [
        (m.parent.clone(), &[("arp_ignore", "1"), ("arp_announce", "2"), ("arp_filter", "1"), ("rp_filter", "2")][..]),
        (m.name(), &[("arp_ignore", "1"), ("arp_filter", "0"), ("rp_filter", "2")][..]),
    ] {
        for (key, value) in keys {
            out.push((format!("/proc/sys/net/ipv4/conf/{dev}/{key}"), *value));
        }
    }
    out
}

fn saved_file(cfg: &PairConfig) -> PathBuf {
    cfg.state_dir.join(format!("vmac-sysctl-{}", cfg.node_id))
}

/// Creates the macvlans (down: the standby must not show the virtual MAC) and sets the
/// sysctls. An earlier run's macvlans are removed first by [`remove`].
pub fn create(cfg: &PairConfig, nl: &mut Netlink) -> Result<(), VipError> {
    let list = vmacs(cfg);
    if list.is_empty() {
        return Ok(());
    }
    for m in &list {
        nl.add_macvlan(&m.name(), &m.parent, m.mac)?;
    }
    // The values before ours, written once: a restart after a crash must not take our own
    // values for the originals.
    let file = saved_file(cfg);
    if !file.exists() {
        let mut saved = String::new();
        for (path, _) in list.iter().flat_map(|m| sysctls(m)) {
            if let Ok(v) = std::fs::read_to_string(&path) {
                saved.push_str(&format!("{path} {}\n", v.trim()));
            }
        }
        std::fs::create_dir_all(&cfg.state_dir)
            .and_then(|_| std::fs::write(&file, saved))
            .map_err(|e| VipError::Io(std::io::Error::new(e.kind(), format!("{}: {e}", file.display()))))?;
    }
    for (path, value) in list.iter().flat_map(|m| sysctls(m)) {
        std::fs::write(&path, value)
            .map_err(|e| VipError::Io(std::io::Error::new(e.kind(), format!("{path}: {e}"))))?;
    }
    Ok(())
}

/// Brings every macvlan up (before its VIPs are added) or down (after they are removed).
pub fn set_up(cfg: &PairConfig, nl: &mut Netlink, up: bool) {
    for m in vmacs(cfg) {
        if let Err(e) = nl.set_link_up(&m.name(), up) {
            warn!("vmac {}: {e}", m.name());
        }
    }
}

/// Deletes the macvlans (their VIPs go with them) and restores the parents' sysctls.
/// Returns the macvlans that were present.
pub fn remove(cfg: &PairConfig, nl: &mut Netlink) -> Result<Vec<String>, VipError> {
    let mut removed = Vec::new();
    for m in vmacs(cfg) {
        let name = m.name();
        let was = super::netlink::ifindex(&name).is_ok();
        nl.delete_link(&name)?;
        if was {
            removed.push(format!("macvlan {name} on {}", m.parent));
        }
    }
    let file = saved_file(cfg);
    if let Ok(saved) = std::fs::read_to_string(&file) {
        for line in saved.lines() {
            let Some((path, value)) = line.rsplit_once(' ') else { continue };
            // The macvlan's own went with it; a parent that is gone has nothing to restore.
            if std::path::Path::new(path).exists() {
                if let Err(e) = std::fs::write(path, value) {
                    warn!("cannot restore {path} = {value}: {e}");
                }
            }
        }
        let _ = std::fs::remove_file(&file);
    }
    Ok(removed)
}
