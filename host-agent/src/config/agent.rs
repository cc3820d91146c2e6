//! The cold-standby primary's config: `[cluster]`, `[disk]`, `[fence]` and optional `[serial]`.

use super::{fields, parse_key, ClusterSection, ConfigError, ConfigKind, Source};
use nix::sys::termios::BaudRate;
use rearguard_shared::fencing::FencingBudget;
use rearguard_shared::integrity::Key;
use rearguard_shared::Duration;
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct DiskSection {
    device: PathBuf,
    #[serde(default = "default_interval")]
    interval_ms: u64,
    #[serde(default = "default_write_deadline")]
    write_deadline_ms: u64,
}

fn default_interval() -> u64 {
    100
}
fn default_write_deadline() -> u64 {
    300
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
enum FenceMethod {
    /// A hardware (or softdog) watchdog device: petted after every good heartbeat cycle; if
    /// the agent hangs or stops petting, the kernel resets the machine.
    Watchdog,
    /// A command that takes the node out of service (power off, reset through a BMC, or a
    /// stand-in in tests), whose effect is bounded by `fence_time_ms`.
    Command,
}

impl FenceMethod {
    /// The keys each method reads besides `method`: another method's key is refused, so that
    /// a half-edited `[fence]` does not quietly fence another way than the user thinks.
    fn keys(self) -> &'static [&'static str] {
        match self {
            FenceMethod::Watchdog => &["device", "timeout_s"],
            FenceMethod::Command => &["command", "fence_time_ms"],
        }
    }

    fn name(self) -> &'static str {
        match self {
            FenceMethod::Watchdog => "watchdog",
            FenceMethod::Command => "command",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FenceSection {
    method: FenceMethod,
    /// method = "watchdog": the device (default /dev/watchdog).
    device: Option<PathBuf>,
    /// method = "watchdog": its timeout in seconds (default 1).
    timeout_s: Option<u32>,
    /// method = "command": argv of the fencing command.
    command: Option<Vec<String>>,
    /// method = "command": how long the command takes to take effect, at most.
    fence_time_ms: Option<u64>,
}

/// `[serial]`: the optional second medium, COBS-framed heartbeats on a tty or unix socket
/// (sent by crate::serial).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SerialSection {
    /// A tty (e.g. /dev/ttyS1, /dev/ttyUSB0) or a unix socket.
    pub path: PathBuf,
    /// Line speed for a tty (ignored for a socket).
    #[serde(default = "default_baud")]
    pub baud: u32,
}

fn default_baud() -> u32 {
    SerialSection::DEFAULT_BAUD
}

/// The line speeds a tty can be set to, and their termios constants.
const BAUD_RATES: [(u32, BaudRate); 8] = [
    (9600, BaudRate::B9600),
    (19200, BaudRate::B19200),
    (38400, BaudRate::B38400),
    (57600, BaudRate::B57600),
    (115_200, BaudRate::B115200),
    (230_400, BaudRate::B230400),
    (460_800, BaudRate::B460800),
    (921_600, BaudRate::B921600),
];

impl SerialSection {
    pub const DEFAULT_BAUD: u32 = 115_200;

    /// What a config error says about a baud rate not in the list.
    pub fn baud_fix() -> String {
        let rates: Vec<String> = BAUD_RATES.iter().map(|(b, _)| b.to_string()).collect();
        format!("expected one of {}: set a standard rate", rates.join(", "))
    }

    /// The termios speed of `baud`; None for a rate not in the list a config accepts.
    pub fn baud_rate(&self) -> Option<BaudRate> {
        BAUD_RATES.iter().find(|(b, _)| *b == self.baud).map(|(_, r)| *r)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentFile {
    cluster: ClusterSection,
    disk: DiskSection,
    fence: FenceSection,
    serial: Option<SerialSection>,
}

/// How the agent fences itself, resolved and checked.
#[derive(Debug, Clone)]
pub enum Fence {
    Watchdog { device: PathBuf, timeout_s: u32 },
    Command { argv: Vec<String>, fence_time: Duration },
}

impl Fence {
    pub fn fence_time(&self) -> Duration {
        match self {
            Fence::Watchdog { timeout_s, .. } => Duration::from_secs(*timeout_s as u64),
            Fence::Command { fence_time, .. } => *fence_time,
        }
    }
}

/// The primary agent's configuration, validated.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub file: PathBuf,
    pub cluster_id: u32,
    pub node_id: u8,
    pub key: Option<Key>,
    pub device: PathBuf,
    pub interval: Duration,
    pub write_deadline: Duration,
    pub fence: Fence,
    pub serial: Option<SerialSection>,
}

impl AgentConfig {
    pub fn load(file: &Path) -> Result<AgentConfig, ConfigError> {
        Self::from_source(&Source::read(file)?)
    }

    pub fn parse(file: &Path, text: &str) -> Result<AgentConfig, ConfigError> {
        Self::from_source(&Source::parse(file, text)?)
    }

    pub fn from_source(src: &Source) -> Result<AgentConfig, ConfigError> {
        ConfigKind::Agent.expect(src)?;
        src.check_keys("cluster", fields::<ClusterSection>())?;
        src.check_keys("disk", fields::<DiskSection>())?;
        src.check_keys("fence", fields::<FenceSection>())?;
        src.check_keys("serial", fields::<SerialSection>())?;
        let f: AgentFile = src.deserialize(ConfigKind::Agent)?;
        let node_id = f.cluster.node_id.ok_or_else(|| {
            src.error(
                "cluster.node_id",
                "missing: set it to this node's slot on the shared disk (the primary is usually 0)",
            )
        })?;
        if f.disk.interval_ms == 0 {
            return Err(
                src.error("disk.interval_ms", "expected at least 1 ms: set the heartbeat interval (100 is typical)")
            );
        }
        if f.disk.write_deadline_ms == 0 {
            return Err(src.error("disk.write_deadline_ms", "expected at least 1 ms: a few intervals is typical (300)"));
        }
        let serial = f.serial.map(|s| serial(src, s)).transpose()?;
        Ok(AgentConfig {
            file: src.file().to_path_buf(),
            cluster_id: f.cluster.id,
            node_id,
            key: parse_key(src, f.cluster.key.as_deref())?,
            device: f.disk.device,
            interval: Duration::from_millis(f.disk.interval_ms),
            write_deadline: Duration::from_millis(f.disk.write_deadline_ms),
            fence: fence(src, f.fence)?,
            serial,
        })
    }

    pub fn fencing_budget(&self) -> FencingBudget {
        FencingBudget {
            interval: self.interval,
            write_deadline: self.write_deadline,
            fence_time: self.fence.fence_time(),
        }
    }
}

fn fence(src: &Source, f: FenceSection) -> Result<Fence, ConfigError> {
    let method = f.method;
    src.check_choice_keys("fence", "method", method.name(), method.keys(), &[])?;
    Ok(match method {
        FenceMethod::Watchdog => {
            let timeout_s = f.timeout_s.unwrap_or(1);
            if timeout_s == 0 {
                return Err(
                    src.error("fence.timeout_s", "expected at least 1 s: set the watchdog's timeout (1 is typical)")
                );
            }
            Fence::Watchdog { device: f.device.unwrap_or_else(|| "/dev/watchdog".into()), timeout_s }
        }
        FenceMethod::Command => {
            let argv = f.command.filter(|a| !a.is_empty()).ok_or_else(|| {
                src.error(
                    "fence.command",
                    "expected the fencing command's argv: with method = \"command\", set command = [\"program\", \"arg\", ...]",
                )
            })?;
            let ms = f.fence_time_ms.ok_or_else(|| {
                src.error(
                    "fence.fence_time_ms",
                    "missing: with method = \"command\", set how long the command takes to stop this node, at most",
                )
            })?;
            Fence::Command { argv, fence_time: Duration::from_millis(ms) }
        }
    })
}

fn serial(src: &Source, s: SerialSection) -> Result<SerialSection, ConfigError> {
    if s.baud_rate().is_none() {
        return Err(src.error("serial.baud", SerialSection::baud_fix()));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    const AGENT: &str = r#"
[cluster]
id = 0xC0FFEE
node_id = 0
[disk]
device = "/tmp/x.img"
interval_ms = 100
write_deadline_ms = 300
[fence]
method = "command"
command = ["true"]
fence_time_ms = 100
"#;

    fn err(text: &str) -> String {
        AgentConfig::parse(Path::new("a.toml"), text).unwrap_err().to_string()
    }

    #[test]
    fn a_valid_agent_config_parses() {
        let c = AgentConfig::parse(Path::new("a.toml"), AGENT).unwrap();
        assert_eq!(c.cluster_id, 0xC0FFEE);
        assert_eq!(c.fencing_budget().min_timeout(), Duration::from_millis(1000));
    }

    #[test]
    fn the_commented_example_parses() {
        let c = AgentConfig::parse(Path::new("agent.toml"), include_str!("../../../examples/agent.toml")).unwrap();
        assert!(matches!(c.fence, Fence::Watchdog { timeout_s: 1, .. }));
    }

    #[test]
    fn the_file_has_the_sections_its_kind_lists() {
        assert_eq!(fields::<AgentFile>(), ConfigKind::Agent.sections());
    }

    #[test]
    fn errors_name_the_file_and_key() {
        let e = err(&AGENT.replace("node_id = 0\n", ""));
        assert!(e.starts_with("a.toml:2:1: [cluster] node_id: missing"), "{e}");
        let e = err(&AGENT.replace("interval_ms", "intervall_ms"));
        assert!(e.starts_with("a.toml:7:1: [disk] intervall_ms: unknown key; did you mean `interval_ms`?"), "{e}");
        let e = err(&AGENT.replace("fence_time_ms = 100\n", ""));
        assert!(e.starts_with("a.toml:9:1: [fence] fence_time_ms: missing"), "{e}");
    }

    #[test]
    fn a_zero_interval_is_refused_at_its_line() {
        let e = err(&AGENT.replace("interval_ms = 100", "interval_ms = 0"));
        assert!(e.starts_with("a.toml:7:15: [disk] interval_ms = 0: expected at least 1 ms"), "{e}");
    }

    #[test]
    fn a_key_of_the_other_fence_method_is_refused() {
        let e = err(&AGENT.replace("fence_time_ms = 100\n", "fence_time_ms = 100\ntimeout_s = 2\n"));
        assert!(e.starts_with("a.toml:13:13: [fence] timeout_s = 2: does not apply to method = \"command\""), "{e}");
    }

    #[test]
    fn an_unknown_fence_method_lists_the_choices() {
        let e = err(&AGENT.replace("method = \"command\"", "method = \"reboot\""));
        assert!(e.starts_with("a.toml:10:10: [fence] method = \"reboot\": unknown variant"), "{e}");
        assert!(e.contains("`watchdog` or `command`"), "{e}");
    }

    #[test]
    fn odd_baud_rates_are_refused_with_the_choices() {
        let e = err(&format!("{AGENT}[serial]\npath = \"/dev/ttyS1\"\nbaud = 12345\n"));
        assert!(e.starts_with("a.toml:15:8: [serial] baud = 12345: expected one of") && e.contains("115200"), "{e}");
    }

    #[test]
    fn a_pair_section_makes_it_another_kind() {
        let e = err(&format!("{AGENT}[pair]\npriority = 1\n"));
        assert!(e.starts_with("a.toml:5:2: [disk] belongs to a listener config"), "{e}");
        assert!(e.contains("[pair] on line 13 makes this a pair config"), "{e}");
    }
}
