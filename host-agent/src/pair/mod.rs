//! Firewall-pair mode: both nodes run this; the active one holds the virtual IPs.
//!
//! The driver around [`rearguard_shared::election::Election`]: receiver threads decode
//! adverts, check threads report debounced health, the control socket forwards operator
//! requests, all as [`Event`]s on one channel; the main loop feeds them with `now` to the
//! state machine and carries out its actions (adverts out on every medium, VIPs via
//! netlink, GARP/NA bursts, hooks). The state machine never sees a socket or a clock.

pub mod announce;
pub mod checks;
pub mod control;
pub mod net;
pub mod netlink;

use crate::config::pair::PairConfig;
use crate::time::{now, unix_secs};
use checks::CheckReport;
use rearguard_shared::election::{decode_advert, encode_advert, Action, Advert, Election, PairState, MAX_ADVERT_FRAME};
use rearguard_shared::heartbeat::{HealthFlags, Reject, Verifier};
use rearguard_shared::Instant;
use serde_json::json;
use std::net::UdpSocket;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::sync::Arc;
use tracing::{debug, info, warn};

/// Inputs to the main loop.
pub enum Event {
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

/// Removes every configured VIP (start-up cleanup, `vip-cleanup`, ExecStopPost).
/// Returns the VIPs that were present.
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

struct CheckState {
    ok: Option<bool>,
    detail: String,
}

struct Driver {
    cfg: PairConfig,
    sm: Election,
    nl: netlink::Netlink,
    media: Vec<(UdpSocket, std::net::SocketAddr, String)>,
    checks: Vec<CheckState>,
    started: Instant,
    /// Bumped on every acquire/release: a running announce burst stops when it changes.
    announce_gen: Arc<AtomicU64>,
    send_errors: u64,
    last_send_error: Option<String>,
    last_change: Option<(Instant, String)>,
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
    let (tx, rx) = channel::<Event>();
    let mut media = Vec::new();
    for (i, m) in cfg.media.iter().enumerate() {
        let s = net::open(m)?;
        let rxs = s.sock.try_clone()?;
        let tx = tx.clone();
        let key = cfg.key.clone();
        let cluster_id = cfg.cluster_id;
        let rt = cfg.realtime_priority;
        std::thread::Builder::new().name(format!("rx-{}", m.interface)).stack_size(256 * 1024).spawn(move || {
            realtime(rt);
            let mut buf = [0u8; 512];
            loop {
                let n = match rxs.recv_from(&mut buf) {
                    Ok((n, _from)) => n,
                    Err(e) => {
                        // E.g. ECONNREFUSED after a unicast send to a peer that is not
                        // listening yet; never spin on a persistent error.
                        debug!("receive: {e}");
                        std::thread::sleep(std::time::Duration::from_millis(1));
                        continue;
                    }
                };
                let v = Verifier { cluster_id, key: key.as_ref() };
                let frame = decode_advert(&buf[..n], &v);
                if tx.send(Event::Frame(i, frame)).is_err() {
                    return;
                }
            }
        })?;
        media.push((s.sock, s.dest, s.interface));
    }
    for (i, c) in cfg.checks.iter().enumerate() {
        checks::spawn(i, c.clone(), tx.clone(), stop.clone(), cfg.realtime_priority)?;
    }
    control::serve(&cfg.control_socket, tx.clone(), stop.clone())
        .map_err(|source| PairError::Control { path: cfg.control_socket.clone(), source })?;
    drop(tx);

