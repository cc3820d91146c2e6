//! The `[pair]` section of the agent's TOML (firewall-pair mode), validated.
//!
//! Unknown keys are refused, and every error names the file, the key and the fix.

use crate::config::{ClusterSection, ConfigError};
use rearguard_shared::election::PairParams;
use rearguard_shared::heartbeat::HealthFlags;
use rearguard_shared::integrity::{crc32c, Key};
use rearguard_shared::Duration;
use serde::Deserialize;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

pub const DEFAULT_GROUP: Ipv4Addr = Ipv4Addr::new(239, 255, 82, 71);
pub const DEFAULT_PORT: u16 = 5405;
pub const DEFAULT_SOCKET: &str = "/run/rearguard/pair.sock";

fn err(file: &Path, message: impl Into<String>) -> ConfigError {
    ConfigError { file: file.to_path_buf(), message: message.into() }
}

/// `[pair]` as written in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairSection {
    /// Instance name passed to hooks (keepalived's NAME argument).
    #[serde(default = "default_name")]
    pub name: String,
    /// 1..=255, higher wins.
    pub priority: u8,
    #[serde(default = "default_interval")]
    pub interval_ms: u64,
    /// The peer is dead after interval_ms × dead_count without a fresh advert.
    #[serde(default = "default_dead_count")]
    pub dead_count: u32,
    #[serde(default)]
    pub preempt: bool,
    #[serde(default)]
    pub preempt_delay_ms: u64,
    /// Gratuitous ARP / unsolicited NA burst on takeover.
    #[serde(default = "default_announce_count")]
    pub announce_count: u32,
    #[serde(default = "default_announce_interval")]
    pub announce_interval_ms: u64,
    #[serde(default = "default_socket")]
    pub control_socket: PathBuf,
    /// Where the boot epoch is kept so it grows across restarts.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Run without a MAC key (refused unless set: heartbeats are authenticated by default).
    #[serde(default)]
    pub insecure_no_key: bool,
    /// SCHED_RR priority of the election loop, receivers and carrier checks (0 = off).
    #[serde(default = "default_rt")]
    pub realtime_priority: u8,
    /// Scripts run on every state change: `SCRIPT INSTANCE NAME STATE PRIORITY`.
    #[serde(default)]
    pub hooks: Vec<PathBuf>,
    #[serde(default)]
    pub vip: Vec<VipSection>,
    #[serde(default)]
    pub medium: Vec<MediumSection>,
    #[serde(default)]
    pub check: Vec<CheckSection>,
}

fn default_rt() -> u8 {
    10
}
fn default_name() -> String {
    "rearguard".into()
}
fn default_interval() -> u64 {
    100
}
fn default_dead_count() -> u32 {
    3
}
fn default_announce_count() -> u32 {
    3
}
fn default_announce_interval() -> u64 {
    50
}
fn default_socket() -> PathBuf {
    DEFAULT_SOCKET.into()
}
fn default_state_dir() -> PathBuf {
    "/var/lib/rearguard".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VipSection {
    /// "10.0.0.100/24" or "2001:db8::100/64".
    pub address: String,
    pub interface: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediumSection {
    pub interface: String,
    /// Unicast peer address; when absent, multicast to `group`.
    pub peer: Option<IpAddr>,
    pub group: Option<Ipv4Addr>,
    pub port: Option<u16>,
}

/// What a check watches, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckKind {
    /// Interface carrier (/sys/class/net/IF/carrier).
    Carrier { interface: String },
    /// ICMP echo to a monitored target.
    Ping { target: Ipv4Addr, timeout_ms: u64 },
    /// A process, by pidfile or by name (/proc/*/comm).
    Process { pidfile: Option<PathBuf>, name: Option<String> },
    /// `systemctl is-active --quiet UNIT`.
    Systemd { unit: String },
    /// A command's exit status (0 = healthy), killed after timeout_ms.
    Command { argv: Vec<String>, timeout_ms: u64 },
    /// A hwmon reading (millidegrees, RPM, millivolts) against thresholds: a failure
    /// predictor — crossing one hands the VIPs over before the crash.
    Hwmon { path: PathBuf, min: Option<i64>, max: Option<i64> },
}

/// `[[pair.check]]` as written: `kind` selects which of the other keys apply.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckSection {
    /// carrier | ping | process | systemd | command | hwmon
    pub kind: String,
    pub interface: Option<String>,
    pub target: Option<Ipv4Addr>,
    pub timeout_ms: Option<u64>,
    pub pidfile: Option<PathBuf>,
    pub name: Option<String>,
    pub unit: Option<String>,
    pub argv: Option<Vec<String>>,
    pub path: Option<PathBuf>,
    pub min: Option<i64>,
    pub max: Option<i64>,
    #[serde(default = "default_check_interval")]
    pub interval_ms: u64,
    /// Consecutive successes before a failed check counts as healthy again.
    #[serde(default = "one")]
    pub rise: u32,
    /// Consecutive failures before a check counts as failed.
    #[serde(default = "one")]
    pub fall: u32,
}

