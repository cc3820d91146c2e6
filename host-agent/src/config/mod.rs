//! Configuration files: reading one, telling which kind it is, and one format for every error.
//!
//! Each kind has its module — [`agent`] (cold-standby primary), [`pair`] (firewall pair); the
//! Linux listener's lives with its board (`rearguard_board_linux::config`). A module checks
//! its keys against its section structs, deserializes with serde, then resolves ranges and
//! cross-field rules. Every error, whichever step finds it, reads
//!
//! ```text
//! pair.toml:12:12: [pair] priority = 0: expected 1..=255 (higher is preferred); set ...
//! ```
//!
//! because [`Source`] keeps the spans of the text: an error found after deserializing still
//! points at the line of the key it is about. Unknown keys are refused with the valid choices
//! (a typo must not silently fall back to a default).

pub mod agent;
pub mod pair;
mod tree;

use rearguard_shared::integrity::Key;
use serde::de::{DeserializeOwned, Visitor};
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};
use tree::{Entry, Node, Shape};

/// A place in a config file, both counted from 1 (columns in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// A config file that cannot be used: where, which key, what was expected and the fix.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    /// None only when there is no text to point into (the file cannot be read).
    pub at: Option<Position>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.at {
            Some(p) => write!(f, "{}:{}:{}: {}", self.file.display(), p.line, p.column, self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// `[cluster]`: the same section in every kind of config.
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

/// `[cluster] key`, parsed.
pub fn parse_key(src: &Source, hex: Option<&str>) -> Result<Option<Key>, ConfigError> {
    hex.map(|h| {
        Key::from_hex(h).map_err(|e| src.error("cluster.key", format!("{e}: generate one with `openssl rand -hex 32`")))
    })
    .transpose()
}

/// The keys a serde struct accepts, read from its derived `Deserialize`, so that the choices an
/// error offers are the struct's own and cannot drift from it.
pub fn fields<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Grab<'a>(&'a mut &'static [&'static str]);
    impl<'de> serde::Deserializer<'de> for Grab<'_> {
        type Error = serde::de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(serde::de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(serde::de::Error::custom("fields read"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
            unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }
    let mut found: &'static [&'static str] = &[];
    let _ = T::deserialize(Grab(&mut found));
    found
}

