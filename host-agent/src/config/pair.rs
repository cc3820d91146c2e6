//! The firewall pair's config: `[cluster]` and `[pair]` with its `[[pair.vip]]`,
//! `[[pair.medium]]` and `[[pair.check]]` tables, and the optional `[pair.conntrack]`.

use super::agent::SerialSection;
use super::{fields, parse_key, ClusterSection, ConfigError, ConfigKind, Source};
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

/// `[pair]` as written in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PairSection {
    /// Instance name passed to hooks (keepalived's NAME argument).
    #[serde(default = "default_name")]
    name: String,
    /// 1..=255, higher wins.
    priority: u8,
    #[serde(default = "default_interval")]
    interval_ms: u64,
    /// The peer is dead after interval_ms × dead_count without a fresh advert.
    #[serde(default = "default_dead_count")]
    dead_count: u32,
    #[serde(default)]
    preempt: bool,
    #[serde(default)]
    preempt_delay_ms: u64,
    /// Gratuitous ARP / unsolicited NA burst on takeover.
    #[serde(default = "default_announce_count")]
    announce_count: u32,
    #[serde(default = "default_announce_interval")]
    announce_interval_ms: u64,
    #[serde(default = "default_socket")]
    control_socket: PathBuf,
    /// Where the boot epoch is kept so it grows across restarts.
    #[serde(default = "default_state_dir")]
    state_dir: PathBuf,
    /// Run without a MAC key (refused unless set: heartbeats are authenticated by default).
    #[serde(default)]
    insecure_no_key: bool,
    /// SCHED_RR priority of the election loop, receivers and carrier checks (0 = off).
    #[serde(default = "default_rt")]
    realtime_priority: u8,
    /// Scripts run on every state change: `SCRIPT INSTANCE NAME STATE PRIORITY`.
    #[serde(default)]
    hooks: Vec<PathBuf>,
    /// A hook still running after this long is killed with its process group.
    #[serde(default = "default_hook_timeout")]
    hook_timeout_ms: u64,
    /// keepalived's notify_fifo: the same events as the hooks, one line each.
    notify_fifo: Option<PathBuf>,
    #[serde(default)]
    vip: Vec<VipSection>,
    #[serde(default)]
    medium: Vec<MediumSection>,
    #[serde(default)]
    check: Vec<CheckSection>,
    /// VRRP-style virtual router id, 1..=255: the last byte of the virtual MAC that VIPs
    /// with `vmac = true` move with. Read wide so that 0 or 300 gets our error, not serde's.
    vmac_id: Option<i64>,
    /// conntrackd, driven on every transition so that connections survive a failover.
    conntrack: Option<ConntrackSection>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConntrackSection {
    /// conntrackd's config file; the commands find the daemon's unix socket through it.
    config: PathBuf,
    #[serde(default = "default_conntrackd")]
    binary: PathBuf,
    /// Bound on each conntrackd command: a hung daemon must not hold the takeover.
    #[serde(default = "default_conntrack_timeout")]
    timeout_ms: u64,
}

fn default_conntrackd() -> PathBuf {
    "conntrackd".into()
}
fn default_conntrack_timeout() -> u64 {
    1000
}

fn default_rt() -> u8 {
    10
}
fn default_hook_timeout() -> u64 {
    5000
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
struct VipSection {
    /// "10.0.0.100/24" or "2001:db8::100/64".
    address: String,
    interface: String,
    /// Put the VIP on a macvlan with the virtual MAC (`[pair] vmac_id`), so that it moves
    /// with its MAC and no neighbour cache needs an update.
    #[serde(default)]
    vmac: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct MediumSection {
    /// An IP medium: UDP on this interface.
    interface: Option<String>,
    /// Unicast peer address; when absent, multicast to `group`.
    peer: Option<IpAddr>,
    group: Option<Ipv4Addr>,
    port: Option<u16>,
    /// A serial medium: this tty (a null-modem cable between the nodes).
    serial: Option<PathBuf>,
    baud: Option<u32>,
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

/// `kind` of a `[[pair.check]]`: selects which of the other keys apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Probe {
    Carrier,
    Ping,
    Process,
    Systemd,
    Command,
    Hwmon,
}

impl Probe {
    /// The keys this kind reads besides those every check has ([`CHECK_KEYS`]); a key of
    /// another kind is refused rather than ignored.
    fn keys(self) -> &'static [&'static str] {
        match self {
            Probe::Carrier => &["interface"],
            Probe::Ping => &["target", "timeout_ms"],
            Probe::Process => &["pidfile", "name"],
            Probe::Systemd => &["unit"],
            Probe::Command => &["argv", "timeout_ms"],
            Probe::Hwmon => &["path", "min", "max"],
        }
    }

    fn name(self) -> &'static str {
        match self {
            Probe::Carrier => "carrier",
            Probe::Ping => "ping",
            Probe::Process => "process",
            Probe::Systemd => "systemd",
            Probe::Command => "command",
            Probe::Hwmon => "hwmon",
        }
    }
}

