//! `rearguard disk init|dump|clear|message`.

use anyhow::{bail, Context};
use clap::Subcommand;
use rearguard_host_agent::blockdev::DirectDisk;
use rearguard_shared::disk::{area_len, DiskHeader, HeaderError, MailboxMessage, SlotRole, BLOCK, MAX_SLOTS};
use rearguard_shared::heartbeat::{self, Heartbeat, Verifier};
use rearguard_shared::integrity::Key;
use rearguard_shared::reject::Reject;
use rearguard_shared::Duration;
use serde_json::json;
use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum DiskCmd {
    /// Write a fresh heartbeat area (header, empty slots, empty mailboxes).
    ///
    /// The secondary's timeout is recorded on the disk, so every agent checks its fencing
    /// bound against the number the listener will use: timeout ≥ 2 × (interval +
    /// write_deadline + fence time).
    Init {
        /// Block device or image file (e.g. /dev/disk/by-id/…-part1, or disk.img).
        device: PathBuf,
        /// Cluster id shared by both nodes' configs (decimal or 0x-hex).
        #[arg(long, value_parser = parse_u32)]
        cluster_id: u32,
        /// Number of primaries (slots 0..N): the nodes that run the service and heartbeat.
        #[arg(long, default_value_t = 1)]
        primaries: u8,
        /// Number of spares (the slots after the primaries): listeners that take over a
        /// dead primary's boot. Primaries + spares is at most 32.
        #[arg(long, default_value_t = 1)]
        spares: u8,
        /// The primary's heartbeat interval, ms.
        #[arg(long, default_value_t = 100)]
        interval_ms: u32,
        /// The secondary's release timeout, ms.
        #[arg(long, default_value_t = 10_000)]
        timeout_ms: u32,
        /// Create DEVICE as an image file if it does not exist (tests, demos).
        #[arg(long)]
        create: bool,
        /// Overwrite an existing Rearguard area (and its takeover claims) or foreign data.
        #[arg(long)]
        force: bool,
    },
    /// Show the header, every node (role, owner, state, epoch, sequence, age), every mailbox
    /// and who has claimed whom.
    Dump {
        device: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Verify MAC tags with this key (hex).
        #[arg(long)]
        key: Option<String>,
        /// How long to watch slots for progress; default twice the disk's interval.
        #[arg(long)]
        watch_ms: Option<u64>,
    },
    /// Remove takeover claims and poison pills from mailboxes, so a node may serve again.
    ///
    /// Only after making sure the node that claimed the disk is shut down.
    Clear {
        device: PathBuf,
        /// Clear only this node's mailbox (default: all).
        #[arg(long)]
        node: Option<u8>,
    },
    /// Leave a message in NODE's mailbox, as `sbd message` does.
    ///
    /// `test`: the running agent logs it and acknowledges it in its heartbeat (`disk dump`
    /// shows `test acks N, last #SEQ`). `poison`: the running agent fences itself and exits 3
    /// at its next cycle, and will not start until the mailbox is cleared. `clear`: empty
    /// the mailbox (also removes a takeover claim: only once the claimer is down).
    Message {
        device: PathBuf,
        /// The node whose mailbox gets the message.
        node: u8,
        #[arg(value_enum)]
        message: MessageKind,
        /// Sender id written into the message (the operator's console: 255).
        #[arg(long, default_value_t = 255)]
        by: u8,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MessageKind {
    Test,
    Poison,
    Clear,
}

impl MessageKind {
    fn name(self) -> &'static str {
        match self {
            MessageKind::Test => "test",
            MessageKind::Poison => "poison",
            MessageKind::Clear => "clear",
        }
    }
}

fn parse_u32(s: &str) -> Result<u32, String> {
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16),
        None => s.parse(),
    };
    r.map_err(|_| format!("{s:?} is not a 32-bit number (write it in decimal or as 0x-hex)"))
}

pub fn run(cmd: DiskCmd) -> anyhow::Result<u8> {
    match cmd {
        DiskCmd::Init { device, cluster_id, primaries, spares, interval_ms, timeout_ms, create, force } => {
            init(&device, cluster_id, primaries, spares, interval_ms, timeout_ms, create, force)
        }
        DiskCmd::Dump { device, json, key, watch_ms } => dump(&device, json, key.as_deref(), watch_ms),
        DiskCmd::Clear { device, node } => clear(&device, node),
        DiskCmd::Message { device, node, message: kind, by } => message(&device, node, kind, by),
    }
}