fn default_check_interval() -> u64 {
    1000
}
fn one() -> u32 {
    1
}

impl CheckSection {
    fn kind(&self, file: &Path, n: usize) -> Result<CheckKind, ConfigError> {
        let need = |what: &str| err(file, format!("[[pair.check]] #{n} kind = {:?}: {what} is missing", self.kind));
        Ok(match self.kind.as_str() {
            "carrier" => CheckKind::Carrier { interface: self.interface.clone().ok_or_else(|| need("interface"))? },
            "ping" => CheckKind::Ping { target: self.target.ok_or_else(|| need("target"))?, timeout_ms: self.timeout_ms.unwrap_or(200) },
            "process" => match (&self.pidfile, &self.name) {
                (Some(_), None) | (None, Some(_)) => CheckKind::Process { pidfile: self.pidfile.clone(), name: self.name.clone() },
                _ => return Err(err(file, format!("[[pair.check]] #{n} kind = \"process\": set exactly one of pidfile or name"))),
            },
            "systemd" => CheckKind::Systemd { unit: self.unit.clone().ok_or_else(|| need("unit"))? },
            "command" => {
                let argv = self.argv.clone().filter(|a| !a.is_empty()).ok_or_else(|| need("argv (non-empty)"))?;
                CheckKind::Command { argv, timeout_ms: self.timeout_ms.unwrap_or(2000) }
            }
            "hwmon" => {
                if self.min.is_none() && self.max.is_none() {
                    return Err(err(file, format!("[[pair.check]] #{n} kind = \"hwmon\": set min and/or max")));
                }
                CheckKind::Hwmon { path: self.path.clone().ok_or_else(|| need("path"))?, min: self.min, max: self.max }
            }
            other => {
                return Err(err(
                    file,
                    format!("[[pair.check]] #{n}: kind = {other:?} is unknown; use carrier, ping, process, systemd, command or hwmon"),
                ))
            }
        })
    }
}

/// A VIP, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vip {
    pub addr: IpAddr,
    pub prefix: u8,
    pub interface: String,
}

impl std::fmt::Display for Vip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{} on {}", self.addr, self.prefix, self.interface)
    }
}

#[derive(Debug, Clone)]
pub struct Medium {
    pub interface: String,
    /// Where adverts go: the multicast group or the unicast peer.
    pub dest: SocketAddr,
    pub port: u16,
}

#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    pub kind: CheckKind,
    pub interval: std::time::Duration,
    pub rise: u32,
    pub fall: u32,
}

impl Check {
    /// Which health flag a failure of this check raises.
    pub fn flag(&self) -> u16 {
        match self.kind {
            CheckKind::Carrier { .. } => HealthFlags::LINK_DOWN,
            CheckKind::Ping { .. } => HealthFlags::TARGET_UNREACHABLE,
            CheckKind::Process { .. } | CheckKind::Systemd { .. } | CheckKind::Command { .. } => {
                HealthFlags::PROCESS_DOWN
            }
            CheckKind::Hwmon { .. } => HealthFlags::SENSOR_WARNING,
        }
    }
}