/// The keys of every `[[pair.check]]`, whatever its kind.
const CHECK_KEYS: [&str; 4] = ["kind", "interval_ms", "rise", "fall"];

/// `[[pair.check]]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckSection {
    kind: Probe,
    interface: Option<String>,
    target: Option<Ipv4Addr>,
    timeout_ms: Option<u64>,
    pidfile: Option<PathBuf>,
    name: Option<String>,
    unit: Option<String>,
    argv: Option<Vec<String>>,
    path: Option<PathBuf>,
    min: Option<i64>,
    max: Option<i64>,
    #[serde(default = "default_check_interval")]
    interval_ms: u64,
    /// Consecutive successes before a failed check counts as healthy again.
    #[serde(default = "one")]
    rise: u32,
    /// Consecutive failures before a check counts as failed.
    #[serde(default = "one")]
    fall: u32,
}

fn default_check_interval() -> u64 {
    1000
}
fn one() -> u32 {
    1
}

impl CheckSection {
    /// What the check watches; `at` is its path in the file (`pair.check.N`).
    fn kind(&self, src: &Source, at: &str) -> Result<CheckKind, ConfigError> {
        let kind = self.kind;
        src.check_choice_keys(at, "kind", kind.name(), kind.keys(), &CHECK_KEYS[1..])?;
        let need =
            |key: &str| src.error(&format!("{at}.{key}"), format!("missing: a {} check needs {key}", kind.name()));
        Ok(match kind {
            Probe::Carrier => {
                CheckKind::Carrier { interface: self.interface.clone().ok_or_else(|| need("interface"))? }
            }
            Probe::Ping => CheckKind::Ping {
                target: self.target.ok_or_else(|| need("target"))?,
                timeout_ms: self.timeout_ms.unwrap_or(200),
            },
            Probe::Process => match (&self.pidfile, &self.name) {
                (Some(_), None) | (None, Some(_)) => {
                    CheckKind::Process { pidfile: self.pidfile.clone(), name: self.name.clone() }
                }
                _ => return Err(src.error(at, "kind = \"process\": set exactly one of pidfile or name")),
            },
            Probe::Systemd => CheckKind::Systemd { unit: self.unit.clone().ok_or_else(|| need("unit"))? },
            Probe::Command => {
                let argv = self.argv.clone().filter(|a| !a.is_empty()).ok_or_else(|| {
                    src.error(
                        &format!("{at}.argv"),
                        "expected the command's argv: set argv = [\"program\", \"arg\", ...]",
                    )
                })?;
                CheckKind::Command { argv, timeout_ms: self.timeout_ms.unwrap_or(2000) }
            }
            Probe::Hwmon => {
                if self.min.is_none() && self.max.is_none() {
                    return Err(src.error(at, "kind = \"hwmon\": set min and/or max"));
                }
                CheckKind::Hwmon { path: self.path.clone().ok_or_else(|| need("path"))?, min: self.min, max: self.max }
            }
        })
    }
}

/// A VIP, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vip {
    pub addr: IpAddr,
    pub prefix: u8,
    /// Where the address lives: the configured interface, or with vmac the macvlan over it.
    pub interface: String,
    pub vmac: Option<Vmac>,
}

