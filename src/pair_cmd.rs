//! Firewall-pair commands: `agent` with a `[pair]` section, `status`, `switchover`,
//! `maintenance`, `vip-cleanup`.

use anyhow::Context;
use clap::{Args, ValueEnum};
use rearguard_host_agent::config::pair::{Medium, PairConfig, DEFAULT_SOCKET};
use rearguard_host_agent::config::Source;
use rearguard_host_agent::drill::Report;
use rearguard_host_agent::pair::{self, control};
use std::path::{Path, PathBuf};

/// Where to find the agent's control socket.
#[derive(Args, Debug)]
pub struct SocketArgs {
    /// The control socket (default: the config's control_socket, else /run/rearguard/pair.sock).
    #[arg(long, short)]
    socket: Option<PathBuf>,
    /// The pair agent's config, to read control_socket from.
    #[arg(long, short)]
    config: Option<PathBuf>,
}

impl SocketArgs {
    fn path(&self) -> anyhow::Result<PathBuf> {
        if let Some(s) = &self.socket {
            return Ok(s.clone());
        }
        if let Some(c) = &self.config {
            return Ok(PairConfig::load(c)?.control_socket);
        }
        Ok(DEFAULT_SOCKET.into())
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

pub fn run_agent(
    src: &Source,
    build_stamp: u32,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<u8> {
    let cfg = PairConfig::from_source(src)?;
    pair::run(&cfg, pair::PairOptions { build_stamp }, stop)
        .with_context(|| format!("pair agent ({})", src.file().display()))?;
    Ok(0)
}

/// `check-config` for a pair config: parse and resolve everything, name what is missing on
/// this machine (interfaces), print the policy digest the peer must match.
pub fn check_config(src: &Source) -> anyhow::Result<u8> {
    let file = src.file();
    let cfg = PairConfig::from_source(src)?;
    let mut missing = Vec::new();
    let ip_media = cfg.media.iter().filter_map(|m| match m {
        Medium::Ip(ip) => Some(ip.interface.as_str()),
        Medium::Serial(_) => None,
    });
    for i in cfg.vips.iter().map(|v| v.link()).chain(ip_media) {
        if pair::netlink::ifindex(i).is_err() && !missing.contains(&i) {
            missing.push(i);
        }
    }
    println!(
        "{}: pair config ok: node {} priority {}, {} VIP(s), {} medium/media, {} check(s), policy digest {:#010x}{}",
        file.display(),
        cfg.node_id,
        cfg.priority,
        cfg.vips.len(),
        cfg.media.len(),
        cfg.checks.len(),
        cfg.policy_digest(),
        if cfg.key.is_some() { "" } else { " (UNAUTHENTICATED: no key)" }
    );
    for m in &missing {
        println!("warning: interface {m} does not exist on this machine");
    }
    for m in &cfg.media {
        if let Medium::Serial(s) = m {
            if !s.path.exists() {
                println!(
                    "warning: serial medium {} does not exist on this machine; the agent will not start",
                    s.path.display()
                );
            }
        }
    }
    Ok(0)
}

/// `drill` for a pair config: the running agent answers (it has the facts); when it does not,
/// that is a failed check, and this machine's own checks run here instead.
pub fn drill(src: &Source) -> anyhow::Result<u8> {
    let cfg = PairConfig::from_source(src)?;
    let report = match control::request(&cfg.control_socket, "drill") {
        Ok(v) => pair::drill::report_from_reply(&v),
        Err(e) => {
            let mut r = Report::new();
            r.not_ready("agent", e.to_string());
            pair::drill::local_checks(&cfg, &mut r);
            r
        }
    };
    print!("{}", report.render());
    Ok(report.exit_code())
}

pub fn vip_cleanup(file: &Path) -> anyhow::Result<u8> {
    let cfg = PairConfig::load(file)?;
    let removed = pair::remove_vips(&cfg)?;
    if removed.is_empty() {
        println!("no VIP of {} was configured", file.display());
    }
    for v in removed {
        println!("removed {v}");
    }
    Ok(0)
}

pub fn status(sock: &SocketArgs, as_json: bool) -> anyhow::Result<u8> {
    let v = control::request(&sock.path()?, "status")?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    let s =
        |k: &str| v.get(k).map(|x| x.as_str().map(str::to_string).unwrap_or_else(|| x.to_string())).unwrap_or_default();
    println!(
        "node {} ({}): {}  term {}  priority {} (effective {})",
        s("node_id"),
        s("name"),
        s("state"),
        s("term"),
        s("priority"),
        s("effective_priority")
    );
    if v["maintenance"].as_bool() == Some(true) {
        println!("  MAINTENANCE MODE");
    }
    if let Some(why) = v["why_not_active"].as_str() {
        println!("  not active: {why}");
    }
    println!(
        "  VIP holder: {}",
        match &v["vip_holder"] {
            serde_json::Value::String(x) => x.clone(),
            serde_json::Value::Null => "nobody known".into(),
            x => format!("node {x}"),
        }
    );
    for vip in v["vips"].as_array().into_iter().flatten() {
        println!(
            "    {} on {}: {}",
            vip["address"].as_str().unwrap_or("?"),
            vip["interface"].as_str().unwrap_or("?"),
            if vip["present"].as_bool() == Some(true) { "present" } else { "absent" }
        );
    }
    match v["peer"].as_object() {
        None => println!("  peer: never heard"),
        Some(p) => {
            println!(
                "  peer node {}: {}  priority {}  term {}  heartbeat age {} ms  {}",
                p["node_id"],
                p["state"].as_str().unwrap_or("?"),
                p["priority"],
                p["term"],
                p["heartbeat_age_ms"],
                if p["alive"].as_bool() == Some(true) { "alive" } else { "DEAD" }
            );
            if let Some(r) = p["refused"].as_str() {
                println!("  peer REFUSED: {r}");
            }
        }
    }
    println!("  health: {}", if v["healthy"].as_bool() == Some(true) { "ok" } else { "FAILING" });
    for c in v["checks"].as_array().into_iter().flatten() {
        let ok = match c["ok"].as_bool() {
            Some(true) => "ok",
            Some(false) => "FAIL",
            None => "pending",
        };
        println!("    [{ok}] {} — {}", c["name"].as_str().unwrap_or("?"), c["detail"].as_str().unwrap_or(""));
    }
    for m in v["media"].as_array().into_iter().flatten() {
        println!(
            "  medium {} -> {}: peer {}  accepted {}  rejected {} {}",
            m["interface"].as_str().unwrap_or("?"),
            m["dest"].as_str().unwrap_or("?"),
            if m["peer_alive"].as_bool() == Some(true) { "heard" } else { "silent" },
            m["accepted"],
            m["rejected_total"],
            m["rejected"]
        );
    }
    print_hooks(&v["hooks"]);
    if let Some(ct) = v["conntrack"].as_object() {
        println!("  {}", conntrack_line(ct));
    }
    if let Some(l) = v["last_change"].as_object() {
        println!("  last change {} ms ago: {}", l["ago_ms"], l["what"].as_str().unwrap_or(""));
    }
    Ok(0)
}

/// The hooks' line(s) of `status`: the last outcome, what runs now, what waits.
fn print_hooks(h: &serde_json::Value) {
    let configured = h["configured"].as_u64().unwrap_or(0);
    if configured > 0 {
        let last = match h["last"].as_object() {
            None => "none run yet".to_string(),
            Some(l) => format!(
                "last {} {} {} in {} ms ({} ms ago)",
                l["hook"].as_str().unwrap_or("?"),
                l["state"].as_str().unwrap_or("?"),
                l["result"].as_str().unwrap_or("?"),
                l["took_ms"],
                l["ago_ms"]
            ),
        };
        println!(
            "  hooks: {configured} configured, {} pending, {} failed ({} timed out); {last}",
            h["pending"], h["failures"], h["timeouts"]
        );
        if let Some(r) = h["running"].as_object() {
            println!(
                "    running {} {} for {} ms",
                r["hook"].as_str().unwrap_or("?"),
                r["state"].as_str().unwrap_or("?"),
                r["for_ms"]
            );
        }
    }
    if let Some(f) = h["fifo"].as_object() {
        println!(
            "  notify_fifo {}: {} lines written, {} dropped",
            f["path"].as_str().unwrap_or("?"),
            f["written"],
            f["dropped"]
        );
    }
}

/// `conntrackd (CONFIG): LAST TRANSITION ok|FAILED …` from status's `conntrack` object.
fn conntrack_line(ct: &serde_json::Map<String, serde_json::Value>) -> String {
    let mut line = format!("conntrackd ({}):", ct["config"].as_str().unwrap_or("?"));
    if ct["answered_at_start"] == false {
        line.push_str(&format!(" did NOT answer at start ({})", ct["start_error"].as_str().unwrap_or("?")));
    }
    match ct["last_transition"].as_str() {
        None => line.push_str(" no transition yet"),
        Some(role) => {
            let steps: Vec<String> = ct["steps"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| {
                    let ok = if s["ok"] == true { "ok" } else { "FAILED" };
                    format!("{} {ok} {} ms", s["command"].as_str().unwrap_or("?"), s["ms"])
                })
                .collect();
            line.push_str(&format!(" {role} {} ms ago: {}", ct["last_transition_ago_ms"], steps.join(", ")));
        }
    }
    if let Some(e) = ct["last_error"].as_str() {
        line.push_str(&format!("; {} failure(s), last: {e}", ct["failures"]));
    }
    line
}

pub fn switchover(sock: &SocketArgs) -> anyhow::Result<u8> {
    let v = control::request(&sock.path()?, "switchover")?;
    if v["ok"].as_bool() == Some(true) {
        match v["outcome"].as_str() {
            Some("resigned") => println!("resigned: the peer takes over now"),
            _ => println!("requested: the active peer hands over now"),
        }
        Ok(0)
    } else {
        eprintln!("switchover refused: {}", v["error"].as_str().unwrap_or("?"));
        Ok(1)
    }
}

pub fn maintenance(sock: &SocketArgs, mode: OnOff) -> anyhow::Result<u8> {
    let req = match mode {
        OnOff::On => "maintenance on",
        OnOff::Off => "maintenance off",
    };
    let v = control::request(&sock.path()?, req)?;
    if v["ok"].as_bool() == Some(true) {
        println!("{req}");
        Ok(0)
    } else {
        eprintln!("refused: {}", v["error"].as_str().unwrap_or("?"));
        Ok(1)
    }
}
