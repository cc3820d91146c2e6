//! The controller's console menu, driven through UART0 of the emulated controller: settings
//! survive a power cycle, a corrupt copy falls back to the other one (and says so), bad input
//! is refused, and release asks first.

mod support;
use std::time::Duration;
use support::qemu::*;
use support::*;

const T: Duration = Duration::from_secs(10);

#[test]
fn a_saved_timeout_persists_and_a_corrupt_copy_a_falls_back_to_copy_b() {
    let dir = tempdir();
    let sd = sd_image(dir.path(), "sd.img", Some(1000), Some(&listener_config(1000)));
    {
        let mut q = Qemu::start(dir.path(), &sd);
        q.wait_for("config: copy A (generation 1)", 0, T);
        q.wait_for("rearguard> ", 0, T);
        assert!(q.command("set timeout banana").contains("error: timeout: milliseconds"));
        assert!(q.command("set timeout 1").contains("error: timeout: must be at least twice poll"));
        // Garbage: control characters, non-ASCII, an overlong line. Refused, nothing changes.
        let out = q.command("se\x01t timeout 5\u{e9}00");
        assert!(out.contains("control or non-ASCII"), "{out}");
        let out = q.command(&"x".repeat(300));
        assert!(out.contains("line longer than"), "{out}");
        assert!(q.command("set timeout 2500").contains("ok (draft"));
        let out = q.command("save");
        assert!(out.contains("saved to copy B (generation 2)"), "{out}");
        assert!(out.contains("timeout 2500 ms"), "the listener restarts with the saved timeout: {out}");
    }
    // Power cycle: the saved value is back.
    {
        let mut q = Qemu::start(dir.path(), &sd);
        q.wait_for("config: copy B (generation 2)", 0, T);
        q.wait_for("timeout 2500 ms", 0, T);
        q.wait_for("rearguard> ", 0, T);
        assert!(q.command("show").contains("timeout    2500 ms"));
        assert!(q.command("set timeout 3000").contains("ok"));
        assert!(q.command("save").contains("saved to copy A (generation 3)"));
    }
    // Corrupt copy A (now the newest) by hand: copy B is used, and the console says why.
    let mut rec = read_config_copy(&sd, 0);
    rec[20] ^= 0x5A;
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&sd).unwrap();
        f.write_all_at(&rec, NV_OFFSET).unwrap();
    }
    let mut q = Qemu::start(dir.path(), &sd);
    q.wait_for("config: copy B (generation 2); copy A unusable (CRC mismatch", 0, T);
    q.wait_for("timeout 2500 ms", 0, T);
    q.wait_for("rearguard> ", 0, T);
    // The next save goes over the broken copy, never over the good one.
    assert!(q.command("save").contains("saved to copy A (generation 3)"));
    // Release now asks first; only "yes" releases.
    assert!(q.command("release").contains("type yes to confirm"));
    assert!(q.command("y").contains("cancelled"));
    assert!(q.try_wait_for("BOOT RELEASED", 0, Duration::from_millis(300)).is_none());
    assert!(q.command("release").contains("type yes to confirm"));
    let out = q.command("yes");
    assert!(out.contains("BOOT RELEASED: released by operator"), "{out}");
    let out = q.command("status");
    assert!(out.contains("gate RELEASED"), "{out}");
    assert_stack_within_budget(&out);
    println!("{out}");
}

#[test]
fn save_refuses_a_timeout_that_breaks_the_primarys_budget_and_status_shows_the_margin() {
    let dir = tempdir();
    let sd = sd_image(dir.path(), "sd.img", Some(1500), Some(&listener_config(1500)));
    let mut agent = Agent::start(&agent_config(dir.path(), "agent.toml", &sd, None), None);
    agent.wait_line("primary agent started", T);
    // The disk's timeout lowered under the running agent (it checks it only at start), so the
    // console's timeout is the one in force. The agent needs 2 × (100 + 200 + 100) = 800 ms.
    support::disk::set_disk_timeout(&sd, 300);
    let mut q = Qemu::start(dir.path(), &sd);
    let (_, at) = q.wait_for("fencing budget: interval 100 ms + write_deadline 200 ms + fence time 100 ms", 0, T);
    q.wait_for("bound 800 ms, margin 700 ms", at, T);
    q.wait_for("rearguard> ", 0, T);
    assert!(q.command("set timeout 700").contains("ok (draft"));
    let out = q.command("save");
    assert!(
        out.contains(
            "error: timeout: node 0: the secondary's timeout (700 ms) must be at least 2 × (interval 100 ms + \
             write_deadline 200 ms + fence time 100 ms) = 800 ms; set timeout 800 or more, or lower the primary's \
             interval, write_deadline or fence time; not saved"
        ),
        "{out}"
    );
    let out = q.command("status");
    assert!(out.contains("  primary 0: "), "{out}");
    assert!(out.contains("\n    fencing budget: interval 100 ms + write_deadline 200 ms + fence time 100 ms: bound 800 ms, margin 700 ms"), "{out}");
    let out = q.command("save");
    assert!(out.contains("error: timeout:"), "still refused: {out}");
    assert!(q.command("set timeout 800").contains("ok (draft"));
    let out = q.command("save");
    assert!(out.contains("saved to copy B (generation 2)") && out.contains("timeout 800 ms"), "{out}");
    agent.assert_running();
}
