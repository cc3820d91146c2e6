//! The pair's readiness drill (`rearguard drill --config pair.toml`): could this pair fail
//! over right now? Asked of the running agent over its control socket (`drill`), because
//! the facts live there — what it hears on each medium, its peer's build and policy, its
//! checks, and its own privileges — and answered without changing anything: no address is
//! added, no advert or announcement sent, no hook run, no state changed.
//!
//! The verdicts travel as JSON (`{"checks": [{"name", "ready", "text"}]}`) and are printed
//! through [`crate::drill::Report`], the one drill format.

use super::driver::Driver;
use super::{announce, conntrack, netlink};
use crate::config::pair::{CheckKind, Conntrack, PairConfig};
use crate::drill::{Report, Verdict};
use rearguard_shared::election::PairState;
use rearguard_shared::Instant;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

impl Driver {
    /// The election's part of the `drill` reply, one verdict per check; the machine's own
    /// checks are added by [`with_local_checks`], off the election loop.
    pub(super) fn drill(&self, t: Instant) -> serde_json::Value {
        let mut r = Report::new();
        let sm = &self.sm;
        let peer = sm.peer();
        let peer_name = peer.map_or("the peer".to_string(), |p| format!("node {}", p.node_id()));
        r.ready("agent", format!("node {} answering, {} (term {})", self.cfg.node_id, sm.state().name(), sm.term()));
        if sm.maintenance() {
            r.not_ready("in service", "maintenance mode: it will not take over; `rearguard maintenance off`");
        } else {
            r.ready("in service", "not in maintenance");
        }
        let dead_ms = sm.params().dead_after().as_millis();
        for (i, link) in self.media.iter().enumerate() {
            let name = format!("peer fresh on {}", link.name());
            if sm.medium_alive(i, t) {
                r.ready(name, format!("{peer_name} heard within the dead interval ({dead_ms} ms)"));
            } else {
                r.not_ready(
                    name,
                    format!("no advert from {peer_name} in the last {dead_ms} ms on this medium: check its cable, interface and filters ({})", link.dest()),
                );
            }
        }
        match peer {
            None => r.not_ready("build and policy match", "no peer heard since the agent started"),
            Some(p) => match p.mismatch {
                Some(m) => r.not_ready("build and policy match", format!("{peer_name} refused: {m}")),
                None => r.ready(
                    "build and policy match",
                    format!(
                        "{peer_name}: same build {:#010x} and policy digest {:#010x}",
                        p.advert.hb.build_stamp, p.advert.hb.config_digest
                    ),
                ),
            },
        }
        let failing: Vec<String> = self
            .cfg
            .checks
            .iter()
            .zip(&self.checks)
            .filter(|(_, s)| s.ok != Some(true))
            .map(|(_, s)| s.detail.clone())
            .collect();
        if failing.is_empty() {
            r.ready("own checks healthy", format!("{} check(s) passing", self.checks.len()));
        } else {
            r.not_ready("own checks healthy", failing.join("; "));
        }
        let mut targets = 0;
        for (c, s) in self.cfg.checks.iter().zip(&self.checks) {
            if let CheckKind::Ping { target, .. } = c.kind {
                targets += 1;
                let name = format!("target {target} reachable");
                match s.ok {
                    Some(true) => r.ready(name, s.detail.clone()),
                    _ => r.not_ready(name, s.detail.clone()),
                }
            }
        }
        if targets == 0 {
            r.ready("monitored targets reachable", "none configured ([[pair.check]] kind = \"ping\")");
        }
        let role = match sm.state() {
            PairState::Active => "this node holds the VIPs".to_string(),
            s if peer.is_some_and(|p| p.is_active()) && sm.peer_alive(t) => {
                format!("{}: {peer_name} holds the VIPs; this node takes over when it fails", s.name())
            }
            s => format!("{}: nobody is known to hold the VIPs", s.name()),
        };
        r.ready("roles", role);
        json!({"ok": true, "checks": to_json(&r)})
    }
}

fn to_json(r: &Report) -> Vec<serde_json::Value> {
    r.checks()
        .iter()
        .map(|(name, v)| match v {
            Verdict::Ready(text) => json!({"name": name, "ready": true, "text": text}),
            Verdict::NotReady(text) => json!({"name": name, "ready": false, "text": text}),
        })
        .collect()
}

/// The election loop's `drill` reply (JSON text) with this machine's checks appended; run on
/// the control thread.
pub(super) fn with_local_checks(cfg: &PairConfig, reply: &str) -> String {
    let Ok(mut v) = serde_json::from_str::<serde_json::Value>(reply) else { return reply.to_string() };
    if let Some(checks) = v["checks"].as_array_mut() {
        let mut r = Report::new();
        local_checks(cfg, &mut r);
        checks.extend(to_json(&r));
    }
    v.to_string()
}