/// The macvlan a `vmac = true` VIP lives on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vmac {
    /// The configured interface the macvlan sits on.
    pub parent: String,
    /// `00:00:5e:00:01:ID` (IPv4) or `00:00:5e:00:02:ID` (IPv6), as VRRP (RFC 5798).
    pub mac: [u8; 6],
}

impl Vmac {
    fn new(parent: &str, ipv4: bool, id: u8) -> Vmac {
        Vmac { parent: parent.to_string(), mac: [0, 0, 0x5e, 0, if ipv4 { 1 } else { 2 }, id] }
    }

    /// `vm4-PARENT` / `vm6-PARENT`, cut to the kernel's 15 characters: derived, not stored,
    /// so that `vip-cleanup` finds it after a crash.
    pub fn name(&self) -> String {
        let fam = if self.mac[4] == 1 { '4' } else { '6' };
        let parent: String = self.parent.chars().take(11).collect();
        format!("vm{fam}-{parent}")
    }
}

impl Vip {
    /// The physical interface: the one that must exist before the agent starts.
    pub fn link(&self) -> &str {
        self.vmac.as_ref().map_or(&self.interface, |m| &m.parent)
    }
}

/// `[pair.conntrack]`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conntrack {
    pub config: PathBuf,
    pub binary: PathBuf,
    pub timeout: std::time::Duration,
}

impl std::fmt::Display for Vip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{} on {}", self.addr, self.prefix, self.interface)
    }
}

/// A heartbeat medium: UDP on an interface, or a serial line.
#[derive(Debug, Clone)]
pub enum Medium {
    Ip(IpMedium),
    /// COBS-framed adverts on a tty (the same section type as the cold-standby `[serial]`).
    Serial(SerialSection),
}