/// The closest of `choices` to a misspelt `name`, if any is close enough to be what was meant.
pub fn did_you_mean<'a>(name: &str, choices: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    choices
        .into_iter()
        .map(|c| (strsim::jaro_winkler(name, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// Which kind of config a file is. The file's sections decide; see [`ConfigKind::of`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigKind {
    /// Cold standby: the primary's heartbeat agent (`rearguard agent`).
    Agent,
    /// Firewall pair: both nodes' agent (`rearguard agent` with a `[pair]` section).
    Pair,
    /// The standby listener as a Linux process (`rearguard listener`).
    Listener,
}

impl ConfigKind {
    /// When sections of several kinds are present, the first kind here is what the file is
    /// taken for, and the other sections are refused as belonging elsewhere.
    const ALL: [ConfigKind; 3] = [ConfigKind::Pair, ConfigKind::Listener, ConfigKind::Agent];

    /// Every section a file of this kind may have (each module's file struct has exactly these).
    pub fn sections(self) -> &'static [&'static str] {
        match self {
            ConfigKind::Agent => &["cluster", "disk", "fence", "serial"],
            ConfigKind::Pair => &["cluster", "pair"],
            ConfigKind::Listener => &["cluster", "listener", "disk", "gate"],
        }
    }

    /// The sections that make a file this kind (`[cluster]` and `[disk]` are shared).
    pub fn selected_by(self) -> &'static [&'static str] {
        match self {
            ConfigKind::Agent => &["fence", "serial"],
            ConfigKind::Pair => &["pair"],
            ConfigKind::Listener => &["listener", "gate"],
        }
    }

    /// The commented example to start from.
    pub fn example(self) -> &'static str {
        match self {
            ConfigKind::Agent => "examples/agent.toml",
            ConfigKind::Pair => "examples/pair.toml",
            ConfigKind::Listener => "examples/listener.toml",
        }
    }

    /// The command that runs a file of this kind.
    pub fn command(self) -> &'static str {
        match self {
            ConfigKind::Agent | ConfigKind::Pair => "rearguard agent",
            ConfigKind::Listener => "rearguard listener",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ConfigKind::Agent => "an agent config (cold-standby primary)",
            ConfigKind::Pair => "a pair config (firewall pair)",
            ConfigKind::Listener => "a listener config (standby listener)",
        }
    }

    /// `[cluster], [pair]`
    fn listed(self) -> String {
        let s: Vec<String> = self.sections().iter().map(|s| format!("[{s}]")).collect();
        s.join(", ")
    }

    /// The one place that decides which kind a file is: `[pair]` makes a pair config,
    /// `[listener]` or `[gate]` a listener config, `[fence]` or `[serial]` an agent config.
    /// A section that is not one of the kind's is refused, naming the kind it belongs to, or
    /// offering the closest section name when it belongs to none.
    pub fn of(src: &Source) -> Result<ConfigKind, ConfigError> {
        Self::told(src).map(|(kind, _)| kind)
    }

    /// The kind, and the section that made it so.
    fn told(src: &Source) -> Result<(ConfigKind, &Entry), ConfigError> {
        let top = src.tree.entries();
        let selector = |k: ConfigKind| top.iter().find(|e| k.selected_by().contains(&e.name.as_str()));
        let Some((kind, by)) = Self::ALL.into_iter().find_map(|k| selector(k).map(|e| (k, e))) else {
            if let Some(e) = top.iter().find(|e| !Self::ALL.iter().any(|k| k.sections().contains(&e.name.as_str()))) {
                return Err(src.unknown_section(e, None));
            }
            let how: Vec<String> = Self::ALL
                .iter()
                .map(|k| {
                    let s: Vec<String> = k.selected_by().iter().map(|s| format!("[{s}]")).collect();
                    format!("{} makes {}", s.join(" or "), k.name())
                })
                .collect();
            return Err(src.at(
                0,
                format!(
                    "cannot tell which kind of config this is: {}; start from {}, {} or {}",
                    how.join(", "),
                    ConfigKind::Agent.example(),
                    ConfigKind::Pair.example(),
                    ConfigKind::Listener.example()
                ),
            ));
        };
        if let Some(e) = top.iter().find(|e| !kind.sections().contains(&e.name.as_str())) {
            return Err(src.unknown_section(e, Some((kind, by))));
        }
        Ok((kind, by))
    }

    /// Refuses a file of another kind (e.g. a pair config given to `rearguard listener`).
    pub fn expect(self, src: &Source) -> Result<(), ConfigError> {
        let (kind, by) = Self::told(src)?;
        if kind == self {
            return Ok(());
        }
        Err(src.at(
            by.key.start,
            format!(
                "[{}] makes this {}, but `{}` needs {}: run this file with `{} --config`, or start from {}",
                by.name,
                kind.name(),
                self.command(),
                self.name(),
                kind.command(),
                self.example()
            ),
        ))
    }
}

/// A config file's text, parsed, with the span of every key and value.
pub struct Source {
    file: PathBuf,
    text: String,
    tree: Node,
}

