//! Invalid configurations: non-zero exit and a message naming the problem and the fix.

mod support;

use support::disk::*;
use support::*;

fn refuse(args: &[&str], must_contain: &[&str]) {
    let o = run(args);
    assert!(!o.status.success(), "{args:?} succeeded:\n{}", stdout(&o));
    let err = stderr(&o);
    for m in must_contain {
        assert!(err.contains(m), "{args:?}: message lacks {m:?}:\n{err}");
    }
}

/// The agent itself and `check-config` must both refuse.
fn refuse_agent_config(cfg: &std::path::Path, must_contain: &[&str]) {
    let p = cfg.to_str().unwrap();
    refuse(&["check-config", p], must_contain);
    refuse(&["agent", "--config", p], must_contain);
}

#[test]
fn a_missing_key_is_named() {
    let c = Cluster::new(Timing::default());
    let cfg = c.agent_config();
    let text = std::fs::read_to_string(&cfg).unwrap().replace("node_id = 0\n", "");
    std::fs::write(&cfg, text).unwrap();
    refuse_agent_config(&cfg, &["agent.toml", "node_id"]);
}

#[test]
fn a_misspelt_key_is_named() {
    let c = Cluster::new(Timing::default());
    let cfg = c.agent_config();
    let text = std::fs::read_to_string(&cfg).unwrap().replace("write_deadline_ms", "write_dedline_ms");
    std::fs::write(&cfg, text).unwrap();
    refuse_agent_config(&cfg, &["agent.toml", "write_dedline_ms"]);
}

#[test]
fn timeouts_that_break_the_fencing_bound_are_refused_with_the_numbers_to_change() {
    // interval 100 + write deadline 300 + fence 100 = 500 → the secondary needs ≥ 1000 ms.
    let c = Cluster::new(Timing { timeout_ms: 800, ..Timing::default() });
    let cfg = c.agent_config();
    refuse_agent_config(&cfg, &["timeout (800 ms)", "1000 ms", "write_deadline", "raise the timeout"]);
}

#[test]
fn a_device_that_does_not_exist_is_named() {
    let c = Cluster::new(Timing::default());
    let cfg = c.agent_config();
    let text = std::fs::read_to_string(&cfg).unwrap().replace(c.disk.to_str().unwrap(), "/nonexistent/rearguard-disk");
    std::fs::write(&cfg, text).unwrap();
    refuse_agent_config(&cfg, &["/nonexistent/rearguard-disk", "no such file"]);
    let l = c.listener_config();
    let text = std::fs::read_to_string(&l).unwrap().replace(c.disk.to_str().unwrap(), "/nonexistent/rearguard-disk");
    std::fs::write(&l, text).unwrap();
    refuse(&["listener", "--config", l.to_str().unwrap()], &["/nonexistent/rearguard-disk"]);
}

#[test]
fn a_disk_never_initialised_is_named_with_the_command_that_fixes_it() {
    let c = Cluster::new(Timing::default());
    std::fs::write(&c.disk, vec![0u8; 1 << 20]).unwrap();
    let cfg = c.agent_config();
    refuse_agent_config(&cfg, &["disk.img", "rearguard disk init"]);
    let l = c.listener_config();
    refuse(&["check-config", l.to_str().unwrap()], &["disk.img", "rearguard disk init"]);
    refuse(&["listener", "--config", l.to_str().unwrap()], &["disk.img", "rearguard disk init"]);
    refuse(&["disk", "dump", c.disk.to_str().unwrap()], &["rearguard disk init"]);
}

#[test]
fn a_wrong_cluster_id_is_named() {
    let c = Cluster::new(Timing::default());
    let cfg = c.agent_config();
    let text = std::fs::read_to_string(&cfg).unwrap().replace(&format!("id = {CLUSTER:#x}"), "id = 0x1234");
    std::fs::write(&cfg, text).unwrap();
    refuse_agent_config(&cfg, &["cluster", "0x1234", "0xc0ffee"]);
}