    let t0 = now();
    let mut d = Driver {
        cfg: cfg.clone(),
        sm: Election::new(params, t0),
        nl: netlink::Netlink::open()?,
        media,
        checks: cfg.checks.iter().map(|_| CheckState { ok: None, detail: "no result yet".into() }).collect(),
        started: t0,
        announce_gen: Arc::new(AtomicU64::new(0)),
        send_errors: 0,
        last_send_error: None,
        last_change: None,
    };
    // Checks count as failing until their first result.
    let acts = d.sm.set_health(d.health(), t0);
    d.execute(acts, t0);
    if let Some(e) = realtime(cfg.realtime_priority) {
        warn!(
            "cannot run the election loop at real-time priority {}: {e}; heartbeats may stall under load",
            cfg.realtime_priority
        );
    }
    let watchdog = Watchdog::from_env();
    watchdog.notify("READY=1");

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
        watchdog.pet();
    }
    info!("stopping: releasing VIPs and telling the peer");
    let t = now();
    let acts = d.sm.shutdown(t);
    d.execute(acts, t);
    run_hooks(&d.cfg, "STOP", d.sm.effective_priority(), &d.sm, "agent stopped");
    let _ = remove_vips(cfg);
    let _ = std::fs::remove_file(&cfg.control_socket);
    stop.store(true, Ordering::Relaxed);
    Ok(())
}

