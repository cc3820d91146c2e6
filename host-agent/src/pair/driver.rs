//! The driver around [`rearguard_shared::election::Election`]: receiver threads decode
//! adverts, check threads report debounced health, the control socket forwards operator
//! requests, all as [`Event`]s on one channel; the main loop feeds them with `now` to the
//! state machine and carries out its actions (adverts out on every medium, VIPs via
//! netlink, GARP/NA bursts, hooks). The state machine never sees a socket or a clock.

use super::checks::{self, CheckReport};
use super::conntrack::{Conntrackd, Role};
use super::persist::Persist;
use super::{announce, control, drill, hooks, net, netlink, vmac};
use crate::config::pair::PairConfig;
use crate::sys::{realtime, SystemdNotify};
use crate::time::{now, unix_secs};
use rearguard_shared::election::advert::{decode_advert, encode_advert, Advert, MAX_ADVERT_FRAME};
use rearguard_shared::election::{Action, Election, PairState};
use rearguard_shared::heartbeat::{HealthFlags, Verifier};
use rearguard_shared::reject::Reject;
use rearguard_shared::Instant;
use serde_json::json;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::sync::Arc;
use tracing::{debug, info, warn};

/// Inputs to the main loop.
enum Event {
    Frame(usize, Result<Advert, Reject>),
    Check(CheckReport),
    Control(String, Sender<String>),
}