#[test]
fn a_bad_listener_value_is_named() {
    let c = Cluster::new(Timing::default());
    let l = c.listener_config();
    let text = std::fs::read_to_string(&l).unwrap().replace("timeout_ms = 1000", "timeout_ms = 5");
    std::fs::write(&l, text).unwrap();
    refuse(&["check-config", l.to_str().unwrap()], &["listener.toml", "timeout_ms"]);
    let text =
        std::fs::read_to_string(&l).unwrap().replace("timeout_ms = 5", "timeout_ms = 1000\nnever_seen = \"sometimes\"");
    std::fs::write(&l, text).unwrap();
    refuse(&["check-config", l.to_str().unwrap()], &["never_seen", "release-after"]);
}

#[test]
fn disk_init_refuses_to_overwrite_without_force() {
    let c = Cluster::new(Timing::default());
    refuse(&["disk", "init", c.disk.to_str().unwrap(), "--cluster-id", "7"], &["already holds", "--force"]);
    std::fs::write(&c.disk, b"\x7fELF this is somebody's data".repeat(40000)).unwrap();
    refuse(&["disk", "init", c.disk.to_str().unwrap(), "--cluster-id", "7"], &["other data", "--force"]);
}

// Bad input in the file itself: every message starts `file:line:column:` and names the key.

/// A small valid pair config; line numbers below count from its first line.
const PAIR: &str = r#"[cluster]
id = 0xC0FFEE
node_id = 1
key = "00112233445566778899aabbccddeeff"

[pair]
priority = 200

[[pair.vip]]
address = "10.200.0.100/24"
interface = "lo"

[[pair.vip]]
address = "fd00::100/64"
interface = "lo"

[[pair.check]]
kind = "ping"
target = "10.200.0.1"
"#;

/// Writes `text` as `name` in a fresh directory; the directory lives as long as the result.
fn write(name: &str, text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    (dir, p.to_str().unwrap().to_string())
}

/// check-config refuses `text`, and its message starts `name:LINE:` and holds every `must`.
fn refuse_file(name: &str, text: &str, line: &str, must_contain: &[&str]) -> String {
    let (_dir, p) = write(name, text);
    let o = run(&["check-config", &p]);
    assert!(!o.status.success(), "{name} passed check-config:\n{}", stdout(&o));
    let err = stderr(&o);
    assert!(err.contains(&format!("{name}:{line}")), "message lacks {name}:{line}:\n{err}");
    for m in must_contain {
        assert!(err.contains(m), "message lacks {m:?}:\n{err}");
    }
    err
}

#[test]
fn the_pair_config_used_below_passes() {
    let (_dir, p) = write("pair.toml", PAIR);
    let o = run(&["check-config", &p]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("pair config ok"), "{}", stdout(&o));
}

#[test]
fn a_misspelt_section_in_a_pair_config_is_refused_with_the_closest_name() {
    refuse_file(
        "pair.toml",
        &format!("{PAIR}\n[serail]\npath = \"/dev/ttyS1\"\n"),
        "21:2:",
        &["[serail]", "unknown section", "did you mean [serial]?"],
    );
}

#[test]
fn an_agent_section_in_a_pair_config_is_refused() {
    refuse_file(
        "pair.toml",
        &format!("{PAIR}\n[fence]\nmethod = \"watchdog\"\n"),
        "21:2:",
        &["[fence] belongs to an agent config", "[pair] on line 6 makes this a pair config", "remove [fence]"],
    );
}

#[test]
fn a_misspelt_pair_key_is_refused_with_the_closest_name() {
    refuse_file(
        "pair.toml",
        &PAIR.replace("priority = 200", "priorty = 200"),
        "7:1:",
        &["[pair] priorty", "did you mean `priority`?", "preempt"],
    );
}

#[test]
fn a_check_key_that_does_not_apply_to_its_kind_is_refused() {
    refuse_file(
        "pair.toml",
        &format!("{PAIR}unit = \"nftables.service\"\n"),
        "20:8:",
        &["[[pair.check]] #1 unit", "does not apply to kind = \"ping\"", "target, timeout_ms"],
    );
}

#[test]
fn a_pair_priority_out_of_range_points_at_the_value() {
    refuse_file(
        "pair.toml",
        &PAIR.replace("priority = 200", "priority = 0"),
        "7:12:",
        &["[pair] priority = 0", "expected 1..=255"],
    );
}

