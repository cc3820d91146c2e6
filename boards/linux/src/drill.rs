//! `rearguard drill --config listener.toml`: proves this listener could take over, and
//! changes nothing. Verdicts go through [`rearguard_host_agent::drill::Report`].
//!
//! | check | passes when |
//! |---|---|
//! | disk reads | the header decodes, belongs to this cluster, has the watched slots |
//! | heartbeat progressing | each watched primary's sequence advances within two intervals |
//! | timing bound | the timeout in force ≥ 2 × (interval + write deadline + fence time) of the primary's heartbeat |
//! | mailbox write path | a test message is acknowledged in the primary's heartbeat within two intervals |
//! | gate path | the gate command exists and is executable (not run); `[gate] gate_test`, if set, exits 0 |
//!
//! A spare runs the primary checks (progress, bound, mailbox) for every primary it watches,
//! one line each, naming the node. The only write is the test message; the mailbox block is then put back byte for byte —
//! unless something else (a real takeover claim) replaced the message meanwhile, which is
//! left alone and reported. A mailbox that holds anything but a test message is not touched.

use crate::config::LinuxListenerConfig;
use crate::{FileNv, ListenerError};
use rearguard_firmware::nv;
use rearguard_host_agent::blockdev::DirectDisk;
use rearguard_host_agent::drill::Report;
use rearguard_shared::disk::{DiskHeader, MailboxMessage, BLOCK};
use rearguard_shared::heartbeat::{self, Heartbeat};
use rearguard_shared::text::Text;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const DISK: &str = "disk reads";
const PROGRESS: &str = "heartbeat progressing";
const BOUND: &str = "timing bound";
const MAILBOX: &str = "mailbox write path";
const GATE: &str = "gate path";

/// Runs every check; `Err` only when the drill itself cannot run (the device cannot be opened).
pub fn run(cfg: &LinuxListenerConfig) -> Result<Report, ListenerError> {
    let mut r = Report::new();
    let listener = running_config(cfg);
    let watched: Vec<u8> = cfg.watch.map_or_else(|| vec![listener.primary_node], |w| w.iter().collect());
    let mut disk = DirectDisk::open(&cfg.device, true)?;
    let mut block = Box::new([0u8; BLOCK]);
    let v = listener.verifier();
    let header = match disk.read_block(0, &mut block).map_err(|e| e.to_string()).and_then(|()| {
        DiskHeader::decode(&block[..]).map_err(|e| e.to_string()).and_then(|h| {
            v.check_cluster(h.cluster_id).map_err(|_| {
                format!(
                    "the disk belongs to cluster {:#x}, this listener to {:#x}: fix [cluster] id",
                    h.cluster_id, v.cluster_id
                )
            })?;
            Ok(h)
        })
    }) {
        Ok(h) => h,
        Err(e) => {
            r.not_ready(DISK, format!("{}: {e}", cfg.device.display()));
            for c in [PROGRESS, BOUND, MAILBOX] {
                r.not_ready(c, "not checked: the disk does not read");
            }
            gate(cfg, &mut r);
            return Ok(r);
        }
    };
    if let Some(&node) = watched.iter().find(|&&n| header.slot_offset(n).is_none()) {
        let fix = if cfg.watch.is_some() { "[listener] watch" } else { "[listener] primary_node" };
        r.not_ready(DISK, format!("node {node} has no slot ({} slots): fix {fix}", header.slot_count));
        for c in [PROGRESS, BOUND, MAILBOX] {
            r.not_ready(c, "not checked: a watched node has no slot");
        }
        gate(cfg, &mut r);
        return Ok(r);
    }
    r.ready(
        DISK,
        format!(
            "{}: cluster {:#x}, {} slots, interval {}, timeout {}",
            cfg.device.display(),
            header.cluster_id,
            header.slot_count,
            header.interval,
            header.timeout
        ),
    );
    for node in watched {
        primary_checks(&mut disk, &header, &listener, node, &mut r)?;
    }
    gate(cfg, &mut r);
    Ok(r)
}

