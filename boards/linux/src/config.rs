//! The Linux listener's config: `[cluster]`, `[listener]`, `[disk]` and `[gate]`. Reading,
//! locating errors and telling the kind of a file are rearguard_host_agent::config's.

use rearguard_host_agent::config::{fields, parse_key, ClusterSection, ConfigError, ConfigKind, Source};
use rearguard_shared::config::ListenerConfig;
use rearguard_shared::heartbeat::Role;
use rearguard_shared::listener::{NeverSeenPolicy, NodeSet};
use rearguard_shared::Duration;
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListenerSection {
    node_id: u8,
    /// `"secondary"` (watches `primary_node`) or `"spare"` (watches every node in `watch`).
    role: Option<String>,
    primary_node: Option<u8>,
    /// A spare's primaries: `"0-3"`, `"0,2,5"`, or a list of ids.
    watch: Option<WatchList>,
    timeout_ms: u64,
    #[serde(default = "default_poll")]
    poll_ms: u64,
    #[serde(default = "default_never_seen")]
    never_seen: String,
    never_seen_release_after_ms: Option<u64>,
    /// Where settings saved from the console menu are kept (A/B copies); they override this
    /// section at the next start. Without it, console changes last until the listener stops.
    nv_file: Option<PathBuf>,
    /// Where the highest heartbeat read from each primary is kept, so that records replayed
    /// after a restart are refused (`replay.rs`). Without it, a restarted listener takes
    /// any record as a fresh baseline.
    state_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum WatchList {
    Text(String),
    Ids(Vec<u8>),
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
    /// (`rearguard drill`) a harmless command proving the gate path works (e.g. a BMC
    /// status query); must exit 0. Never run by the listener itself.
    gate_test: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct DiskSection {
    device: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListenerFile {
    cluster: ClusterSection,
    listener: ListenerSection,
    disk: DiskSection,
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
    /// `[gate] gate_test`: what `rearguard drill` runs to prove the gate path; never the gate.
    pub gate_test: Option<Vec<String>>,
    pub nv_file: Option<PathBuf>,
    /// `[listener] state_dir`: the replay marks' directory.
    pub state_dir: Option<PathBuf>,
    /// `Some` for a spare: the primaries it watches (the disk must give them that role).
    pub watch: Option<NodeSet>,
}

impl LinuxListenerConfig {
    pub fn load(file: &Path) -> Result<LinuxListenerConfig, ConfigError> {
        Self::from_source(&Source::read(file)?)
    }

    pub fn parse(file: &Path, text: &str) -> Result<LinuxListenerConfig, ConfigError> {
        Self::from_source(&Source::parse(file, text)?)
    }

    pub fn from_source(src: &Source) -> Result<LinuxListenerConfig, ConfigError> {
        ConfigKind::Listener.expect(src)?;
        src.check_keys("cluster", fields::<ClusterSection>())?;
        src.check_keys("listener", fields::<ListenerSection>())?;
        src.check_keys("disk", fields::<DiskSection>())?;
        src.check_keys("gate", fields::<GateSection>())?;
        let f: ListenerFile = src.deserialize(ConfigKind::Listener)?;
        if f.cluster.node_id.is_some() {
            return Err(src.error(
                "cluster.node_id",
                "is the agent's: in a listener config set [listener] node_id instead, and remove this one",
            ));
        }
        let l = &f.listener;
        let never_seen = match (l.never_seen.as_str(), l.never_seen_release_after_ms) {
            ("wait", None) => NeverSeenPolicy::WaitForever,
            ("wait", Some(_)) => {
                return Err(src.error(
                    "listener.never_seen_release_after_ms",
                    "applies only with never_seen = \"release-after\": set that, or remove this key",
                ))
            }
            ("release-after", Some(ms)) => NeverSeenPolicy::ReleaseAfter(Duration::from_millis(ms)),
            ("release-after", None) => {
                return Err(src
                    .error("listener.never_seen", "needs never_seen_release_after_ms = <ms>: add it under [listener]"))
            }
            _ => {
                return Err(src.error(
                    "listener.never_seen",
                    "expected \"wait\" (hold until the primary is seen) or \"release-after\": set one of them",
                ))
            }
        };
        let watch = match (l.role.as_deref(), &l.watch, l.primary_node) {
            (None | Some("secondary"), None, _) => None,
            (None | Some("secondary"), Some(_), _) => {
                return Err(
                    src.error("listener.watch", "applies only with role = \"spare\": set that, or remove this key")
                )
            }
            (Some("spare"), None, _) => {
                return Err(src.error(
                    "listener.role",
                    "a spare needs watch = \"0-3\" (or a list of the primaries' node ids): add it under [listener]",
                ))
            }
            (Some("spare"), Some(_), Some(_)) => {
                return Err(src.error(
                    "listener.primary_node",
                    "is the secondary's; a spare lists its primaries in watch: remove this key",
                ))
            }
            (Some("spare"), Some(w), None) => {
                let set = match w {
                    WatchList::Text(t) => {
                        NodeSet::parse(t).map_err(|e| src.error("listener.watch", format!("{e}: fix the list")))?
                    }
                    WatchList::Ids(ids) => {
                        let mut set = NodeSet::default();
                        for &n in ids {
                            if n >= 32 {
                                return Err(src.error("listener.watch", "node ids are 0..=31: fix the list"));
                            }
                            set.0 |= 1 << n;
                        }
                        set
                    }
                };
                if set.is_empty() {
                    return Err(src.error("listener.watch", "names no primary: list the primaries' node ids"));
                }
                if set.contains(l.node_id) {
                    return Err(src.error(
                        "listener.watch",
                        format!("names this spare's own slot (node_id = {}): a spare cannot watch itself; remove {} from the list", l.node_id, l.node_id),
                    ));
                }
                Some(set)
            }
            (Some(_), ..) => {
                return Err(src.error(
                    "listener.role",
                    "expected \"secondary\" (one primary) or \"spare\" (the primaries in watch): set one of them",
                ))
            }
        };
        if f.gate.command.is_empty() {
            return Err(src.error("gate.command", "expected the argv that releases the secondary's boot: set it"));
        }
        if f.gate.gate_test.as_ref().is_some_and(|t| t.is_empty()) {
            return Err(
                src.error("gate.gate_test", "expected the argv of a harmless gate check: set it, or remove the key")
            );
        }
        let listener = ListenerConfig {
            role: Role::Secondary,
            cluster_id: f.cluster.id,
            node_id: l.node_id,
            // A spare's console shows (and `release` takes) its lowest watched primary.
            primary_node: watch.and_then(|w| w.iter().next()).or(l.primary_node).unwrap_or(0),
            timeout: Duration::from_millis(l.timeout_ms),
            poll_period: Duration::from_millis(l.poll_ms),
            never_seen,
            key: parse_key(src, f.cluster.key.as_deref())?,
            watch: NodeSet(0),
        };
        // The shared record names its own fields; say them as the file's keys, with the fix.
        listener.validate().map_err(|e| {
            let (key, fix) = match e.field {
                "timeout" => ("timeout_ms", "set timeout_ms between twice poll_ms and 3600000"),
                "poll_period" => ("poll_ms", "set poll_ms to 1 or more"),
                "never_seen" => ("never_seen_release_after_ms", "raise it to timeout_ms or more"),
                "primary_node" => ("primary_node", "set it to the primary's node id"),
                other => (other, "use node ids 0..=31"),
            };
            src.error(&format!("listener.{key}"), format!("{}: {fix}", e.problem.replace("poll_period", "poll_ms")))
        })?;
        Ok(LinuxListenerConfig {
            file: src.file().to_path_buf(),
            listener,
            device: f.disk.device,
            gate_command: f.gate.command,
            gate_test: f.gate.gate_test,
            nv_file: f.listener.nv_file,
            state_dir: f.listener.state_dir,
            watch,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str =
        "[cluster]\nid = 0xC0FFEE\n[listener]\nnode_id = 1\ntimeout_ms = 1000\n[disk]\ndevice = \"d.img\"\n\
                      [gate]\ncommand = [\"true\"]\n";

    fn err(text: &str) -> String {
        LinuxListenerConfig::parse(Path::new("l.toml"), text).unwrap_err().to_string()
    }

    #[test]
    fn the_commented_example_parses() {
        let c = LinuxListenerConfig::parse(Path::new("listener.toml"), include_str!("../../../examples/listener.toml"))
            .unwrap();
        assert_eq!(c.listener.timeout, Duration::from_millis(10_000));
    }

    #[test]
    fn the_file_has_the_sections_its_kind_lists() {
        assert_eq!(fields::<ListenerFile>(), ConfigKind::Listener.sections());
    }

    #[test]
    fn a_misspelt_key_is_refused_with_the_closest_name() {
        let e = err(&OK.replace("timeout_ms", "timout_ms"));
        assert!(e.starts_with("l.toml:5:1: [listener] timout_ms: unknown key; did you mean `timeout_ms`?"), "{e}");
    }

    #[test]
    fn a_bad_value_points_at_its_line() {
        let e = err(&OK.replace("timeout_ms = 1000", "timeout_ms = 1000\nnever_seen = \"sometimes\""));
        assert!(e.starts_with("l.toml:6:14: [listener] never_seen = \"sometimes\": expected \"wait\""), "{e}");
        let e = err(&OK.replace("[\"true\"]", "[]"));
        assert!(e.starts_with("l.toml:9:11: [gate] command = []: expected the argv"), "{e}");
    }

    #[test]
    fn a_spare_lists_its_primaries_and_never_itself() {
        let spare = |watch: &str| {
            LinuxListenerConfig::parse(
                Path::new("l.toml"),
                &OK.replace("node_id = 1", &format!("node_id = 4\nrole = \"spare\"\nwatch = {watch}")),
            )
        };
        assert_eq!(spare("\"0-3\"").unwrap().watch, Some(NodeSet(0b1111)));
        assert_eq!(spare("[0, 2]").unwrap().watch, Some(NodeSet(0b101)));
        assert_eq!(spare("[0, 2]").unwrap().listener.primary_node, 0);
        let e = spare("\"0-4\"").unwrap_err().to_string();
        assert!(
            e.starts_with("l.toml:6:9: [listener] watch = \"0-4\": names this spare's own slot (node_id = 4)"),
            "{e}"
        );
        let e = spare("\"3-1\"").unwrap_err().to_string();
        assert!(e.contains("[listener] watch = \"3-1\": a range must run from a lower to a higher id"), "{e}");
        let e = spare("[40]").unwrap_err().to_string();
        assert!(e.contains("node ids are 0..=31"), "{e}");
        let e = err(&OK.replace("node_id = 1", "node_id = 4\nrole = \"spare\""));
        assert!(e.contains("[listener] role = \"spare\": a spare needs watch"), "{e}");
        let e = err(&OK.replace("node_id = 1", "node_id = 4\nwatch = \"0-2\""));
        assert!(e.contains("[listener] watch = \"0-2\": applies only with role = \"spare\""), "{e}");
        let e = err(&OK.replace("node_id = 1", "node_id = 4\nrole = \"standby\""));
        assert!(e.contains("expected \"secondary\" (one primary) or \"spare\""), "{e}");
    }

    #[test]
    fn the_agents_node_id_is_refused_here() {
        let e = err(&OK.replace("id = 0xC0FFEE", "id = 0xC0FFEE\nnode_id = 0"));
        assert!(e.starts_with("l.toml:3:11: [cluster] node_id = 0: is the agent's"), "{e}");
    }
}