#[test]
fn a_vmac_id_out_of_range_names_the_key_and_the_range() {
    let with_vmac = PAIR.replacen("interface = \"lo\"\n", "interface = \"lo\"\nvmac = true\n", 1);
    for bad in ["0", "256"] {
        let text = with_vmac.replace("priority = 200", &format!("priority = 200\nvmac_id = {bad}"));
        let err = refuse_file(
            "pair.toml",
            &text,
            "8:11:",
            &[&format!("[pair] vmac_id = {bad}"), "expected 1..=255", "00:00:5e:00:01:ID"],
        );
        // The agent refuses the same file before touching anything.
        let (_dir, p) = write("pair.toml", &text);
        let o = run(&["agent", "--config", &p]);
        assert!(!o.status.success() && stderr(&o).contains("expected 1..=255"), "{err}\n{}", stderr(&o));
    }
    refuse_file("pair.toml", &with_vmac, "6:1:", &["[pair] vmac_id: missing", "a VIP has vmac = true"]);
}

#[test]
fn a_bad_address_names_which_vip() {
    refuse_file(
        "pair.toml",
        &PAIR.replace("fd00::100/64", "fd00::100/129"),
        "14:11:",
        &["[[pair.vip]] #2 address", "prefix /129", "/0../128"],
    );
}

#[test]
fn a_wrong_type_names_the_key_and_what_was_expected() {
    let c = Cluster::new(Timing::default());
    let text =
        std::fs::read_to_string(c.agent_config()).unwrap().replace("interval_ms = 100", "interval_ms = \"fast\"");
    refuse_file("agent.toml", &text, "6:15:", &["[disk] interval_ms = \"fast\"", "expected a whole number"]);
}

#[test]
fn a_toml_syntax_error_names_the_line() {
    let c = Cluster::new(Timing::default());
    let text = std::fs::read_to_string(c.agent_config()).unwrap().replace("node_id = 0", "node_id 0");
    refuse_file("agent.toml", &text, "3:9:", &["TOML syntax", "`node_id 0`", "key = value"]);
}

#[test]
fn a_misspelt_agent_section_is_refused_with_the_closest_name() {
    let c = Cluster::new(Timing::default());
    let text = std::fs::read_to_string(c.agent_config()).unwrap().replace("[fence]", "[fense]");
    refuse_file("agent.toml", &text, "8:2:", &["[fense]", "did you mean [fence]?"]);
}

#[test]
fn a_key_of_the_other_fence_method_is_refused() {
    let c = Cluster::new(Timing::default());
    let text = std::fs::read_to_string(c.agent_config()).unwrap() + "timeout_s = 1\n";
    refuse_file("agent.toml", &text, "12:13:", &["[fence] timeout_s", "does not apply to method = \"command\""]);
}

#[test]
fn a_misspelt_listener_key_is_refused_with_the_closest_name() {
    let c = Cluster::new(Timing::default());
    let text = std::fs::read_to_string(c.listener_config()).unwrap().replace("poll_ms", "pol_ms");
    refuse_file("listener.toml", &text, "7:1:", &["[listener] pol_ms", "did you mean `poll_ms`?", "timeout_ms"]);
}

#[test]
fn a_file_of_no_known_kind_says_which_sections_select_which() {
    refuse_file(
        "x.toml",
        "[cluster]\nid = 1\n",
        "1:1:",
        &["cannot tell", "[pair] makes a pair config", "[listener] or [gate]", "[fence] or [serial]"],
    );
}

#[test]
fn a_listener_config_given_to_the_agent_is_named_as_such() {
    let c = Cluster::new(Timing::default());
    let l = c.listener_config();
    refuse(
        &["agent", "--config", l.to_str().unwrap()],
        &[
            "listener.toml:3:2:",
            "[listener] makes this a listener config",
            "`rearguard agent` needs an agent config",
            "rearguard listener",
        ],
    );
}

#[test]
fn a_missing_file_says_so_and_where_to_start() {
    refuse(
        &["check-config", "/nonexistent/rearguard.toml"],
        &["/nonexistent/rearguard.toml", "no such file", "examples/agent.toml"],
    );
}
