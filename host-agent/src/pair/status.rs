//! The control socket's `status` reply: the driver's whole view as one JSON object (state,
//! peer, media counters, VIPs, checks, why this node is not active).

use super::driver::Driver;
use super::netlink;
use crate::sys::rss_kb;
use rearguard_shared::election::advert::Advert;
use rearguard_shared::election::PairState;
use rearguard_shared::reject::Reject;
use rearguard_shared::Instant;
use serde_json::json;

// A second `impl Driver` rather than a function of many arguments: the reply reads nearly
// every field the driver keeps, which is why those fields are `pub(super)`.
impl Driver {
    /// Field names are an interface: `rearguard status`, scripts and the tests read them.
    pub(super) fn status(&self, t: Instant) -> serde_json::Value {
        let sm = &self.sm;
        let peer = sm.peer().map(|pv| {
            json!({
                "node_id": pv.node_id(),
                "state": format!("{:?}", pv.advert.hb.state).to_lowercase(),
                "priority": pv.advert.priority,
                "term": pv.advert.term,
                "alive": sm.peer_alive(t),
                "heartbeat_age_ms": t.saturating_since(pv.last_heard).as_millis(),
                "health_flags": pv.advert.hb.health.0,
                "maintenance": pv.advert.has(Advert::MAINTENANCE),
                "refused": pv.mismatch.map(|m| m.to_string()),
                "boot_epoch": pv.advert.hb.boot_epoch,
            })
        });
        let media: Vec<_> = self
            .media
            .iter()
            .enumerate()
            .map(|(i, link)| {
                let m = &sm.media()[i].rx;
                let rejected: serde_json::Map<String, serde_json::Value> = Reject::NAMES
                    .iter()
                    .zip(m.rejected.iter())
                    .filter(|(_, n)| **n > 0)
                    .map(|(name, n)| (name.to_string(), json!(n)))
                    .collect();
                json!({
                    "interface": link.name(),
                    "dest": link.dest(),
                    "peer_alive": sm.medium_alive(i, t),
                    "accepted": m.accepted,
                    "rejected_total": m.rejected_total(),
                    "rejected": rejected,
                    "last_reject": m.last_reject.map(|r| r.to_string()),
                })
            })
            .collect();
        let vips: Vec<_> = self
            .cfg
            .vips
            .iter()
            .map(|v| json!({"address": format!("{}/{}", v.addr, v.prefix), "interface": v.interface, "present": netlink::is_present(v)}))
            .collect();
        let holder = if sm.state() == PairState::Active {
            json!("self")
        } else if sm.peer().is_some_and(|pv| pv.is_active()) && sm.peer_alive(t) {
            json!(sm.peer().map(|pv| pv.node_id()))
        } else {
            json!(null)
        };
        let checks: Vec<_> = self
            .cfg
            .checks
            .iter()
            .zip(&self.checks)
            .map(|(c, s)| json!({"name": c.name, "ok": s.ok, "detail": s.detail}))
            .collect();
        let reasons: Vec<&str> = self.checks.iter().filter(|s| s.ok != Some(true)).map(|s| s.detail.as_str()).collect();
        json!({
            "ok": true,
            "name": self.cfg.name,
            "node_id": self.cfg.node_id,
            "state": sm.state().name(),
            "term": sm.term(),
            "priority": self.cfg.priority,
            "effective_priority": sm.effective_priority(),
            "maintenance": sm.maintenance(),
            "healthy": sm.health().is_healthy(),
            "health_flags": sm.health().0,
            "health_reasons": reasons,
            "checks": checks,
            "why_not_active": sm.blocker(t).map(|b| {
                let mut s = b.to_string();
                if !reasons.is_empty() {
                    s = format!("{s}: {}", reasons.join("; "));
                }
                s
            }),
            "vip_holder": holder,
            "vips": vips,
            "peer": peer,
            "media": media,
            "takeovers": sm.takeovers(),
            "resigns": sm.resigns(),
            "last_takeover": sm.last_takeover().map(|r| r.to_string()),
            "last_resign": sm.last_resign().map(|r| r.to_string()),
            "last_change": self.last_change.as_ref().map(|(at, what)| json!({"ago_ms": t.saturating_since(*at).as_millis(), "what": what})),
            "hooks": self.hooks.status(),
            "send_errors": self.send_errors,
            "last_send_error": self.last_send_error,
            "uptime_ms": t.saturating_since(self.started).as_millis(),
            "rss_kb": rss_kb(),
            "conntrack": self.conntrack.as_ref().map(|ct| ct.status()),
        })
    }
}