impl Driver {
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
                let acts = self.sm.set_health(self.health(), t);
                self.execute(acts, t);
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
                json!({"ok": false, "error": format!("unknown request {other:?}; use status, switchover, maintenance on|off")})
            }
        }
    }

    fn status(&self, t: Instant) -> serde_json::Value {
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
            .map(|(i, (_, dest, ifname))| {
                let m = &sm.media()[i];
                let rejected: serde_json::Map<String, serde_json::Value> = Reject::NAMES
                    .iter()
                    .zip(m.rejected.iter())
                    .filter(|(_, n)| **n > 0)
                    .map(|(name, n)| (name.to_string(), json!(n)))
                    .collect();
                json!({
                    "interface": ifname,
                    "dest": dest.to_string(),
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
            "send_errors": self.send_errors,
            "last_send_error": self.last_send_error,
            "uptime_ms": t.saturating_since(self.started).as_millis(),
            "rss_kb": rss_kb(),
        })
    }

    fn execute(&mut self, acts: rearguard_shared::election::Actions, t: Instant) {
        for a in acts {
            match a {
                Action::SendAdvert => self.send_advert(t),
                Action::Acquire { term, reason } => {
                    self.announce_gen.fetch_add(1, Ordering::SeqCst);
                    for v in &self.cfg.vips {
                        if let Err(e) = self.nl.add(v) {
                            warn!("cannot add VIP {v}: {e}");
                        }
                    }
                    info!(term, "ACTIVE: took the VIPs ({reason})");
                    self.last_change = Some((t, format!("took over (term {term}): {reason}")));
                    self.announce();
                }
                Action::Release { term, reason } => {
                    self.announce_gen.fetch_add(1, Ordering::SeqCst);
                    for v in &self.cfg.vips {
                        if let Err(e) = self.nl.remove(v) {
                            warn!("cannot remove VIP {v}: {e}");
                        }
                    }
                    info!(term, "released the VIPs ({reason})");
                    self.last_change = Some((t, format!("resigned (term {term}): {reason}")));
                }
                Action::Announce { term } => {
                    info!(term, "re-announcing the VIPs (conflict won on a term tie)");
                    self.announce();
                }
                Action::Notify { from, to } => {
                    info!("state {} -> {}", from.name(), to.name());
                    let state = match to {
                        PairState::Active => "MASTER",
                        PairState::Standby | PairState::Starting | PairState::Maintenance
                            if !self.sm.health().is_healthy() =>
                        {
                            "FAULT"
                        }
                        _ => "BACKUP",
                    };
                    let why = self.last_change.as_ref().map(|c| c.1.clone()).unwrap_or_default();
                    run_hooks(&self.cfg, state, self.sm.effective_priority(), &self.sm, &why);
                }
            }
        }
    }

    fn send_advert(&mut self, t: Instant) {
        let adv = self.sm.advert(t.saturating_since(self.started));
        let mut buf = [0u8; MAX_ADVERT_FRAME];
        let n = encode_advert(&adv, self.cfg.key.as_ref(), &mut buf);
        for (s, dest, ifname) in &self.media {
            if let Err(e) = s.send_to(&buf[..n], dest) {
                self.send_errors += 1;
                let msg = format!("{ifname} -> {dest}: {e}");
                if self.last_send_error.as_deref() != Some(msg.as_str()) {
                    warn!("advert not sent: {msg}");
                }
                self.last_send_error = Some(msg);
            }
        }
    }

    /// First announcement now, the rest of the burst on a thread (stops if the VIPs are
    /// released meanwhile).
    fn announce(&self) {
        if let Err(e) = announce::announce_once(&self.cfg.vips) {
            warn!("{e}");
        }
        let count = self.cfg.announce_count;
        if count <= 1 {
            return;
        }
        let gen = self.announce_gen.clone();
        let mine = gen.load(Ordering::SeqCst);
        let vips = self.cfg.vips.clone();
        let gap = self.cfg.announce_interval;
        let _ = std::thread::Builder::new().name("announce".into()).stack_size(128 * 1024).spawn(move || {
            for _ in 1..count {
                std::thread::sleep(gap);
                if gen.load(Ordering::SeqCst) != mine {
                    return;
                }
                let _ = announce::announce_once(&vips);
            }
        });
    }
}

/// keepalived-compatible notify: `SCRIPT INSTANCE NAME STATE PRIORITY`, plus RG_* variables.
fn run_hooks(cfg: &PairConfig, state: &str, priority: u8, sm: &Election, reason: &str) {
    for hook in &cfg.hooks {
        let vips: Vec<String> = cfg.vips.iter().map(|v| format!("{}/{}@{}", v.addr, v.prefix, v.interface)).collect();
        let child = std::process::Command::new(hook)
            .args(["INSTANCE", &cfg.name, state, &priority.to_string()])
            .env("RG_STATE", sm.state().name())
            .env("RG_KEEPALIVED_STATE", state)
            .env("RG_NODE_ID", cfg.node_id.to_string())
            .env("RG_PEER_ID", sm.peer().map(|p| p.node_id().to_string()).unwrap_or_default())
            .env("RG_TERM", sm.term().to_string())
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

/// Puts the calling thread under SCHED_RR at `prio` (0 = leave it alone), with
/// SCHED_RESET_ON_FORK so that hooks, check commands and helper threads it starts run at
/// normal priority. A loaded machine must not delay heartbeats past the dead interval.
pub(crate) fn realtime(prio: u8) -> Option<std::io::Error> {
    if prio == 0 {
        return None;
    }
    let param = libc::sched_param { sched_priority: prio as i32 };
    // SAFETY: sched_setscheduler(2) on the calling thread (pid 0) with a valid parameter.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_RR | libc::SCHED_RESET_ON_FORK, &param) };
    (rc != 0).then(std::io::Error::last_os_error)
}

fn rss_kb() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()
}

/// systemd notify protocol (READY=1, WATCHDOG=1) without a library.
struct Watchdog {
    sock: Option<(std::os::unix::net::UnixDatagram, std::os::unix::net::SocketAddr)>,
    every: Option<std::time::Duration>,
    last: std::cell::Cell<std::time::Instant>,
}

impl Watchdog {
    fn from_env() -> Watchdog {
        use std::os::linux::net::SocketAddrExt;
        let sock = std::env::var("NOTIFY_SOCKET").ok().and_then(|p| {
            let addr = if let Some(name) = p.strip_prefix('@') {
                std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).ok()?
            } else {
                std::os::unix::net::SocketAddr::from_pathname(&p).ok()?
            };
            Some((std::os::unix::net::UnixDatagram::unbound().ok()?, addr))
        });
        let every = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|u| u.parse::<u64>().ok())
            .map(|u| std::time::Duration::from_micros(u / 2));
        Watchdog { sock, every, last: std::cell::Cell::new(std::time::Instant::now()) }
    }

    fn notify(&self, msg: &str) {
        if let Some((s, addr)) = &self.sock {
            let _ = s.send_to_addr(msg.as_bytes(), addr);
        }
    }

    /// Called every loop turn (at least every 100 ms): the main loop is alive.
    fn pet(&self) {
        if let Some(every) = self.every {
            if self.last.get().elapsed() >= every {
                self.notify("WATCHDOG=1");
                self.last.set(std::time::Instant::now());
            }
        }
    }
}