fn open_area(device: &Path) -> anyhow::Result<(DirectDisk, DiskHeader)> {
    let mut disk = DirectDisk::open(device, true)?;
    let mut block = [0u8; BLOCK];
    disk.read_block(0, &mut block)?;
    let header = DiskHeader::decode(&block).map_err(|e| anyhow::anyhow!("{}: {e}", device.display()))?;
    Ok((disk, header))
}

#[allow(clippy::too_many_arguments)]
fn init(
    device: &Path,
    cluster_id: u32,
    primaries: u8,
    spares: u8,
    interval_ms: u32,
    timeout_ms: u32,
    create: bool,
    force: bool,
) -> anyhow::Result<u8> {
    if primaries == 0 {
        bail!("--primaries 0: an area needs at least one primary (a node that runs the service); use --primaries 1 or more");
    }
    if spares == 0 {
        bail!("--spares 0: nothing could take over a dead primary; use --spares 1 or more");
    }
    let slots = primaries as u16 + spares as u16;
    if slots > MAX_SLOTS as u16 {
        bail!("--primaries {primaries} --spares {spares}: {slots} slots, but an area holds at most {MAX_SLOTS}; lower one of them");
    }
    let slots = slots as u8;
    if interval_ms == 0 || timeout_ms == 0 {
        bail!("--interval-ms and --timeout-ms must be at least 1");
    }
    if timeout_ms < interval_ms.saturating_mul(2) {
        bail!("--timeout-ms {timeout_ms} is less than twice --interval-ms {interval_ms}: one late heartbeat would trigger a takeover");
    }
    let need = area_len(slots);
    if create && !device.exists() {
        let f = std::fs::File::create(device)
            .with_context(|| format!("{}: cannot create the image file", device.display()))?;
        // 1 MiB, a power of two, so the same image also works as an emulated SD card.
        f.set_len(need.max(1 << 20).next_power_of_two())?;
    }
    let mut disk = DirectDisk::open(device, true)?;
    let size = disk.size()?;
    if size < need {
        return Err(rearguard_host_agent::blockdev::DiskError::TooSmall { path: device.into(), size, need }.into());
    }
    let mut block = [0u8; BLOCK];
    disk.read_block(0, &mut block)?;
    match DiskHeader::decode(&block) {
        Err(HeaderError::NotInitialised) => {}
        Ok(_)
        | Err(HeaderError::BadCrc)
        | Err(HeaderError::UnsupportedLayout { .. })
        | Err(HeaderError::Invalid(_))
            if !force =>
        {
            bail!("{}: already holds a Rearguard heartbeat area; re-initialising erases its slots and takeover claims. Pass --force if that is what you want", device.display())
        }
        Err(HeaderError::NotRearguard) if !force => {
            bail!("{}: holds other data (no Rearguard header); check the device path, or pass --force to overwrite its first {need} bytes", device.display())
        }
        _ => {}
    }
    let mut uuid = [0u8; 16];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut uuid)).context("reading /dev/urandom")?;
    let header = DiskHeader {
        sector_size: disk.logical_sector_size(),
        slot_count: slots,
        cluster_id,
        interval: Duration::from_millis(interval_ms as u64),
        timeout: Duration::from_millis(timeout_ms as u64),
        uuid,
        primaries: (1u32 << primaries).wrapping_sub(1),
    };
    // Slots and mailboxes first, header last: a half-done init is never mistaken for a good one.
    let zero = [0u8; BLOCK];
    for off in (1..(1 + 2 * slots as u64)).map(|b| b * BLOCK as u64) {
        disk.write_block(off, &zero)?;
    }
    header.encode(&mut block);
    disk.write_block(0, &block)?;
    println!(
        "initialised {}: cluster {:#x}, {} ({}), interval {} ms, secondary timeout {} ms, {} bytes used",
        device.display(),
        cluster_id,
        roles_summary(&header),
        if primaries == 1 && spares == 1 { "layout 1" } else { "layout 2" },
        interval_ms,
        timeout_ms,
        need
    );
    Ok(0)
}

