//! The agent and listener on real block devices (loop devices, root only): a 4Kn device,
//! and a write that really hangs (a frozen filesystem), which must fence the primary before
//! the secondary's timeout.
//!
//! These need root. They fail (never skip) without it: run the suite through
//! `sudo scripts/test.sh`.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};
use support::disk::*;
use support::*;

fn must(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e} — run scripts/setup.sh as root"));
    assert!(o.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn require_root() {
    assert!(euid() == 0, "block-device tests need root: run `sudo scripts/test.sh`");
}

#[test]
fn takeover_on_a_4kn_block_device() {
    require_root();
    let lo = Loop::new(8 << 20, 4096);
    let c = Cluster::on_device(Timing::default(), &lo.dev);
    assert_eq!(c.dump_json()["header"]["sector_size"], 4096);
    let (mut agent, mut listener) = c.start_watched();
    assert_eq!(c.dump_json()["slots"][0]["status"], "alive");
    let (killed, at, _) = kill_primary(&mut agent, &mut listener);
    println!("4Kn loop device: released {} ms after SIGKILL", at.duration_since(killed).as_millis());
    assert_eq!(c.dump_json()["mailboxes"][0]["message"], "takeover-claim");
}

/// ext4 on a loop device, mounted; unmounted and detached on drop.
struct Ext4 {
    mnt: tempfile::TempDir,
    _lo: Loop,
}

impl Ext4 {
    fn new() -> Ext4 {
        let lo = Loop::new(64 << 20, 512);
        must(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&lo.dev));
        let mnt = tempfile::tempdir().unwrap();
        must(Command::new("mount").arg(&lo.dev).arg(mnt.path()));
        Ext4 { mnt, _lo: lo }
    }
}

impl Drop for Ext4 {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.mnt.path()).status();
    }
}

/// A frozen filesystem, thawed on drop. Declared after the processes that use it, so it is
/// dropped (thawed) first: a process blocked in a write to a frozen filesystem cannot be
/// reaped until the thaw.
struct Freeze(std::path::PathBuf);

impl Freeze {
    fn new(mnt: &std::path::Path) -> Freeze {
        must(Command::new("fsfreeze").arg("-f").arg(mnt));
        Freeze(mnt.to_path_buf())
    }
}

impl Drop for Freeze {
    fn drop(&mut self) {
        let _ = Command::new("fsfreeze").arg("-u").arg(&self.0).status();
    }
}

#[test]
fn a_hung_heartbeat_write_fences_the_primary_before_the_secondary_releases() {
    require_root();
    let fs = Ext4::new();
    let img = fs.mnt.path().join("shared.img");
    std::fs::File::create(&img).unwrap().set_len(1 << 20).unwrap();
    let c = Cluster::on_device(Timing::default(), &img);
    let t = c.timing;
    let (mut agent, mut listener) = c.start_watched();
    // Writes to a frozen filesystem block until it is thawed: the next heartbeat write hangs.
    let frozen_at = Instant::now();
    let freeze = Freeze::new(fs.mnt.path());
    let deadline = frozen_at + Duration::from_secs(5);
    while !c.fenced() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    let fenced_after = frozen_at.elapsed().as_millis() as u64;
    assert!(c.fenced(), "the agent did not run its fence command within 5 s of its disk hanging");
    println!(
        "primary fenced {fenced_after} ms after its disk froze (limit interval + write deadline = {} ms)",
        t.interval_ms + t.write_deadline_ms
    );
    // Fenced before the secondary's timeout could have expired, whatever it saw last.
    assert!(
        fenced_after < t.timeout_ms,
        "fenced only after {fenced_after} ms; the secondary could already have booted"
    );
    // The disk comes back: the agent's stuck write lands, its pending exit completes (status
    // 4: fenced), and the listener, seeing no more progress, takes over.
    drop(freeze);
    assert_eq!(agent.wait_exit(Duration::from_secs(10)), Some(Some(4)), "agent should exit 4 after fencing");
    listener.wait_line("BOOT RELEASED", Duration::from_secs(10));
}