/// The pair configuration, validated.
#[derive(Debug, Clone)]
pub struct PairConfig {
    pub file: PathBuf,
    pub cluster_id: u32,
    pub node_id: u8,
    pub key: Option<Key>,
    pub name: String,
    pub priority: u8,
    pub interval: Duration,
    pub dead_count: u32,
    pub preempt: bool,
    pub preempt_delay: Duration,
    pub announce_count: u32,
    pub announce_interval: std::time::Duration,
    pub control_socket: PathBuf,
    pub state_dir: PathBuf,
    pub realtime_priority: u8,
    pub hooks: Vec<PathBuf>,
    pub vips: Vec<Vip>,
    pub media: Vec<Medium>,
    pub checks: Vec<Check>,
}

#[derive(Deserialize)]
struct PairFile {
    cluster: ClusterSection,
    pair: Option<PairSection>,
}

impl PairConfig {
    /// Whether the TOML text has a `[pair]` section (selects pair mode).
    pub fn has_pair_section(text: &str) -> bool {
        toml::from_str::<toml::Table>(text).is_ok_and(|t| t.contains_key("pair"))
    }

    pub fn load(file: &Path) -> Result<PairConfig, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|e| err(file, format!("cannot read: {e}")))?;
        Self::parse(file, &text)
    }

    pub fn parse(file: &Path, text: &str) -> Result<PairConfig, ConfigError> {
        // Other sections ([disk], [fence]) belong to the cold-standby agent; only [cluster]
        // and [pair] are read here.
        let table: toml::Table = toml::from_str(text).map_err(|e| err(file, e.to_string()))?;
        let mut only = toml::Table::new();
        for k in ["cluster", "pair"] {
            if let Some(v) = table.get(k) {
                only.insert(k.into(), v.clone());
            }
        }
        let f: PairFile = only.try_into().map_err(|e: toml::de::Error| err(file, e.to_string()))?;
        let Some(p) = f.pair else {
            return Err(err(file, "no [pair] section: add one to run the firewall-pair mode (see examples/pair.toml)"));
        };
        Self::resolve(file, &f.cluster, p)
    }

    pub fn resolve(file: &Path, cluster: &ClusterSection, p: PairSection) -> Result<PairConfig, ConfigError> {
        let node_id = cluster.node_id.ok_or_else(|| {
            err(file, "[cluster] node_id is missing: give each node of the pair its own id (e.g. 1 and 2)")
        })?;
        let key = match cluster.key.as_deref() {
            Some(h) => Some(Key::from_hex(h).map_err(|e| err(file, format!("[cluster] key: {e} (generate one with `openssl rand -hex 32`)")))?),
            None if p.insecure_no_key => None,
            None => {
                return Err(err(
                    file,
                    "[cluster] key is missing: pair heartbeats are authenticated by default. Set the same key on both nodes \
                     (`openssl rand -hex 32`), or set [pair] insecure_no_key = true on an isolated test network",
                ))
            }
        };
        if p.priority == 0 {
            return Err(err(file, "[pair] priority = 0: use 1..=255 (higher is preferred)"));
        }
        if p.realtime_priority > 99 {
            return Err(err(
                file,
                format!(
                    "[pair] realtime_priority = {}: use 1..=99 (SCHED_RR), or 0 to run at normal priority",
                    p.realtime_priority
                ),
            ));
        }
        if p.interval_ms == 0 {
            return Err(err(file, "[pair] interval_ms = 0: use at least 1 (100 is typical)"));
        }
        if p.dead_count < 2 {
            return Err(err(
                file,
                format!("[pair] dead_count = {}: use at least 2 (one lost advert must not fail over)", p.dead_count),
            ));
        }
        if p.vip.is_empty() {
            return Err(err(
                file,
                "[pair] has no [[pair.vip]]: add at least one { address = \"10.0.0.100/24\", interface = \"eth0\" }",
            ));
        }
        let mut vips = Vec::new();
        for (i, v) in p.vip.iter().enumerate() {
            let (a, pfx) = v.address.split_once('/').unwrap_or((v.address.as_str(), ""));
            let addr: IpAddr = a.parse().map_err(|_| {
                err(
                    file,
                    format!(
                        "[[pair.vip]] #{}: address {:?} is not an IP address (write \"10.0.0.100/24\")",
                        i + 1,
                        v.address
                    ),
                )
            })?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let prefix: u8 = if pfx.is_empty() {
                max
            } else {
                pfx.parse()
                    .ok()
                    .filter(|p| *p <= max)
                    .ok_or_else(|| err(file, format!("[[pair.vip]] #{}: prefix /{pfx} is not 0..={max}", i + 1)))?
            };
            check_ifname(file, &format!("[[pair.vip]] #{} interface", i + 1), &v.interface)?;
            vips.push(Vip { addr, prefix, interface: v.interface.clone() });
        }
        let mut media = Vec::new();
        let sections = if p.medium.is_empty() {
            vec![MediumSection { interface: vips[0].interface.clone(), peer: None, group: None, port: None }]
        } else {
            p.medium.clone()
        };
        if sections.len() > rearguard_shared::detector::MAX_MEDIA {
            return Err(err(file, format!("[[pair.medium]]: at most {} media", rearguard_shared::detector::MAX_MEDIA)));
        }
        for (i, m) in sections.iter().enumerate() {
            check_ifname(file, &format!("[[pair.medium]] #{} interface", i + 1), &m.interface)?;
            let port = m.port.unwrap_or(DEFAULT_PORT);
            let dest = match (m.peer, m.group) {
                (Some(_), Some(_)) => {
                    return Err(err(
                        file,
                        format!("[[pair.medium]] #{}: set either peer (unicast) or group (multicast), not both", i + 1),
                    ))
                }
                (Some(peer), None) => SocketAddr::new(peer, port),
                (None, g) => {
                    let g = g.unwrap_or(DEFAULT_GROUP);
                    if !g.is_multicast() {
                        return Err(err(
                            file,
                            format!("[[pair.medium]] #{}: group {g} is not a multicast address (224.0.0.0/4)", i + 1),
                        ));
                    }
                    SocketAddr::new(IpAddr::V4(g), port)
                }
            };
            media.push(Medium { interface: m.interface.clone(), dest, port });
        }
        let mut checks = Vec::new();
        for (i, c) in p.check.iter().enumerate() {
            let kind = c.kind(file, i + 1)?;
            let name = match &kind {
                CheckKind::Carrier { interface } => {
                    check_ifname(file, &format!("[[pair.check]] #{} interface", i + 1), interface)?;
                    format!("carrier {interface}")
                }
                CheckKind::Ping { target, .. } => format!("ping {target}"),
                CheckKind::Process { pidfile: Some(p), .. } => format!("process pidfile {}", p.display()),
                CheckKind::Process { name, .. } => format!("process {}", name.as_deref().unwrap_or("?")),
                CheckKind::Systemd { unit } => format!("systemd {unit}"),
                CheckKind::Command { argv, .. } => format!("command {}", argv.join(" ")),
                CheckKind::Hwmon { path, .. } => format!("hwmon {}", path.display()),
            };
            if c.interval_ms == 0 || c.rise == 0 || c.fall == 0 {
                return Err(err(
                    file,
                    format!("[[pair.check]] #{} ({name}): interval_ms, rise and fall must be at least 1", i + 1),
                ));
            }
            checks.push(Check {
                name,
                kind,
                interval: std::time::Duration::from_millis(c.interval_ms),
                rise: c.rise,
                fall: c.fall,
            });
        }
        Ok(PairConfig {
            file: file.to_path_buf(),
            cluster_id: cluster.id,
            node_id,
            key,
            name: p.name,
            priority: p.priority,
            interval: Duration::from_millis(p.interval_ms),
            dead_count: p.dead_count,
            preempt: p.preempt,
            preempt_delay: Duration::from_millis(p.preempt_delay_ms),
            announce_count: p.announce_count,
            announce_interval: std::time::Duration::from_millis(p.announce_interval_ms),
            control_socket: p.control_socket,
            state_dir: p.state_dir,
            realtime_priority: p.realtime_priority,
            hooks: p.hooks,
            vips,
            media,
            checks,
        })
    }

    /// Digest of the policy both nodes must share (not the per-node fields: node id,
    /// priority, interfaces, checks, hooks, paths).
    pub fn policy_digest(&self) -> u32 {
        let mut vips: Vec<String> = self.vips.iter().map(|v| format!("{}/{}", v.addr, v.prefix)).collect();
        vips.sort();
        let s = format!(
            "cluster={};interval={};dead={};preempt={};delay={};key={};vips={}",
            self.cluster_id,
            self.interval.as_millis(),
            self.dead_count,
            self.preempt,
            self.preempt_delay.as_millis(),
            self.key.is_some(),
            vips.join(",")
        );
        crc32c(s.as_bytes())
    }

    pub fn params(&self, boot_epoch: u32, build_stamp: u32) -> PairParams {
        PairParams {
            cluster_id: self.cluster_id,
            node_id: self.node_id,
            priority: self.priority,
            interval: self.interval,
            dead_count: self.dead_count,
            preempt: self.preempt,
            preempt_delay: self.preempt_delay,
            boot_epoch,
            config_digest: self.policy_digest(),
            build_stamp,
        }
    }
}