impl Source {
    pub fn read(file: &Path) -> Result<Source, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|e| ConfigError {
            file: file.to_path_buf(),
            at: None,
            message: match e.kind() {
                std::io::ErrorKind::NotFound => format!(
                    "no such file: create it from {}, {} or {} (commented), then check it with `rearguard check-config {}`",
                    ConfigKind::Agent.example(),
                    ConfigKind::Pair.example(),
                    ConfigKind::Listener.example(),
                    file.display()
                ),
                _ => format!("cannot read: {e}: check the path and its permissions"),
            },
        })?;
        Self::parse(file, &text)
    }

    /// TOML syntax errors are found here; the rest when a module deserializes and resolves.
    pub fn parse(file: &Path, text: &str) -> Result<Source, ConfigError> {
        let mut src = Source { file: file.to_path_buf(), text: text.to_string(), tree: Node::leaf(None) };
        let doc = toml_edit::ImDocument::parse(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            let line = text[line_start(text, offset)..].lines().next().unwrap_or("").trim();
            src.at(
                offset,
                format!(
                    "TOML syntax: {} in `{line}`: write `key = value` (text in double quotes) under a [section] header",
                    e.message().trim().replace('\n', ": ")
                ),
            )
        })?;
        src.tree = Node::of_item(doc.as_item());
        Ok(src)
    }

    pub fn file(&self) -> &Path {
        &self.file
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// serde's errors (a wrong type, a missing key) located and named like every other.
    pub fn deserialize<T: DeserializeOwned>(&self, kind: ConfigKind) -> Result<T, ConfigError> {
        toml::from_str(&self.text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            let path = self.tree.path_at(offset);
            let msg = plain(e.message());
            match msg.strip_prefix("missing field `").and_then(|f| f.strip_suffix('`')) {
                Some(field) if path.is_empty() => {
                    self.error(field, format!("missing section: add [{field}] (see {})", kind.example()))
                }
                Some(field) => self.error(
                    &format!("{path}.{field}"),
                    format!("missing: add `{field} = …` under {} (see {})", show_path(&path), kind.example()),
                ),
                None => self.error(&path, format!("{msg} (see {} for what this key takes)", kind.example())),
            }
        })
    }

    /// An error about the key at `path` (`"pair.priority"`, `"pair.vip.1.address"`: arrays of
    /// tables are indexed from 0 here and shown from #1). It points at the key's value, or,
    /// for a missing key, at the section that should hold it, and quotes the value.
    pub fn error(&self, path: &str, problem: impl fmt::Display) -> ConfigError {
        let mut node = &self.tree;
        let mut offset = 0;
        let mut found = true;
        for seg in path.split('.').filter(|s| !s.is_empty()) {
            match node.child(seg) {
                Some((key, child)) => {
                    offset = child.span.as_ref().or(key.as_ref()).map_or(offset, |s| s.start);
                    node = child;
                }
                None => {
                    found = false;
                    break;
                }
            }
        }
        let value = match (&node.shape, &node.span) {
            // A key is a secret: an error must not copy it to a terminal or a log.
            (_, _) if path == "cluster.key" => " = \"…\"".to_string(),
            (Shape::Value, Some(s)) if found => format!(" = {}", short(&self.text[s.clone()])),
            _ => String::new(),
        };
        self.at(offset, format!("{}{value}: {problem}", show_path(path)))
    }

    /// The keys of the table at `path`, in the file's order.
    pub fn keys(&self, path: &str) -> Vec<&str> {
        self.tree.find(path).map(|n| n.entries().iter().map(|e| e.name.as_str()).collect()).unwrap_or_default()
    }

    /// Refuses a key of the table at `path` (or of each table of the array of tables there)
    /// that is not one of `allowed`, offering the closest and listing them all.
    pub fn check_keys(&self, path: &str, allowed: &[&str]) -> Result<(), ConfigError> {
        let tables: Vec<(String, &Node)> = match self.tree.find(path) {
            Some(Node { shape: Shape::Array(items), .. }) => {
                items.iter().enumerate().map(|(i, t)| (format!("{path}.{i}"), t)).collect()
            }
            Some(n) => vec![(path.to_string(), n)],
            None => Vec::new(),
        };
        for (table, node) in tables {
            if let Some(e) = node.entries().iter().find(|e| !allowed.contains(&e.name.as_str())) {
                let hint = did_you_mean(&e.name, allowed.iter().copied())
                    .map(|m| format!("did you mean `{m}`? "))
                    .unwrap_or_default();
                return Err(self.at(
                    e.key.start,
                    format!(
                        "{}: unknown key; {hint}{} takes {}",
                        show_path(&format!("{table}.{}", e.name)),
                        show_path(&table),
                        allowed.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Refuses a key of the table at `table` that its `selector` key's `choice` does not read
    /// (e.g. `timeout_s` under `method = "command"`), rather than ignoring it. `own` are the
    /// keys this choice reads; `common` those every choice reads besides the selector.
    pub fn check_choice_keys(
        &self,
        table: &str,
        selector: &str,
        choice: &str,
        own: &[&str],
        common: &[&str],
    ) -> Result<(), ConfigError> {
        let stray = self.keys(table).into_iter().find(|k| *k != selector && !common.contains(k) && !own.contains(k));
        let Some(key) = stray else { return Ok(()) };
        let every = if common.is_empty() {
            String::new()
        } else {
            format!(" (and {} whatever the {selector})", common.join(", "))
        };
        Err(self.error(
            &format!("{table}.{key}"),
            format!(
                "does not apply to {selector} = \"{choice}\", which takes {}{every}: remove it, or change {selector}",
                own.join(", ")
            ),
        ))
    }

    /// A top-level name that is not a section of `kind` (or, with no kind told, of any kind).
    fn unknown_section(&self, e: &Entry, kind: Option<(ConfigKind, &Entry)>) -> ConfigError {
        let what = match kind {
            Some((kind, by)) => format!(
                "[{}] on line {} makes this {}, which has {}",
                by.name,
                self.position(by.key.start).line,
                kind.name(),
                kind.listed()
            ),
            None => Self::kinds(),
        };
        if !matches!(e.node.shape, Shape::Table(_) | Shape::Array(_)) {
            return self.at(
                e.key.start,
                format!("{}: a key outside any section: move it under its [section]; {what}", e.name),
            );
        }
        let owners = |name: &str| -> Vec<&'static str> {
            ConfigKind::ALL.iter().filter(|k| k.sections().contains(&name)).map(|k| k.name()).collect()
        };
        let belongs = owners(&e.name);
        if !belongs.is_empty() {
            return self.at(
                e.key.start,
                format!("[{}] belongs to {}, not here: {what}; remove [{}]", e.name, belongs.join(" or "), e.name),
            );
        }
        let all = ConfigKind::ALL.iter().flat_map(|k| k.sections().iter().copied());
        let hint = match did_you_mean(&e.name, all) {
            Some(m) if kind.is_none_or(|(k, _)| k.sections().contains(&m)) => format!("did you mean [{m}]? "),
            Some(m) => format!("did you mean [{m}]? [{m}] belongs to {}, and ", owners(m).join(" or ")),
            None => String::new(),
        };
        self.at(e.key.start, format!("[{}]: unknown section; {hint}{what}", e.name))
    }

    fn kinds() -> String {
        let all: Vec<String> = ConfigKind::ALL.iter().map(|k| format!("{} has {}", k.name(), k.listed())).collect();
        all.join("; ")
    }

    fn position(&self, offset: usize) -> Position {
        let offset = offset.min(self.text.len());
        let start = line_start(&self.text, offset);
        Position {
            line: self.text[..offset].matches('\n').count() + 1,
            column: self.text[start..offset].chars().count() + 1,
        }
    }

    fn at(&self, offset: usize, message: String) -> ConfigError {
        ConfigError { file: self.file.clone(), at: Some(self.position(offset)), message }
    }
}

fn line_start(text: &str, offset: usize) -> usize {
    text[..offset].rfind('\n').map_or(0, |i| i + 1)
}

/// `pair.vip.1.address` → `[[pair.vip]] #2 address`; `pair.priority` → `[pair] priority`.
fn show_path(path: &str) -> String {
    let segs: Vec<&str> = path.split('.').filter(|s| !s.is_empty()).collect();
    if let Some(i) = segs.iter().rposition(|s| s.parse::<usize>().is_ok()) {
        let n: usize = segs[i].parse().unwrap_or(0);
        let rest = segs[i + 1..].join(".");
        let sep = if rest.is_empty() { "" } else { " " };
        return format!("[[{}]] #{}{sep}{rest}", segs[..i].join("."), n + 1);
    }
    match segs.split_last() {
        None => "the file".into(),
        Some((only, [])) => format!("[{only}]"),
        Some((key, table)) => format!("[{}] {key}", table.join(".")),
    }
}

/// A value as written, cut short when long.
fn short(raw: &str) -> String {
    let raw = raw.trim();
    if raw.chars().count() <= 40 {
        return raw.to_string();
    }
    format!("{}…", raw.chars().take(39).collect::<String>())
}

/// serde's type names, as a user reads them.
fn plain(message: &str) -> String {
    let mut m = message.trim().replace('\n', ": ");
    for (rust, user) in [
        ("expected u8", "expected a whole number 0..=255"),
        ("expected u16", "expected a whole number 0..=65535"),
        ("expected u32", "expected a whole number 0..=4294967295"),
        ("expected u64", "expected a whole number ≥ 0"),
        ("expected i64", "expected a whole number"),
        ("expected a boolean", "expected true or false"),
    ] {
        if m.ends_with(rust) {
            m = m.replace(rust, user);
        }
    }
    if let Some(i) = m.find("expected struct ") {
        m.replace_range(i.., "expected a table ([section] or { key = value, … })");
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(text: &str) -> Source {
        Source::parse(Path::new("c.toml"), text).unwrap()
    }

    #[test]
    fn an_error_points_at_the_value_of_its_key() {
        let s = src(
            "[cluster]\nid = 1\n\n[pair]\npriority = 0\n[[pair.vip]]\naddress = \"a\"\n[[pair.vip]]\naddress = \"b\"\n",
        );
        let e = s.error("pair.priority", "expected 1..=255");
        assert_eq!(e.to_string(), "c.toml:5:12: [pair] priority = 0: expected 1..=255");
        let e = s.error("pair.vip.1.address", "not an IP address");
        assert_eq!(e.to_string(), "c.toml:9:11: [[pair.vip]] #2 address = \"b\": not an IP address");
    }

    #[test]
    fn a_missing_key_points_at_its_section() {
        let s = src("[cluster]\nid = 1\n\n[disk]\ndevice = \"x\"\n");
        let e = s.error("disk.interval_ms", "missing");
        assert_eq!(e.to_string(), "c.toml:4:1: [disk] interval_ms: missing");
    }

    #[test]
    fn the_key_is_never_quoted() {
        let s = src("[cluster]\nid = 1\nkey = \"secret00\"\n");
        let e = parse_key(&s, Some("secret00")).unwrap_err().to_string();
        assert!(e.starts_with("c.toml:3:7: [cluster] key = \"…\":") && !e.contains("secret00"), "{e}");
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let e = Source::parse(Path::new("c.toml"), "[cluster]\nid 1\n").err().unwrap().to_string();
        assert!(e.starts_with("c.toml:2:4: TOML syntax:") && e.contains("`id 1`"), "{e}");
    }

    #[test]
    fn serde_errors_name_the_key_and_line() {
        #[derive(Deserialize, Debug)]
        #[allow(dead_code)]
        struct F {
            cluster: ClusterSection,
        }
        let e = src("[cluster]\nid = 1\nnode_id = 300\n").deserialize::<F>(ConfigKind::Pair).unwrap_err().to_string();
        assert!(e.starts_with("c.toml:3:11: [cluster] node_id = 300: invalid value"), "{e}");
        assert!(e.contains("0..=255"), "{e}");
        let e = src("[cluster]\nnode_id = 3\n").deserialize::<F>(ConfigKind::Pair).unwrap_err().to_string();
        assert!(e.starts_with("c.toml:1:1: [cluster] id: missing"), "{e}");
    }

    #[test]
    fn the_kind_is_told_by_its_sections() {
        let kind = |t: &str| ConfigKind::of(&src(t));
        assert_eq!(kind("[cluster]\n[pair]\n").unwrap(), ConfigKind::Pair);
        assert_eq!(kind("[cluster]\n[[pair.vip]]\n").unwrap(), ConfigKind::Pair);
        assert_eq!(kind("[cluster]\n[listener]\n[disk]\n").unwrap(), ConfigKind::Listener);
        assert_eq!(kind("[cluster]\n[disk]\n[fence]\n").unwrap(), ConfigKind::Agent);
        let e = kind("[cluster]\n[disk]\n").unwrap_err().to_string();
        assert!(e.contains("cannot tell") && e.contains("[pair] makes a pair config"), "{e}");
        let e = kind("[cluster]\n[disk]\n[fense]\n").unwrap_err().to_string();
        assert!(e.starts_with("c.toml:3:2: [fense]: unknown section; did you mean [fence]?"), "{e}");
        let e = kind("[cluster]\n[pair]\n[fence]\n").unwrap_err().to_string();
        assert!(e.starts_with("c.toml:3:2: [fence] belongs to an agent config"), "{e}");
        let e = kind("[cluster]\n[pair]\n[serail]\n").unwrap_err().to_string();
        assert!(e.starts_with("c.toml:3:2: [serail]: unknown section; did you mean [serial]?"), "{e}");
    }

    #[test]
    fn fields_come_from_the_struct() {
        assert_eq!(fields::<ClusterSection>(), &["id", "node_id", "key"]);
    }
}
