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