impl Medium {
    /// The interface, or the tty's path: what status and logs call the medium.
    pub fn name(&self) -> String {
        match self {
            Medium::Ip(m) => m.interface.clone(),
            Medium::Serial(s) => s.path.display().to_string(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct IpMedium {
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
    pub hook_timeout: std::time::Duration,
    pub notify_fifo: Option<PathBuf>,
    pub vips: Vec<Vip>,
    pub media: Vec<Medium>,
    pub checks: Vec<Check>,
    pub vmac_id: Option<u8>,
    pub conntrack: Option<Conntrack>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PairFile {
    cluster: ClusterSection,
    pair: PairSection,
}

impl PairConfig {
    pub fn load(file: &Path) -> Result<PairConfig, ConfigError> {
        Self::from_source(&Source::read(file)?)
    }

    pub fn parse(file: &Path, text: &str) -> Result<PairConfig, ConfigError> {
        Self::from_source(&Source::parse(file, text)?)
    }

    pub fn from_source(src: &Source) -> Result<PairConfig, ConfigError> {
        ConfigKind::Pair.expect(src)?;
        src.check_keys("cluster", fields::<ClusterSection>())?;
        src.check_keys("pair", fields::<PairSection>())?;
        src.check_keys("pair.vip", fields::<VipSection>())?;
        src.check_keys("pair.medium", fields::<MediumSection>())?;
        src.check_keys("pair.check", fields::<CheckSection>())?;
        src.check_keys("pair.conntrack", fields::<ConntrackSection>())?;
        let f: PairFile = src.deserialize(ConfigKind::Pair)?;
        let p = f.pair;
        let (node_id, key) = cluster(src, &f.cluster, p.insecure_no_key)?;
        scalars(src, &p)?;
        let vmac_id = vmac_id(src, &p)?;
        let vips = vips(src, &p.vip, vmac_id)?;
        let media = media(src, &p.medium, vips[0].link())?;
        let checks = checks(src, &p.check)?;
        let conntrack = match &p.conntrack {
            None => None,
            Some(c) if c.timeout_ms == 0 => {
                return Err(src.error(
                    "pair.conntrack.timeout_ms",
                    "expected at least 1: the bound on each conntrackd command (1000 is typical)",
                ))
            }
            Some(c) => Some(Conntrack {
                config: c.config.clone(),
                binary: c.binary.clone(),
                timeout: std::time::Duration::from_millis(c.timeout_ms),
            }),
        };
        Ok(PairConfig {
            cluster_id: f.cluster.id,
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
            hook_timeout: std::time::Duration::from_millis(p.hook_timeout_ms),
            notify_fifo: p.notify_fifo,
            vips,
            media,
            checks,
            vmac_id,
            conntrack,
        })
    }

    /// Digest of the policy both nodes must share (not the per-node fields: node id,
    /// priority, interfaces, checks, hooks, paths).
    pub fn policy_digest(&self) -> u32 {
        // Both nodes must move a VIP with the same MAC; without vmac the digest is what it was.
        let mut vips: Vec<String> = self
            .vips
            .iter()
            .map(|v| match &v.vmac {
                None => format!("{}/{}", v.addr, v.prefix),
                Some(m) => format!("{}/{}+vmac{}", v.addr, v.prefix, m.mac[5]),
            })
            .collect();
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

/// `[cluster]`: this node's id, and the key (required unless the user opted out).
fn cluster(src: &Source, c: &ClusterSection, insecure_no_key: bool) -> Result<(u8, Option<Key>), ConfigError> {
    let node_id = c
        .node_id
        .ok_or_else(|| src.error("cluster.node_id", "missing: give each node of the pair its own id (e.g. 1 and 2)"))?;
    let key = parse_key(src, c.key.as_deref())?;
    if key.is_none() && !insecure_no_key {
        return Err(src.error(
            "cluster.key",
            "missing: pair heartbeats are authenticated by default. Set the same key on both nodes \
             (`openssl rand -hex 32`), or set [pair] insecure_no_key = true on an isolated test network",
        ));
    }
    Ok((node_id, key))
}

/// `[pair]`'s own numbers.
fn scalars(src: &Source, p: &PairSection) -> Result<(), ConfigError> {
    if p.priority == 0 {
        return Err(src.error("pair.priority", "expected 1..=255 (higher is preferred): set a priority of at least 1"));
    }
    if p.realtime_priority > 99 {
        return Err(src.error(
            "pair.realtime_priority",
            "expected 1..=99 (SCHED_RR): lower it, or set 0 to run at normal priority",
        ));
    }
    if p.interval_ms == 0 {
        return Err(src.error("pair.interval_ms", "expected at least 1: set the advert interval (100 is typical)"));
    }
    if p.hook_timeout_ms == 0 {
        return Err(src.error(
            "pair.hook_timeout_ms",
            "expected at least 1: set how long a hook may run before it is killed (5000 is the default)",
        ));
    }
    if p.dead_count < 2 {
        return Err(src.error("pair.dead_count", "expected at least 2: one lost advert must not fail over"));
    }
    Ok(())
}

/// `[pair] vmac_id`: required once a VIP has `vmac = true`, 1..=255 (a MAC byte; VRRP's
/// virtual router ids exclude 0).
fn vmac_id(src: &Source, p: &PairSection) -> Result<Option<u8>, ConfigError> {
    match p.vmac_id {
        None if p.vip.iter().any(|v| v.vmac) => Err(src.error(
            "pair.vmac_id",
            "missing: a VIP has vmac = true; set vmac_id = 1..=255 under [pair], the same on both nodes \
             and unique on the segment (it is the last byte of the virtual MAC 00:00:5e:00:01:ID)",
        )),
        None => Ok(None),
        Some(id) => u8::try_from(id).ok().filter(|id| *id >= 1).map(Some).ok_or_else(|| {
            src.error(
                "pair.vmac_id",
                "expected 1..=255 (the last byte of the virtual MAC 00:00:5e:00:01:ID): pick an id no other \
                 VRRP router on the segment uses",
            )
        }),
    }
}

/// `[[pair.vip]]`: at least one, each an address with an optional prefix on an interface.
fn vips(src: &Source, sections: &[VipSection], vmac_id: Option<u8>) -> Result<Vec<Vip>, ConfigError> {
    if sections.is_empty() {
        return Err(src.error(
            "pair.vip",
            "missing: add at least one [[pair.vip]] with address = \"10.0.0.100/24\" and interface = \"eth0\"",
        ));
    }
    let mut vips = Vec::new();
    for (i, v) in sections.iter().enumerate() {
        let at = format!("pair.vip.{i}");
        let (a, pfx) = v.address.split_once('/').unwrap_or((v.address.as_str(), ""));
        let addr: IpAddr = a.parse().map_err(|_| {
            src.error(&format!("{at}.address"), "expected an IP address with its prefix: write \"10.0.0.100/24\"")
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = if pfx.is_empty() {
            max
        } else {
            pfx.parse().ok().filter(|p| *p <= max).ok_or_else(|| {
                src.error(
                    &format!("{at}.address"),
                    format!("prefix /{pfx}: expected /0../{max}: fix the prefix length"),
                )
            })?
        };
        check_ifname(src, &format!("{at}.interface"), &v.interface)?;
        let vmac = vmac_id.filter(|_| v.vmac).map(|id| Vmac::new(&v.interface, addr.is_ipv4(), id));
        let interface = vmac.as_ref().map_or_else(|| v.interface.clone(), Vmac::name);
        if let Some(m) = &vmac {
            // Two parents cut to the same 11 characters would share one macvlan.
            if let Some(other) = vips.iter().find(|o: &&Vip| o.interface == interface && o.link() != m.parent) {
                return Err(src.error(
                    &format!("{at}.interface"),
                    format!(
                        "its vmac interface {interface} would be the same as that of {} (names are cut to 15 \
                         characters): rename one of the interfaces",
                        other.link()
                    ),
                ));
            }
        }
        vips.push(Vip { addr, prefix, interface, vmac });
    }
    Ok(vips)
}

/// `[[pair.medium]]`: where adverts go; none means multicast on the first VIP's interface.
fn media(src: &Source, sections: &[MediumSection], first_vip_interface: &str) -> Result<Vec<Medium>, ConfigError> {
    let default = [MediumSection {
        interface: Some(first_vip_interface.to_string()),
        peer: None,
        group: None,
        port: None,
        serial: None,
        baud: None,
    }];
    let sections = if sections.is_empty() { &default[..] } else { sections };
    if sections.len() > rearguard_shared::detector::MAX_MEDIA {
        return Err(src.error(
            &format!("pair.medium.{}", rearguard_shared::detector::MAX_MEDIA),
            format!("expected at most {} media: remove the rest", rearguard_shared::detector::MAX_MEDIA),
        ));
    }
    let mut media = Vec::new();
    for (i, m) in sections.iter().enumerate() {
        let at = format!("pair.medium.{i}");
        let interface = match (&m.interface, &m.serial) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(src.error(
                    &at,
                    "set either interface (UDP adverts) or serial (a tty such as \"/dev/ttyS1\"), exactly one",
                ))
            }
            (None, Some(path)) => {
                src.check_choice_keys(&at, "serial", &path.display().to_string(), &["baud"], &[])?;
                let s = SerialSection { path: path.clone(), baud: m.baud.unwrap_or(SerialSection::DEFAULT_BAUD) };
                if s.baud_rate().is_none() {
                    return Err(src.error(&format!("{at}.baud"), SerialSection::baud_fix()));
                }
                media.push(Medium::Serial(s));
                continue;
            }
            (Some(interface), None) => interface,
        };
        if m.baud.is_some() {
            return Err(src.error(&format!("{at}.baud"), "baud applies to a serial medium only: remove it"));
        }
        check_ifname(src, &format!("{at}.interface"), interface)?;
        let port = m.port.unwrap_or(DEFAULT_PORT);
        let dest = match (m.peer, m.group) {
            (Some(_), Some(_)) => {
                return Err(src.error(
                    &format!("{at}.group"),
                    "set either peer (unicast) or group (multicast), not both: remove one",
                ))
            }
            (Some(peer), None) => SocketAddr::new(peer, port),
            (None, g) => {
                let g = g.unwrap_or(DEFAULT_GROUP);
                if !g.is_multicast() {
                    return Err(src.error(
                        &format!("{at}.group"),
                        "expected a multicast address (224.0.0.0/4): use one such as 239.255.82.71, or set peer",
                    ));
                }
                SocketAddr::new(IpAddr::V4(g), port)
            }
        };
        media.push(Medium::Ip(IpMedium { interface: interface.clone(), dest, port }));
    }
    Ok(media)
}

/// `[[pair.check]]`: what each watches, and its debounce.
fn checks(src: &Source, sections: &[CheckSection]) -> Result<Vec<Check>, ConfigError> {
    let mut checks = Vec::new();
    for (i, c) in sections.iter().enumerate() {
        let at = format!("pair.check.{i}");
        let kind = c.kind(src, &at)?;
        let name = match &kind {
            CheckKind::Carrier { interface } => {
                check_ifname(src, &format!("{at}.interface"), interface)?;
                format!("carrier {interface}")
            }
            CheckKind::Ping { target, .. } => format!("ping {target}"),
            CheckKind::Process { pidfile: Some(p), .. } => format!("process pidfile {}", p.display()),
            CheckKind::Process { name, .. } => format!("process {}", name.as_deref().unwrap_or("?")),
            CheckKind::Systemd { unit } => format!("systemd {unit}"),
            CheckKind::Command { argv, .. } => format!("command {}", argv.join(" ")),
            CheckKind::Hwmon { path, .. } => format!("hwmon {}", path.display()),
        };
        for (key, v) in [("interval_ms", c.interval_ms), ("rise", c.rise as u64), ("fall", c.fall as u64)] {
            if v == 0 {
                return Err(src.error(&format!("{at}.{key}"), format!("expected at least 1 ({name}): raise it")));
            }
        }
        checks.push(Check {
            name,
            kind,
            interval: std::time::Duration::from_millis(c.interval_ms),
            rise: c.rise,
            fall: c.fall,
        });
    }
    Ok(checks)
}

fn check_ifname(src: &Source, at: &str, name: &str) -> Result<(), ConfigError> {
    if name.is_empty() || name.len() > 15 || name.contains('/') || name.contains(char::is_whitespace) {
        return Err(src.error(at, "expected an interface name (1..=15 characters, no '/' or spaces): see `ip link`"));
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
        let Medium::Ip(m) = &c.media[0] else { panic!("{:?}", c.media[0]) };
        assert_eq!(m.dest, SocketAddr::new(IpAddr::V4(DEFAULT_GROUP), DEFAULT_PORT));
        assert_eq!(c.checks[0].fall, 2);
        assert_eq!(c.checks[1].flag(), HealthFlags::LINK_DOWN);
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

    fn err(text: &str) -> String {
        PairConfig::parse(Path::new("p.toml"), text).unwrap_err().to_string()
    }

    #[test]
    fn the_file_has_the_sections_its_kind_lists() {
        assert_eq!(fields::<PairFile>(), ConfigKind::Pair.sections());
    }

    #[test]
    fn a_misspelt_section_is_refused_with_the_closest_name() {
        let e = err(&format!("{OK}[serail]\npath = \"/dev/ttyS1\"\n"));
        assert!(e.starts_with("p.toml:22:2: [serail]: unknown section; did you mean [serial]?"), "{e}");
        assert!(e.contains("[serial] belongs to an agent config"), "{e}");
    }

    #[test]
    fn a_section_of_another_kind_is_refused() {
        let e = err(&format!("{OK}[fence]\nmethod = \"watchdog\"\n"));
        assert!(e.starts_with("p.toml:22:2: [fence] belongs to an agent config"), "{e}");
        assert!(e.contains("[pair] on line 6 makes this a pair config"), "{e}");
    }

    #[test]
    fn a_misspelt_key_is_refused_with_the_closest_name() {
        let e = err(&OK.replace("priority = 200", "priorty = 200"));
        assert!(e.starts_with("p.toml:7:1: [pair] priorty: unknown key; did you mean `priority`?"), "{e}");
        let e = err(&OK.replace("address = \"fd00::100/64\"", "adress = \"fd00::100/64\""));
        assert!(e.starts_with("p.toml:12:1: [[pair.vip]] #2 adress: unknown key; did you mean `address`?"), "{e}");
    }

    #[test]
    fn a_check_key_of_another_kind_is_refused() {
        let e = err(&OK.replace("fall = 2", "fall = 2\nunit = \"x.service\""));
        assert!(
            e.starts_with("p.toml:18:8: [[pair.check]] #1 unit = \"x.service\": does not apply to kind = \"ping\""),
            "{e}"
        );
        assert!(e.contains("target, timeout_ms"), "{e}");
        let e = err(&OK.replace("kind = \"ping\"", "kind = \"pingg\""));
        assert!(e.starts_with("p.toml:15:8: [[pair.check]] #1 kind = \"pingg\": unknown variant"), "{e}");
    }

    #[test]
    fn a_serial_medium_takes_a_tty_and_a_standard_baud() {
        let text = format!(
            "{OK}[[pair.medium]]\ninterface = \"eth0\"\n[[pair.medium]]\nserial = \"/dev/ttyS1\"\nbaud = 57600\n"
        );
        let c = PairConfig::parse(Path::new("p.toml"), &text).unwrap();
        assert!(matches!(&c.media[1], Medium::Serial(s) if s.baud == 57600 && s.path == Path::new("/dev/ttyS1")));
        let e = err(&text.replace("baud = 57600", "baud = 1234"));
        assert!(e.contains("[[pair.medium]] #2 baud = 1234: expected one of"), "{e}");
        let e = err(&text.replace("baud = 57600", "port = 1"));
        assert!(e.contains("port = 1: does not apply to serial"), "{e}");
        let e = err(&text.replace("serial = ", "interface = \"eth1\"\nserial = "));
        assert!(e.contains("exactly one"), "{e}");
    }

    #[test]
    fn vmac_resolves_to_a_macvlan_with_the_vrrp_mac_per_family() {
        let text = OK
            .replace("priority = 200", "priority = 200\nvmac_id = 51")
            .replace("interface = \"eth0\"\n[[", "interface = \"eth0\"\nvmac = true\n[[");
        let c = PairConfig::parse(Path::new("p.toml"), &text).unwrap();
        let v4 = c.vips[0].vmac.as_ref().unwrap();
        assert_eq!((c.vips[0].interface.as_str(), v4.mac), ("vm4-eth0", [0, 0, 0x5e, 0, 1, 51]));
        let v6 = c.vips[1].vmac.as_ref().unwrap();
        assert_eq!((c.vips[1].interface.as_str(), v6.mac), ("vm6-eth0", [0, 0, 0x5e, 0, 2, 51]));
        assert_eq!(c.vips[0].link(), "eth0");
        let plain = PairConfig::parse(Path::new("p.toml"), OK).unwrap();
        assert!(plain.vips.iter().all(|v| v.vmac.is_none() && v.interface == "eth0"));
        assert_ne!(c.policy_digest(), plain.policy_digest());
    }

    #[test]
    fn a_vmac_id_out_of_range_or_missing_names_the_key() {
        for bad in ["0", "256", "-1"] {
            let e = err(&OK.replace("priority = 200", &format!("priority = 200\nvmac_id = {bad}")));
            assert!(e.starts_with(&format!("p.toml:8:11: [pair] vmac_id = {bad}: expected 1..=255")), "{e}");
        }
        let e = err(&OK.replace("interface = \"eth0\"\n[[", "interface = \"eth0\"\nvmac = true\n[["));
        assert!(e.contains("[pair] vmac_id: missing: a VIP has vmac = true"), "{e}");
    }

    #[test]
    fn range_errors_point_at_the_value() {
        let e = err(&OK.replace("priority = 200", "priority = 0"));
        assert!(e.starts_with("p.toml:7:12: [pair] priority = 0: expected 1..=255"), "{e}");
        let e = err(&OK.replace("fd00::100/64", "fd00::100/129"));
        assert!(e.starts_with("p.toml:12:11: [[pair.vip]] #2 address = \"fd00::100/129\": prefix /129"), "{e}");
        let e = err(&OK.replace("interval_ms = 10", "interval_ms = 0"));
        assert!(e.starts_with("p.toml:21:15: [[pair.check]] #2 interval_ms = 0: expected at least 1"), "{e}");
    }
}