/// What one slot showed over the watch window.
enum SlotView {
    Valid { first: Heartbeat, last: Heartbeat, mac: &'static str },
    Rejected(Reject),
}

fn read_slot(disk: &mut DirectDisk, off: u64, v: &Verifier<'_>) -> anyhow::Result<(Result<Heartbeat, Reject>, bool)> {
    let mut block = [0u8; BLOCK];
    disk.read_block(off, &mut block)?;
    let has_mac = block[0..2] == heartbeat::MAGIC && rearguard_shared::frame::has_mac(&block);
    Ok((heartbeat::decode(&block, v), has_mac))
}

fn dump(device: &Path, as_json: bool, key: Option<&str>, watch_ms: Option<u64>) -> anyhow::Result<u8> {
    let (mut disk, h) = open_area(device)?;
    let key = key.map(Key::from_hex).transpose().map_err(|e| anyhow::anyhow!("--key: {e}"))?;
    let v = Verifier { cluster_id: h.cluster_id, key: key.as_ref() };
    let watch = watch_ms.unwrap_or(2 * h.interval.as_millis()).max(1);
    let mut firsts = Vec::new();
    for node in 0..h.slot_count {
        firsts.push(read_slot(&mut disk, h.slot_offset(node).unwrap(), &v)?);
    }
    std::thread::sleep(std::time::Duration::from_millis(watch));
    let mut views = Vec::new();
    for node in 0..h.slot_count {
        let (second, has_mac) = read_slot(&mut disk, h.slot_offset(node).unwrap(), &v)?;
        let mac = match (has_mac, key.is_some()) {
            (false, _) => "none",
            (true, true) => "verified",
            (true, false) => "present, not verified (pass --key)",
        };
        views.push(match (&firsts[node as usize].0, second) {
            (_, Err(r)) => SlotView::Rejected(r),
            (Ok(a), Ok(b)) => SlotView::Valid { first: *a, last: b, mac },
            (Err(_), Ok(b)) => SlotView::Valid { first: b, last: b, mac },
        });
    }
    let mut mailboxes = Vec::new();
    let mut block = [0u8; BLOCK];
    for node in 0..h.slot_count {
        disk.read_block(h.mailbox_offset(node).unwrap(), &mut block)?;
        mailboxes.push(MailboxMessage::decode(&block));
    }
    if as_json {
        let slots: Vec<_> = views
            .iter()
            .enumerate()
            .map(|(i, s)| match s {
                SlotView::Rejected(r) => json!({
                    "slot": i, "slot_role": role_of(&h, i), "claimed_by": claimed_by(&mailboxes, i),
                    "status": r.name(), "detail": r.to_string(),
                }),
                SlotView::Valid { first, last, mac } => json!({
                    "slot": i,
                    "slot_role": role_of(&h, i),
                    "claimed_by": claimed_by(&mailboxes, i),
                    "status": progress_status(first, last),
                    "owner": last.node_id,
                    "owner_matches_slot": last.node_id as usize == i,
                    "role": format!("{:?}", last.role).to_lowercase(),
                    "state": format!("{:?}", last.state).to_lowercase(),
                    "epoch": last.boot_epoch,
                    "sequence": last.sequence,
                    "sequence_advance": last.sequence.wrapping_sub(first.sequence),
                    "watched_ms": watch,
                    "uptime_ms": last.uptime.as_millis(),
                    "health": last.health.0,
                    "build_stamp": format!("{:08x}", last.build_stamp),
                    "test_acks": last.test_acks,
                    "last_test": last.last_test,
                    "budget_ms": [last.budget.interval.as_millis(), last.budget.write_deadline.as_millis(), last.budget.fence_time.as_millis()],
                    "mac": mac,
                }),
            })
            .collect();
        let mbox: Vec<_> = mailboxes
            .iter()
            .enumerate()
            .map(|(i, m)| match m {
                Ok(MailboxMessage::Empty) => json!({"node": i, "message": "empty"}),
                Ok(MailboxMessage::TakeoverClaim { by, primary_epoch }) => {
                    json!({"node": i, "message": "takeover-claim", "by": by, "primary_epoch": primary_epoch})
                }
                Ok(MailboxMessage::PendingClaim { by, primary_epoch }) => json!({
                    "node": i, "message": "takeover-claim", "pending": true, "by": by, "primary_epoch": primary_epoch
                }),
                Ok(MailboxMessage::Poison { by }) => json!({"node": i, "message": "poison", "by": by}),
                Ok(MailboxMessage::Test { by, seq }) => json!({"node": i, "message": "test", "by": by, "seq": seq}),
                Err(e) => json!({"node": i, "message": "corrupt", "detail": e.to_string()}),
            })
            .collect();
        let out = json!({
            "device": device.display().to_string(),
            "header": {
                "cluster_id": h.cluster_id, "slots": h.slot_count, "sector_size": h.sector_size,
                "primaries": slots_with(&h, SlotRole::Primary), "spares": slots_with(&h, SlotRole::Spare),
                "interval_ms": h.interval.as_millis(), "timeout_ms": h.timeout.as_millis(),
                "uuid": h.uuid.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            },
            "slots": slots,
            "mailboxes": mbox,
            "claims": claims(&mailboxes).iter().map(|(n, by)| json!({"node": n, "by": by})).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(0);
    }
    println!(
        "{}: cluster {:#x}, {}, sector size {}, interval {} ms, secondary timeout {} ms",
        device.display(),
        h.cluster_id,
        roles_summary(&h),
        h.sector_size,
        h.interval.as_millis(),
        h.timeout.as_millis()
    );
    println!("slots (watched for {watch} ms):");
    for (i, s) in views.iter().enumerate() {
        match s {
            SlotView::Rejected(r) => println!("  slot {i}: {} — {} slot, {r}", r.name(), role_of(&h, i)),
            SlotView::Valid { first, last, mac } => {
                let owner =
                    if last.node_id as usize == i { String::new() } else { format!(" (WRONG OWNER: slot {i})") };
                println!(
                    "  slot {i}: {} — {} slot, node {}{owner}, {:?}/{:?}, epoch {}, seq {}, up {} ms, mac {mac}",
                    progress_status(first, last),
                    role_of(&h, i),
                    last.node_id,
                    last.role,
                    last.state,
                    last.boot_epoch,
                    last.sequence,
                    last.uptime.as_millis()
                );
                if last.test_acks > 0 {
                    println!("          test acks {}, last #{}", last.test_acks, last.last_test);
                }
                let adv = last.sequence.wrapping_sub(first.sequence);
                if first.boot_epoch == last.boot_epoch && adv == 0 {
                    println!("          age: no new heartbeat for at least {watch} ms");
                } else {
                    println!("          age: advanced by {adv} within {watch} ms");
                }
            }
        }
    }
    println!("mailboxes:");
    for (i, m) in mailboxes.iter().enumerate() {
        match m {
            Ok(MailboxMessage::Empty) => println!("  node {i}: empty"),
            Ok(MailboxMessage::TakeoverClaim { by, primary_epoch }) => {
                println!("  node {i}: TAKEOVER CLAIM by node {by} (primary epoch {primary_epoch}) — node {i} must not serve; `rearguard disk clear` once node {by} is down")
            }
            Ok(MailboxMessage::PendingClaim { by, primary_epoch }) => {
                println!("  node {i}: TAKEOVER CLAIM by node {by}, PENDING (primary epoch {primary_epoch}) — node {by} is arbitrating, or crashed doing so and will not take node {i}; node {i} must not serve; `rearguard disk clear` to let it serve again")
            }
            Ok(MailboxMessage::Poison { by }) => println!("  node {i}: POISON PILL from node {by}"),
            Ok(MailboxMessage::Test { by, seq }) => println!("  node {i}: test message #{seq} from node {by}"),
            Err(e) => println!("  node {i}: corrupt — {e}"),
        }
    }
    let claims = claims(&mailboxes);
    if claims.is_empty() {
        println!("claims: none (no node has been taken over)");
    } else {
        println!("claims:");
        for (node, by) in claims {
            println!(
                "  node {node} ({}) taken over by node {by} ({})",
                role_of(&h, node as usize),
                role_of(&h, by as usize)
            );
        }
    }
    Ok(0)
}

fn role_of(h: &DiskHeader, slot: usize) -> &'static str {
    u8::try_from(slot).ok().and_then(|n| h.role(n)).map_or("no slot", SlotRole::name)
}

type Mailboxes = [Result<MailboxMessage, rearguard_shared::disk::MailboxError>];

fn claimed_by(mailboxes: &Mailboxes, node: usize) -> Option<u8> {
    match mailboxes.get(node) {
        Some(Ok(m)) => m.claimant(),
        _ => None,
    }
}

/// Who has claimed whom: (claimed node, claiming node), from the mailboxes.
fn claims(mailboxes: &Mailboxes) -> Vec<(u8, u8)> {
    (0..mailboxes.len()).filter_map(|n| claimed_by(mailboxes, n).map(|by| (n as u8, by))).collect()
}

/// The slots with one role, as `0-2` style text.
fn slots_with(h: &DiskHeader, role: SlotRole) -> Vec<u8> {
    (0..h.slot_count).filter(|&n| h.role(n) == Some(role)).collect()
}

fn roles_summary(h: &DiskHeader) -> String {
    let list = |v: Vec<u8>| v.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(",");
    let (p, s) = (slots_with(h, SlotRole::Primary), slots_with(h, SlotRole::Spare));
    format!(
        "{} primar{} (node {}), {} spare{} (node {})",
        p.len(),
        if p.len() == 1 { "y" } else { "ies" },
        list(p.clone()),
        s.len(),
        if s.len() == 1 { "" } else { "s" },
        list(s)
    )
}

fn progress_status(first: &Heartbeat, last: &Heartbeat) -> &'static str {
    if (last.boot_epoch, last.sequence) > (first.boot_epoch, first.sequence) {
        "alive"
    } else {
        "stalled"
    }
}

fn clear(device: &Path, node: Option<u8>) -> anyhow::Result<u8> {
    let (mut disk, h) = open_area(device)?;
    let nodes: Vec<u8> = match node {
        Some(n) if n >= h.slot_count => bail!("--node {n}: {} has slots 0..{}", device.display(), h.slot_count - 1),
        Some(n) => vec![n],
        None => (0..h.slot_count).collect(),
    };
    let mut block = [0u8; BLOCK];
    for n in nodes {
        let off = h.mailbox_offset(n).unwrap();
        disk.read_block(off, &mut block)?;
        let was = MailboxMessage::decode(&block);
        MailboxMessage::Empty.encode(&mut block);
        disk.write_block(off, &block)?;
        match was {
            Ok(MailboxMessage::Empty) => println!("node {n}: mailbox was already empty"),
            Ok(m) => println!("node {n}: cleared {m:?}"),
            Err(e) => println!("node {n}: cleared a corrupt mailbox ({e})"),
        }
    }
    Ok(0)
}

fn message(device: &Path, node: u8, kind: MessageKind, by: u8) -> anyhow::Result<u8> {
    let (mut disk, h) = open_area(device)?;
    let (Some(slot), Some(off)) = (h.slot_offset(node), h.mailbox_offset(node)) else {
        bail!("node {node}: {} has nodes 0..{}; name one of them", device.display(), h.slot_count - 1)
    };
    let mut block = [0u8; BLOCK];
    // A message would erase a spare's takeover claim, and with it what keeps the primary from
    // serving beside the spare: only a deliberate `clear` may.
    disk.read_block(off, &mut block)?;
    if let (
        Ok(
            MailboxMessage::TakeoverClaim { by: spare, primary_epoch }
            | MailboxMessage::PendingClaim { by: spare, primary_epoch },
        ),
        false,
    ) = (MailboxMessage::decode(&block), kind == MessageKind::Clear)
    {
        bail!(
            "node {node}'s mailbox holds spare {spare}'s takeover claim (primary epoch {primary_epoch}); a {} message would erase it and let the old primary serve beside the spare. Once node {node} is recommissioned, clear it first: `rearguard disk message {} {node} clear`",
            kind.name(),
            device.display()
        )
    }
    let msg = match kind {
        MessageKind::Clear => MailboxMessage::Empty,
        MessageKind::Poison => MailboxMessage::Poison { by },
        MessageKind::Test => {
            // A sequence the agent has not acknowledged yet (it acknowledges each one once).
            let (hb, _) = read_slot(&mut disk, slot, &Verifier { cluster_id: h.cluster_id, key: None })?;
            let in_box = match MailboxMessage::decode(&block) {
                Ok(MailboxMessage::Test { seq, .. }) => seq,
                _ => 0,
            };
            MailboxMessage::Test { by, seq: hb.map_or(0, |hb| hb.last_test).max(in_box).wrapping_add(1).max(1) }
        }
    };
    msg.encode(&mut block);
    disk.write_block(off, &block)?;
    match msg {
        MailboxMessage::Test { seq, .. } => println!(
            "node {node}: test message #{seq} written; a running agent acknowledges it within one interval (`rearguard disk dump {}` shows test acks)",
            device.display()
        ),
        MailboxMessage::Poison { .. } => println!("node {node}: poison pill written; a running agent fences itself and exits 3 at its next cycle"),
        _ => println!("node {node}: mailbox cleared"),
    }
    Ok(0)
}