fn check_ifname(file: &Path, what: &str, name: &str) -> Result<(), ConfigError> {
    if name.is_empty() || name.len() > 15 || name.contains('/') || name.contains(char::is_whitespace) {
        return Err(err(
            file,
            format!("{what}: {name:?} is not an interface name (1..=15 characters, no '/' or spaces)"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"
[cluster]
id = 0xC0FFEE
node_id = 1
key = "00112233445566778899aabbccddeeff"
[pair]
priority = 200
[[pair.vip]]
address = "10.200.0.100/24"
interface = "eth0"
[[pair.vip]]
address = "fd00::100/64"
interface = "eth0"
[[pair.check]]
kind = "ping"
target = "10.200.0.1"
fall = 2
[[pair.check]]
kind = "carrier"
interface = "eth0"
interval_ms = 10
"#;

    #[test]
    fn a_good_config_resolves_with_defaults() {
        let c = PairConfig::parse(Path::new("p.toml"), OK).unwrap();
        assert_eq!(c.vips.len(), 2);
        assert_eq!(c.vips[1].prefix, 64);
        assert_eq!(c.media[0].dest, SocketAddr::new(IpAddr::V4(DEFAULT_GROUP), DEFAULT_PORT));
        assert_eq!(c.checks[0].fall, 2);
        assert_eq!(c.checks[1].flag(), HealthFlags::LINK_DOWN);
        assert!(PairConfig::has_pair_section(OK));
    }

    #[test]
    fn the_commented_example_parses() {
        let text = include_str!("../../../examples/pair.toml");
        let c = PairConfig::parse(Path::new("examples/pair.toml"), text).unwrap();
        assert_eq!(c.vips.len(), 2);
        assert_eq!(c.media.len(), 2);
        assert_eq!(c.checks.len(), 6);
    }

    #[test]
    fn a_missing_key_is_refused_with_the_fix() {
        let text = OK.replace("key = \"00112233445566778899aabbccddeeff\"\n", "");
        let e = PairConfig::parse(Path::new("p.toml"), &text).unwrap_err();
        assert!(e.to_string().contains("openssl rand -hex 32"), "{e}");
        let text = text.replace("priority = 200", "priority = 200\ninsecure_no_key = true");
        assert!(PairConfig::parse(Path::new("p.toml"), &text).unwrap().key.is_none());
    }

    #[test]
    fn typos_and_bad_values_name_the_key() {
        let e = PairConfig::parse(Path::new("p.toml"), &OK.replace("priority = 200", "priorty = 200")).unwrap_err();
        assert!(e.to_string().contains("priorty"), "{e}");
        let e = PairConfig::parse(Path::new("p.toml"), &OK.replace("10.200.0.100/24", "10.200.0.100/40")).unwrap_err();
        assert!(e.to_string().contains("/40"), "{e}");
    }

    #[test]
    fn the_policy_digest_ignores_per_node_fields() {
        let a = PairConfig::parse(Path::new("a"), OK).unwrap();
        let b = PairConfig::parse(
            Path::new("b"),
            &OK.replace("node_id = 1", "node_id = 2").replace("priority = 200", "priority = 100"),
        )
        .unwrap();
        assert_eq!(a.policy_digest(), b.policy_digest());
        let c =
            PairConfig::parse(Path::new("c"), &OK.replace("priority = 200", "priority = 200\npreempt = true")).unwrap();
        assert_ne!(a.policy_digest(), c.policy_digest());
    }
}