/// The checks of this machine rather than of the election: VIP interfaces, privileges,
/// hooks (and conntrackd). The agent runs them for the drill, with its own privileges; the
/// CLI runs them itself when the agent does not answer.
pub fn local_checks(cfg: &PairConfig, r: &mut Report) {
    let mut seen: Vec<String> = Vec::new();
    for v in &cfg.vips {
        // With vmac the VIP lives on a macvlan that is down (or absent) on a standby: what
        // must be present, up and cabled is its parent, the configured interface.
        let link = v.link();
        if seen.iter().any(|s| s == link) {
            continue;
        }
        seen.push(link.to_string());
        let name = format!("VIP interface {link}");
        let sys = |f: &str| std::fs::read_to_string(format!("/sys/class/net/{link}/{f}")).map(|s| s.trim().to_string());
        let flags = sys("flags").ok().and_then(|f| u32::from_str_radix(f.trim_start_matches("0x"), 16).ok());
        match (netlink::ifindex(link), flags) {
            (Err(_), _) | (_, None) => r.not_ready(name, "does not exist: check [[pair.vip]] interface and `ip link`"),
            (Ok(_), Some(f)) if f & libc::IFF_UP as u32 == 0 => {
                r.not_ready(name, format!("is down: `ip link set {link} up`"))
            }
            (Ok(_), Some(_)) if sys("carrier").ok().as_deref() != Some("1") => {
                r.not_ready(name, "up but without carrier: check its cable and the switch port")
            }
            (Ok(i), Some(_)) => r.ready(name, format!("present (index {i}), up, with carrier")),
        }
    }
    match netlink::Netlink::open().and_then(|mut nl| nl.may_change_addresses()) {
        Ok(()) => r.ready("rtnetlink permission", "may add and remove addresses (asked without changing any)"),
        Err(e) => r.not_ready("rtnetlink permission", format!("{e}: the agent needs CAP_NET_ADMIN")),
    }
    match announce::may_announce(&cfg.vips) {
        Ok(()) => r.ready("raw socket permission", "may send gratuitous ARP / neighbour advertisements (nothing sent)"),
        Err(e) => r.not_ready("raw socket permission", format!("{e}: the agent needs CAP_NET_RAW")),
    }
    for hook in &cfg.hooks {
        let name = format!("hook {}", hook.display());
        match std::fs::metadata(hook) {
            Err(e) => r.not_ready(name, format!("{e}: fix [pair] hooks or install the script")),
            Ok(m) if !m.is_file() => r.not_ready(name, "not a regular file"),
            Ok(m) if m.permissions().mode() & 0o111 == 0 => {
                r.not_ready(name, format!("not executable: `chmod +x {}`", hook.display()))
            }
            Ok(_) => r.ready(name, "present and executable (not run)"),
        }
    }
    conntrackd_answering(cfg, r);
}

/// The longest the drill waits for conntrackd, whatever `timeout_ms` says: the CLI waits 5 s
/// for the whole reply.
const CONNTRACKD_DRILL_TIMEOUT: Duration = Duration::from_secs(2);

/// "conntrackd answering": its statistics (`-s`), the test primary-backup.sh makes; nothing
/// committed, flushed or resynchronised.
fn conntrackd_answering(cfg: &PairConfig, r: &mut Report) {
    const NAME: &str = "conntrackd answering";
    let Some(ct) = &cfg.conntrack else {
        r.ready(NAME, "not configured ([pair.conntrack]): connections through the pair do not survive a failover");
        return;
    };
    let ct = Conntrack { timeout: ct.timeout.min(CONNTRACKD_DRILL_TIMEOUT), ..ct.clone() };
    match conntrack::probe(&ct) {
        Ok(()) => r.ready(NAME, format!("conntrackd ({}) answered its statistics request", ct.config.display())),
        Err(why) => r.not_ready(
            NAME,
            format!(
                "{why}: start conntrackd (`conntrackd -C {} -d`) or fix [pair.conntrack] config",
                ct.config.display()
            ),
        ),
    }
}

/// Turns the agent's `drill` reply back into a [`Report`].
pub fn report_from_reply(v: &serde_json::Value) -> Report {
    let mut r = Report::new();
    for c in v["checks"].as_array().into_iter().flatten() {
        let name = c["name"].as_str().unwrap_or("?");
        let text = c["text"].as_str().unwrap_or("").to_string();
        r.add(name, if c["ready"] == true { Verdict::Ready(text) } else { Verdict::NotReady(text) });
    }
    if v["ok"] != true {
        r.not_ready(
            "agent",
            v["error"].as_str().unwrap_or("the agent refused the drill (an older build?)").to_string(),
        );
    }
    r
}