pub struct PairOptions {
    /// Digest of this build (version, protocol, commit): a peer with another is refused.
    pub build_stamp: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum PairError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Vip(#[from] netlink::VipError),
    #[error("control socket {path}: {source}")]
    Control { path: PathBuf, source: std::io::Error },
}

/// Removes every configured VIP and vmac macvlan, restoring the sysctls set for them
/// (start-up cleanup, `vip-cleanup`, ExecStopPost). Returns what was present.
pub fn remove_vips(cfg: &PairConfig) -> Result<Vec<String>, PairError> {
    let mut nl = netlink::Netlink::open()?;
    let mut removed = Vec::new();
    for v in &cfg.vips {
        let was = netlink::is_present(v);
        match nl.remove(v) {
            Ok(()) if was => removed.push(v.to_string()),
            Ok(()) => {}
            Err(netlink::VipError::NoInterface(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    removed.extend(vmac::remove(cfg, &mut nl)?);
    Ok(removed)
}

/// Boot epoch: grows across restarts (kept in state_dir; seeded from the wall clock).
fn boot_epoch(cfg: &PairConfig) -> u32 {
    let file = cfg.state_dir.join(format!("pair-epoch-{}", cfg.node_id));
    let stored = std::fs::read_to_string(&file).ok().and_then(|s| s.trim().parse::<u32>().ok()).unwrap_or(0);
    let epoch = stored.saturating_add(1).max(unix_secs() as u32);
    if let Err(e) = std::fs::create_dir_all(&cfg.state_dir).and_then(|_| std::fs::write(&file, format!("{epoch}\n"))) {
        warn!(
            "cannot record the boot epoch in {}: {e}; restarts within one second may be taken for replays",
            file.display()
        );
    }
    epoch
}

pub(super) struct CheckState {
    pub(super) ok: Option<bool>,
    pub(super) detail: String,
}

pub(super) struct Driver {
    pub(super) cfg: PairConfig,
    pub(super) sm: Election,
    nl: netlink::Netlink,
    pub(super) media: Vec<net::Link>,
    pub(super) checks: Vec<CheckState>,
    pub(super) started: Instant,
    /// Bumped on every acquire/release: a running announce burst stops when it changes.
    announce_gen: Arc<AtomicU64>,
    pub(super) send_errors: u64,
    pub(super) last_send_error: Option<String>,
    pub(super) last_change: Option<(Instant, String)>,
    pub(super) hooks: hooks::Hooks,
    pub(super) conntrack: Option<Conntrackd>,
    /// Term and the peer's replay mark, kept across restarts (see `persist`).
    persist: Persist,
}

pub fn run(cfg: &PairConfig, opts: PairOptions, stop: Arc<AtomicBool>) -> Result<(), PairError> {
    let epoch = boot_epoch(cfg);
    let params = cfg.params(epoch, opts.build_stamp);
    info!(
        node = cfg.node_id,
        priority = cfg.priority,
        epoch,
        digest = format_args!("{:#010x}", params.config_digest),
        "pair agent starting ({} VIPs, {} media, {} checks)",
        cfg.vips.len(),
        cfg.media.len(),
        cfg.checks.len()
    );
    // Stale VIPs (a crash, a SIGKILL) must go before we say anything: we start as standby.
    for v in remove_vips(cfg)? {
        warn!("removed stale VIP {v} left by an earlier run");
    }
    let hooks = hooks::Hooks::start(cfg)?;
    let (tx, rx) = channel::<Event>();
    let mut media = Vec::new();
    for (i, m) in cfg.media.iter().enumerate() {
        let (link, mut inbound) = net::Link::open(m)?;
        let tx = tx.clone();
        let key = cfg.key.clone();
        let cluster_id = cfg.cluster_id;
        let rt = cfg.realtime_priority;
        std::thread::Builder::new().name(format!("rx-{i}")).stack_size(256 * 1024).spawn(move || {
            realtime(rt);
            let mut buf = [0u8; 512];
            loop {
                let frame = match inbound.next(&mut buf) {
                    Ok(Ok(n)) => decode_advert(&buf[..n], &Verifier { cluster_id, key: key.as_ref() }),
                    Ok(Err(noise)) => Err(noise),
                    Err(e) => {
                        debug!(medium = i, "receive: {e}");
                        std::thread::sleep(inbound.retry_pause());
                        continue;
                    }
                };
                if tx.send(Event::Frame(i, frame)).is_err() {
                    return;
                }
            }
        })?;
        media.push(link);
    }
    for (i, c) in cfg.checks.iter().enumerate() {
        let tx = tx.clone();
        checks::spawn(i, c.clone(), move |r| tx.send(Event::Check(r)).is_ok(), stop.clone(), cfg.realtime_priority)?;
    }
    let control_tx = tx.clone();
    let drill_cfg = cfg.clone();
    control::serve(
        &cfg.control_socket,
        move |req, reply| {
            if req != "drill" {
                return control_tx.send(Event::Control(req, reply)).is_ok();
            }
            // The loop answers the election's checks; this (control) thread adds the
            // machine's own, which may wait on conntrackd (see drill.rs).
            let (loop_tx, loop_rx) = channel();
            if control_tx.send(Event::Control(req, loop_tx)).is_err() {
                return false;
            }
            if let Ok(answer) = loop_rx.recv_timeout(std::time::Duration::from_secs(2)) {
                let _ = reply.send(drill::with_local_checks(&drill_cfg, &answer));
            }
            true
        },
        stop.clone(),
    )
    .map_err(|source| PairError::Control { path: cfg.control_socket.clone(), source })?;
    drop(tx);

    let t0 = now();
    let persist = Persist::open(&cfg.state_dir, cfg.node_id, cfg.interval.as_millis());
    let mut d = Driver {
        cfg: cfg.clone(),
        sm: Election::new(params, t0).with_term(persist.saved().term),
        nl: netlink::Netlink::open()?,
        media,
        checks: cfg.checks.iter().map(|_| CheckState { ok: None, detail: "no result yet".into() }).collect(),
        started: t0,
        announce_gen: Arc::new(AtomicU64::new(0)),
        send_errors: 0,
        last_send_error: None,
        last_change: None,
        hooks,
        conntrack: cfg.conntrack.as_ref().map(Conntrackd::start).transpose()?,
        persist,
    };
    if let Err(e) = vmac::create(cfg, &mut d.nl) {
        warn!("cannot set up the vmac interfaces: {e}; VIPs with vmac = true will not be held");
    }
    // Checks count as failing until their first result.
    let acts = d.sm.set_health(d.health(), t0);
    d.execute(acts, t0);
    if let Some(e) = realtime(cfg.realtime_priority) {
        warn!(
            "cannot run the election loop at real-time priority {}: {e}; heartbeats may stall under load",
            cfg.realtime_priority
        );
    }
    let systemd = SystemdNotify::from_env();

    while !stop.load(Ordering::Relaxed) {
        let t = now();
        let wait = d.sm.poll_at().saturating_since(t).as_millis().min(100);
        match rx.recv_timeout(std::time::Duration::from_millis(wait)) {
            Ok(ev) => d.handle(ev),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        let t = now();
        if d.sm.poll_at() <= t {
            let acts = d.sm.poll(t);
            d.execute(acts, t);
        }
        // READY once the election left `starting`: this node knows whether it is active.
        if d.sm.state() != PairState::Starting {
            systemd.ready(&d.status_line());
        }
        systemd.pet();
    }
    info!("stopping: releasing VIPs and telling the peer");
    let t = now();
    let acts = d.sm.shutdown(t);
    d.execute(acts, t);
    let mark = d.sm.peer().map(|p| (p.node_id(), p.advert.hb.boot_epoch, p.advert.hb.sequence));
    d.persist.stop(d.sm.term(), mark);
    let peer = d.sm.peer().map(|p| p.node_id());
    d.hooks.stop(hooks::HookEvent {
        state: "STOP",
        rg_state: d.sm.state(),
        term: d.sm.term(),
        priority: d.sm.effective_priority(),
        peer,
        reason: "agent stopped".into(),
    });
    let _ = remove_vips(cfg);
    let _ = std::fs::remove_file(&cfg.control_socket);
    stop.store(true, Ordering::Relaxed);
    Ok(())
}

impl Driver {
    /// conntrackd follows the keepalived state the hooks were just given (one mapping for
    /// both): BACKUP and FAULT after the VIPs went (Release comes first), so the states this
    /// node owned age out and it asks the new primary for its table. MASTER's sequence runs
    /// from the Acquire arm, around the announcement.
    fn conntrack_follows(&mut self, state: Option<&'static str>) {
        let role = match state {
            Some("BACKUP") => Role::Backup,
            Some("FAULT") => Role::Fault,
            _ => return,
        };
        if let Some(ct) = &mut self.conntrack {
            ct.transition(role, None);
        }
    }

    /// systemd's STATUS= line: role, state, term, peer.
    fn status_line(&self) -> String {
        let peer = match self.sm.peer() {
            Some(p) => format!("peer {} {}", p.node_id(), if p.is_active() { "active" } else { "not active" }),
            None => "no peer heard".into(),
        };
        format!("pair node {}: {}, term {}, {peer}", self.cfg.node_id, self.sm.state().name(), self.sm.term())
    }

    fn health(&self) -> HealthFlags {
        let mut f = 0u16;
        for (c, s) in self.cfg.checks.iter().zip(&self.checks) {
            if s.ok != Some(true) {
                f |= c.flag();
            }
        }
        HealthFlags(f)
    }

    fn handle(&mut self, ev: Event) {
        let t = now();
        match ev {
            Event::Frame(i, frame) => {
                let frame = self.persist.check(frame);
                if let Err(r) = &frame {
                    debug!(medium = i, "advert rejected: {r}");
                }
                let acts = self.sm.on_frame(i, frame, t);
                self.execute(acts, t);
            }
            Event::Check(r) => {
                if r.ok {
                    info!("check ok: {}", r.detail);
                } else {
                    warn!("check failing: {}", r.detail);
                }
                self.checks[r.index] = CheckState { ok: Some(r.ok), detail: r.detail };
                self.hooks.checks_reported = self.checks.iter().all(|c| c.ok.is_some());
                let acts = self.sm.set_health(self.health(), t);
                self.execute(acts, t);
                // A standby whose checks fail is FAULT although its pair state is unchanged.
                let failing: Vec<&str> =
                    self.checks.iter().filter(|c| c.ok != Some(true)).map(|c| c.detail.as_str()).collect();
                let reason = if failing.is_empty() { "checks ok".to_string() } else { failing.join("; ") };
                let sm = &self.sm;
                let peer = sm.peer().map(|p| p.node_id());
                let healthy = sm.health().is_healthy();
                let state = self.hooks.observe(sm.state(), healthy, sm.term(), sm.effective_priority(), peer, &reason);
                self.conntrack_follows(state);
            }
            Event::Control(req, reply) => {
                let answer = self.control(&req, t);
                let _ = reply.send(answer.to_string());
            }
        }
    }

    fn control(&mut self, req: &str, t: Instant) -> serde_json::Value {
        match req {
            "status" => self.status(t),
            "drill" => self.drill(t),
            "switchover" => match self.sm.switchover(t) {
                Ok((outcome, acts)) => {
                    info!("operator switchover: {outcome:?}");
                    self.execute(acts, t);
                    json!({"ok": true, "outcome": format!("{outcome:?}").to_lowercase()})
                }
                Err(e) => json!({"ok": false, "error": e.to_string()}),
            },
            "maintenance on" | "maintenance off" => {
                let on = req.ends_with("on");
                info!("operator: maintenance {}", if on { "on" } else { "off" });
                let acts = self.sm.set_maintenance(on, t);
                self.execute(acts, t);
                json!({"ok": true, "maintenance": on})
            }
            other => {
                json!({"ok": false, "error": format!("unknown request {other:?}; use status, drill, switchover, maintenance on|off")})
            }
        }
    }

    fn execute(&mut self, acts: rearguard_shared::election::Actions, t: Instant) {
        // A term learnt from the peer counts too: our next takeover must go above it.
        self.persist.term(self.sm.term());
        for a in acts {
            match a {
                Action::SendAdvert(adv) => self.send_advert(&adv),
                Action::Acquire { term, reason } => {
                    // Recorded before the VIPs move: a restart must never reuse this term. The
                    // peer just fell silent (or handed over): its last advert is the exact mark.
                    self.persist.term(term);
                    let last = self.sm.peer().map(|p| (p.node_id(), p.advert.hb.boot_epoch, p.advert.hb.sequence));
                    self.persist.mark(last);
                    // VIPs first: nothing comes to them before the announcement, as every
                    // neighbour cache still points at the old active. Then conntrackd commits
                    // the states the old active sent, and only then the announcement brings
                    // the traffic: a packet of a connection the kernel does not know yet is
                    // INVALID and dropped (tcp_loose = 0), costing its sender a retransmission
                    // timeout. Flush, resync and bulk send follow off the critical path.
                    self.hold_vips(true);
                    info!(term, "ACTIVE: took the VIPs ({reason})");
                    self.last_change = Some((t, format!("took over (term {term}): {reason}")));
                    let burst = self.burst();
                    match &mut self.conntrack {
                        Some(ct) => ct.transition(Role::Primary, Some(Box::new(move || burst.start()))),
                        None => burst.start(),
                    }
                }
                Action::Release { term, reason } => {
                    self.hold_vips(false);
                    info!(term, "released the VIPs ({reason})");
                    self.last_change = Some((t, format!("resigned (term {term}): {reason}")));
                }
                Action::Announce { term } => {
                    info!(term, "re-announcing the VIPs (conflict won on a term tie)");
                    self.burst().start();
                }
                Action::Notify(n) => {
                    // Fields for the journal: `journalctl -u rearguard-pair RG_STATE=active`.
                    info!(
                        state = n.to.name(),
                        from = n.from.name(),
                        term = n.term,
                        peer = n.peer,
                        reason = %n.reason,
                        "state {} -> {} ({})",
                        n.from.name(),
                        n.to.name(),
                        n.reason
                    );
                    let reason = n.reason.to_string();
                    let state = self.hooks.observe(n.to, n.health.is_healthy(), n.term, n.priority, n.peer, &reason);
                    self.conntrack_follows(state);
                }
            }
        }
    }

    /// Adds (`hold`) or removes every VIP. Either way a running announce burst stops: it
    /// belongs to the tenure that just ended.
    fn hold_vips(&mut self, hold: bool) {
        self.announce_gen.fetch_add(1, Ordering::SeqCst);
        if hold {
            vmac::set_up(&self.cfg, &mut self.nl, true);
        }
        for v in &self.cfg.vips {
            let (done, verb) = if hold { (self.nl.add(v), "add") } else { (self.nl.remove(v), "remove") };
            if let Err(e) = done {
                warn!("cannot {verb} VIP {v}: {e}");
            }
        }
        if !hold {
            vmac::set_up(&self.cfg, &mut self.nl, false);
        }
    }

    fn send_advert(&mut self, adv: &Advert) {
        let mut buf = [0u8; MAX_ADVERT_FRAME];
        let n = encode_advert(adv, self.cfg.key.as_ref(), &mut buf);
        for link in &mut self.media {
            if let Err(e) = link.send(&buf[..n]) {
                self.send_errors += 1;
                let msg = format!("{} -> {}: {e}", link.name(), link.dest());
                if self.last_send_error.as_deref() != Some(msg.as_str()) {
                    warn!("advert not sent: {msg}");
                }
                self.last_send_error = Some(msg);
            }
        }
    }

    /// The announcement burst of the current tenure.
    fn burst(&self) -> Burst {
        Burst {
            vips: self.cfg.vips.clone(),
            count: self.cfg.announce_count,
            gap: self.cfg.announce_interval,
            mine: self.announce_gen.load(Ordering::SeqCst),
            gen: self.announce_gen.clone(),
        }
    }
}

/// One tenure's GARP/NA burst; it may start later than it was made (after conntrackd's
/// commit) and then goes out only if the VIPs are still held by that tenure.
struct Burst {
    vips: Vec<crate::config::pair::Vip>,
    count: u32,
    gap: std::time::Duration,
    gen: Arc<AtomicU64>,
    mine: u64,
}

impl Burst {
    /// First announcement now, the rest of the burst on a thread (stops if the VIPs are
    /// released meanwhile).
    fn start(self) {
        if self.gen.load(Ordering::SeqCst) != self.mine {
            return;
        }
        if let Err(e) = announce::announce_once(&self.vips) {
            warn!("{e}");
        }
        if self.count <= 1 {
            return;
        }
        let _ = std::thread::Builder::new().name("announce".into()).stack_size(128 * 1024).spawn(move || {
            for _ in 1..self.count {
                std::thread::sleep(self.gap);
                if self.gen.load(Ordering::SeqCst) != self.mine {
                    return;
                }
                let _ = announce::announce_once(&self.vips);
            }
        });
    }
}
