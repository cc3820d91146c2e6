//! TOML configuration for the primary's agent and the Linux listener.
//!
//! Unknown keys are refused (a typo must not silently fall back to a default), and every
//! error names the file, the key and the fix.

use rearguard_shared::config::ListenerConfig;
use rearguard_shared::fencing::FencingBudget;
use rearguard_shared::heartbeat::Role;
use rearguard_shared::integrity::Key;
use rearguard_shared::listener::NeverSeenPolicy;
use rearguard_shared::Duration;
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ConfigError {
    pub file: PathBuf,
    pub message: String,
}

fn err(file: &Path, message: impl Into<String>) -> ConfigError {
    ConfigError { file: file.to_path_buf(), message: message.into() }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// Cluster id: every record on the disk and every heartbeat carries it.
    pub id: u32,
    /// This node's id (its slot on the shared disk).
    pub node_id: Option<u8>,
    /// Optional HMAC key as hex (16..=32 bytes).
    pub key: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskSection {
    pub device: PathBuf,
    #[serde(default = "default_interval")]
    pub interval_ms: u64,
    #[serde(default = "default_write_deadline")]
    pub write_deadline_ms: u64,
}

fn default_interval() -> u64 {
    100
}
fn default_write_deadline() -> u64 {
    300
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub enum FenceMethod {
    /// A hardware (or softdog) watchdog device: petted after every good heartbeat cycle; if
    /// the agent hangs or stops petting, the kernel resets the machine.
    Watchdog,
    /// A command that takes the node out of service (power off, reset through a BMC, or a
    /// stand-in in tests), whose effect is bounded by `fence_time_ms`.
    Command,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FenceSection {
    pub method: FenceMethod,
    /// method = "watchdog": the device (default /dev/watchdog).
    pub device: Option<PathBuf>,
    /// method = "watchdog": its timeout in seconds (default 1).
    pub timeout_s: Option<u32>,
    /// method = "command": argv of the fencing command.
    pub command: Option<Vec<String>>,
    /// method = "command": how long the command takes to take effect, at most.
    pub fence_time_ms: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentFile {
    cluster: ClusterSection,
    disk: DiskSection,
    fence: FenceSection,
    /// Optional second medium: COBS-framed heartbeats on a tty or unix socket.
    serial: Option<crate::serial::SerialSection>,
    /// Optional firewall-pair section (see crate::pair::config).
    pair: Option<crate::pair::config::PairSection>,
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
    pub serial: Option<crate::serial::SerialSection>,
    /// [pair], resolved: `rearguard agent` runs the firewall-pair agent when present.
    pub pair: Option<crate::pair::config::PairConfig>,
}

impl AgentConfig {
    pub fn load(file: &Path) -> Result<AgentConfig, ConfigError> {
        let text = read(file)?;
        Self::parse(file, &text)
    }

    pub fn parse(file: &Path, text: &str) -> Result<AgentConfig, ConfigError> {
        let f: AgentFile = toml::from_str(text).map_err(|e| err(file, toml_message(e)))?;
        let node_id = f.cluster.node_id.ok_or_else(|| {
            err(file, "[cluster] node_id is missing: set it to this node's slot on the shared disk (the primary is usually 0)")
        })?;
        let key = parse_key(file, f.cluster.key.as_deref())?;
        if f.disk.interval_ms == 0 {
            return Err(err(
                file,
                "[disk] interval_ms = 0: the heartbeat interval must be at least 1 ms (100 is typical)",
            ));
        }
        if f.disk.write_deadline_ms == 0 {
            return Err(err(file, "[disk] write_deadline_ms = 0: must be at least 1 ms (a few intervals is typical)"));
        }
        let fence = match f.fence.method {
            FenceMethod::Watchdog => {
                let timeout_s = f.fence.timeout_s.unwrap_or(1);
                if timeout_s == 0 {
                    return Err(err(file, "[fence] timeout_s = 0: a watchdog timeout must be at least 1 s"));
                }
                Fence::Watchdog { device: f.fence.device.unwrap_or_else(|| "/dev/watchdog".into()), timeout_s }
            }
            FenceMethod::Command => {
                let argv = f.fence.command.filter(|a| !a.is_empty()).ok_or_else(|| {
                    err(file, "[fence] command is missing: with method = \"command\", set command = [\"program\", \"arg\", ...]")
                })?;
                let ms = f.fence.fence_time_ms.ok_or_else(|| {
                    err(file, "[fence] fence_time_ms is missing: with method = \"command\", say how long the command takes to stop this node, at most")
                })?;
                Fence::Command { argv, fence_time: Duration::from_millis(ms) }
            }
        };
        let pair = f.pair.map(|p| crate::pair::config::PairConfig::resolve(file, &f.cluster, p)).transpose()?;
        Ok(AgentConfig {
            pair,
            file: file.to_path_buf(),
            cluster_id: f.cluster.id,
            node_id,
            key,
            device: f.disk.device,
            interval: Duration::from_millis(f.disk.interval_ms),
            write_deadline: Duration::from_millis(f.disk.write_deadline_ms),
            fence,
            serial: match f.serial {
                Some(s) => {
                    s.validate().map_err(|m| err(file, m))?;
                    Some(s)
                }
                None => None,
            },
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListenerSection {
    node_id: u8,
    #[serde(default)]
    primary_node: u8,
    timeout_ms: u64,
    #[serde(default = "default_poll")]
    poll_ms: u64,
    #[serde(default = "default_never_seen")]
    never_seen: String,
    never_seen_release_after_ms: Option<u64>,
    /// Where settings saved from the console menu are kept (A/B copies); they override this
    /// section at the next start. Without it, console changes last until the listener stops.
    nv_file: Option<PathBuf>,
}

fn default_poll() -> u64 {
    100
}
fn default_never_seen() -> String {
    "wait".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct GateSection {
    command: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListenerDiskSection {
    device: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListenerFile {
    cluster: ClusterSection,
    listener: ListenerSection,
    disk: ListenerDiskSection,
    gate: GateSection,
}

/// The Linux listener's configuration: the shared listener record plus where its disk and
/// boot gate are.
#[derive(Debug, Clone)]
pub struct LinuxListenerConfig {
    pub file: PathBuf,
    pub listener: ListenerConfig,
    pub device: PathBuf,
    pub gate_command: Vec<String>,
    pub nv_file: Option<PathBuf>,
}

impl LinuxListenerConfig {
    pub fn load(file: &Path) -> Result<LinuxListenerConfig, ConfigError> {
        let text = read(file)?;
        Self::parse(file, &text)
    }

    pub fn parse(file: &Path, text: &str) -> Result<LinuxListenerConfig, ConfigError> {
        let f: ListenerFile = toml::from_str(text).map_err(|e| err(file, toml_message(e)))?;
        if f.cluster.node_id.is_some() {
            return Err(err(
                file,
                "[cluster] node_id is for the agent; in a listener config set [listener] node_id instead",
            ));
        }
        let never_seen = match (f.listener.never_seen.as_str(), f.listener.never_seen_release_after_ms) {
            ("wait", None) => NeverSeenPolicy::WaitForever,
            ("wait", Some(_)) => {
                return Err(err(file, "[listener] never_seen_release_after_ms is set but never_seen = \"wait\": set never_seen = \"release-after\" or drop the key"))
            }
            ("release-after", Some(ms)) => NeverSeenPolicy::ReleaseAfter(Duration::from_millis(ms)),
            ("release-after", None) => {
                return Err(err(file, "[listener] never_seen = \"release-after\" needs never_seen_release_after_ms = <ms>"))
            }
            (other, _) => {
                return Err(err(file, format!("[listener] never_seen = {other:?}: use \"wait\" (hold until the primary is seen) or \"release-after\"")))
            }
        };
        if f.gate.command.is_empty() {
            return Err(err(file, "[gate] command is empty: set the argv that releases the secondary's boot"));
        }
        let listener = ListenerConfig {
            role: Role::Secondary,
            cluster_id: f.cluster.id,
            node_id: f.listener.node_id,
            primary_node: f.listener.primary_node,
            timeout: Duration::from_millis(f.listener.timeout_ms),
            poll_period: Duration::from_millis(f.listener.poll_ms),
            never_seen,
            key: parse_key(file, f.cluster.key.as_deref())?,
        };
        listener.validate().map_err(|e| {
            let key = match e.field {
                "timeout" => "timeout_ms",
                "poll_period" => "poll_ms",
                "never_seen" => "never_seen_release_after_ms",
                other => other,
            };
            err(file, format!("[listener] {key}: {}", e.problem))
        })?;
        Ok(LinuxListenerConfig {
            file: file.to_path_buf(),
            listener,
            device: f.disk.device,
            gate_command: f.gate.command,
            nv_file: f.listener.nv_file,
        })
    }
}

fn read(file: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(file).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            err(file, "no such file; the examples/ folder has commented configs to start from")
        }
        _ => err(file, format!("cannot read: {e}")),
    })
}

fn parse_key(file: &Path, hex: Option<&str>) -> Result<Option<Key>, ConfigError> {
    hex.map(|h| {
        Key::from_hex(h)
            .map_err(|e| err(file, format!("[cluster] key: {e} (generate one with `openssl rand -hex 32`)")))
    })
    .transpose()
}

/// toml's message names the key and shows the line; drop its leading "TOML parse error" noise.
fn toml_message(e: toml::de::Error) -> String {
    let msg = e.to_string();
    msg.trim_start_matches("TOML parse error ").trim_end().to_string()
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

    #[test]
    fn a_valid_agent_config_parses() {
        let c = AgentConfig::parse(Path::new("a.toml"), AGENT).unwrap();
        assert_eq!(c.cluster_id, 0xC0FFEE);
        assert_eq!(c.fencing_budget().min_timeout(), Duration::from_millis(1000));
    }

    #[test]
    fn errors_name_the_file_and_key() {
        let e = AgentConfig::parse(Path::new("a.toml"), &AGENT.replace("node_id = 0\n", "")).unwrap_err().to_string();
        assert!(e.contains("a.toml") && e.contains("node_id"), "{e}");
        let e = AgentConfig::parse(Path::new("a.toml"), &AGENT.replace("interval_ms", "intervall_ms"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("intervall_ms"), "{e}");
        let e = AgentConfig::parse(Path::new("a.toml"), &AGENT.replace("fence_time_ms = 100\n", ""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("fence_time_ms"), "{e}");
    }
}