/// Progress, bound and mailbox for one watched primary.
fn primary_checks(
    disk: &mut DirectDisk,
    header: &DiskHeader,
    listener: &rearguard_shared::config::ListenerConfig,
    node: u8,
    r: &mut Report,
) -> Result<(), ListenerError> {
    let (Some(slot), Some(mailbox)) = (header.slot_offset(node), header.mailbox_offset(node)) else {
        unreachable!("every watched node's slot was checked")
    };
    let v = listener.verifier();
    let read = |disk: &mut DirectDisk| -> Result<Heartbeat, String> {
        let mut b = Box::new([0u8; BLOCK]);
        disk.read_block(slot, &mut b).map_err(|e| e.to_string())?;
        heartbeat::decode(&b[..], &v).map_err(|e| format!("node {node}'s slot: {e}"))
    };
    // Two of the primary's intervals (its own, from its heartbeat, when longer than the disk's).
    let first = read(disk);
    let interval = first.as_ref().map_or(header.interval, |hb| hb.budget.interval.max(header.interval));
    let window = Duration::from_millis(2 * interval.as_millis());

    // Progress.
    let t = Instant::now();
    let mut last = first.clone();
    let progressed = loop {
        if let (Ok(a), Ok(b)) = (&first, &last) {
            if (b.boot_epoch, b.sequence) > (a.boot_epoch, a.sequence) {
                break Some((a.sequence, b.sequence));
            }
        }
        if t.elapsed() > window {
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
        last = read(disk);
    };
    match (progressed, &last) {
        (Some((a, b)), _) => {
            r.ready(PROGRESS, format!("node {node}: sequence {a} → {b} within {} ms", window.as_millis()))
        }
        (None, Err(e)) => r.not_ready(PROGRESS, format!("{e}; is the primary's agent running?")),
        (None, Ok(hb)) => r.not_ready(
            PROGRESS,
            format!(
                "node {node}: sequence stayed at {} for {} ms (two intervals): is its agent running, or stopped?",
                hb.sequence,
                window.as_millis()
            ),
        ),
    }

    // The bound, for the timeout this listener would run with (the disk's when longer).
    let timeout = listener.timeout.max(header.timeout);
    match &last {
        Err(e) => r.not_ready(BOUND, format!("no heartbeat to read the primary's budget from: {e}")),
        Ok(hb) if hb.budget.is_none() => r.not_ready(
            BOUND,
            format!("node {node}'s heartbeat carries no fencing budget: upgrade its agent (protocol 2 or later)"),
        ),
        Ok(hb) => {
            let mut s = String::new();
            let t = &mut Text::new(&mut s);
            match hb.budget.check(timeout) {
                Ok(margin) => {
                    let _ = hb
                        .budget
                        .numbers(t.s("node ").n(node).s(": timeout ").ms(timeout).s(" ≥ 2 × ("))
                        .s(") = ")
                        .ms(hb.budget.min_timeout())
                        .s(", margin ")
                        .ms(margin);
                    r.ready(BOUND, s);
                }
                Err(v) => {
                    let _ = rearguard_firmware::report::bound_broken(t.s("node ").n(node).s(": "), &v);
                    r.not_ready(BOUND, s);
                }
            }
        }
    }

    mailbox_check(disk, mailbox, listener.node_id, node, window, &read, r)
}

/// The listener settings a start would use: the console's saved copy, if there is one.
fn running_config(cfg: &LinuxListenerConfig) -> rearguard_shared::config::ListenerConfig {
    // Opened only when it exists: the drill creates nothing.
    match cfg.nv_file.as_deref().filter(|p| p.exists()).map(FileNv::open) {
        Some(Ok(mut store)) => match nv::load(&mut store) {
            (saved, _, nv::LoadReport::Loaded { .. }) => saved,
            _ => cfg.listener.clone(),
        },
        _ => cfg.listener.clone(),
    }
}

fn mailbox_check(
    disk: &mut DirectDisk,
    mailbox: u64,
    by: u8,
    node: u8,
    window: Duration,
    read: &impl Fn(&mut DirectDisk) -> Result<Heartbeat, String>,
    r: &mut Report,
) -> Result<(), ListenerError> {
    let mut original = Box::new([0u8; BLOCK]);
    disk.read_block(mailbox, &mut original)?;
    let in_box = match MailboxMessage::decode(&original[..]) {
        Ok(MailboxMessage::Empty) => 0,
        Ok(MailboxMessage::Test { seq, .. }) => seq,
        Ok(m) => {
            r.not_ready(
                MAILBOX,
                format!("node {node}'s mailbox holds {m:?}: left untouched; see `rearguard disk dump`"),
            );
            return Ok(());
        }
        Err(e) => {
            r.not_ready(
                MAILBOX,
                format!("node {node}'s mailbox is corrupt ({e}): left untouched; see `rearguard disk dump`"),
            );
            return Ok(());
        }
    };
    let acked = read(disk).map_or(0, |hb| hb.last_test);
    let seq = acked.max(in_box).wrapping_add(1).max(1);
    let msg = MailboxMessage::Test { by, seq };
    let mut block = Box::new([0u8; BLOCK]);
    msg.encode(&mut block[..]);
    disk.write_block(mailbox, &block)?;
    let t = Instant::now();
    let took = loop {
        if read(disk).is_ok_and(|hb| hb.last_test == seq) {
            break Some(t.elapsed());
        }
        if t.elapsed() > window {
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    // Put the mailbox back, unless something replaced the test message meanwhile.
    disk.read_block(mailbox, &mut block)?;
    let restored = if MailboxMessage::decode(&block[..]) == Ok(msg) {
        disk.write_block(mailbox, &original)?;
        "mailbox restored"
    } else {
        "the mailbox changed meanwhile (left as it is now: see `rearguard disk dump`)"
    };
    match took {
        Some(d) => r.ready(MAILBOX, format!("node {node} acknowledged test #{seq} in {} ms; {restored}", d.as_millis())),
        None => r.not_ready(
            MAILBOX,
            format!(
                "node {node} did not acknowledge test #{seq} within {} ms (two intervals): is its agent running? {restored}",
                window.as_millis()
            ),
        ),
    }
    Ok(())
}

fn gate(cfg: &LinuxListenerConfig, r: &mut Report) {
    let argv0 = &cfg.gate_command[0];
    match executable(argv0) {
        Ok(p) => r.ready(GATE, format!("{} is executable (not run)", p.display())),
        Err(why) => {
            r.not_ready(GATE, format!("[gate] command {argv0:?} {why}: fix [gate] command in {}", cfg.file.display()))
        }
    }
    let Some(test) = &cfg.gate_test else { return };
    let name = "gate test";
    match std::process::Command::new(&test[0]).args(&test[1..]).stdin(std::process::Stdio::null()).output() {
        Ok(o) if o.status.success() => r.ready(name, format!("{test:?} exited 0")),
        Ok(o) => r.not_ready(
            name,
            format!("{test:?} ended with {}: {}", o.status, String::from_utf8_lossy(&o.stderr).trim()),
        ),
        Err(e) => r.not_ready(name, format!("{test:?} could not be started: {e}")),
    }
}

/// Where `argv0` resolves (a path, or a name on `PATH`), if it is an executable file.
pub(crate) fn executable(argv0: &str) -> Result<PathBuf, String> {
    let is_exec = |p: &Path| p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if argv0.contains('/') {
        let p = PathBuf::from(argv0);
        return match p.metadata() {
            Err(_) => Err("does not exist".into()),
            Ok(_) if !is_exec(&p) => Err("is not an executable file".into()),
            Ok(_) => Ok(p),
        };
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(argv0))
        .find(|p| is_exec(p))
        .ok_or_else(|| "is not found on PATH".into())
}
