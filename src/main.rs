//! `rearguard`: the one binary users run.

mod build_info;
mod check;
mod demo;
mod disk_cmd;
mod firmware_cmd;
mod pair_cmd;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use rearguard_host_agent::config::agent::AgentConfig;
use rearguard_host_agent::config::{ConfigKind, Source};
use rearguard_host_agent::sys::{print_fatal, stderr_is_journal};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Keeps a service running when one machine of an appliance pair dies.
///
/// Cold standby: a primary writes heartbeats to a reserved area of a shared disk (`agent`);
/// the secondary's controller, or a Linux process standing in for it (`listener`), holds the
/// secondary at POST and releases its boot when the heartbeats stop.
///
/// Start with `rearguard demo` to watch a takeover on this machine, then
/// `rearguard disk init --help` to prepare a real shared disk.
#[derive(Parser)]
#[command(name = "rearguard", propagate_version = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Prepare, inspect or clear the heartbeat area of a shared disk.
    #[command(subcommand)]
    Disk(disk_cmd::DiskCmd),
    /// Pack or verify the controller firmware's flashable image (header, length, CRC-32C).
    #[command(subcommand)]
    Firmware(firmware_cmd::FirmwareCmd),
    /// Run the primary's agent: write heartbeats, watch the mailbox, fence on failure.
    ///
    /// With a [pair] section in the config it runs the firewall-pair agent instead (both
    /// nodes run it; the active one holds the VIPs; see examples/pair.toml).
    ///
    /// Exit status: 0 after SIGTERM/SIGINT, 1 on a config or disk error, 3 when a takeover
    /// claim forbids this node to serve, 4 when it fenced itself after a hung write.
    Agent {
        /// Agent config (TOML); see examples/agent.toml.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run the standby listener as a Linux process (the Linux board of the firmware).
    ///
    /// Holds until the primary is seen alive, then releases the boot (runs [gate] command)
    /// once the primary's heartbeats stop for the timeout. Exits 0 after releasing.
    ///
    /// Standard input is the controller's console: type `help` for the configuration menu
    /// (status, set, save, release). Settings saved there go to `[listener] nv_file`.
    Listener {
        /// Listener config (TOML); see examples/listener.toml.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Firewall pair: show this node's role, state, peer, heartbeat age, VIP holder, health.
    Status {
        #[command(flatten)]
        socket: pair_cmd::SocketArgs,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Firewall pair: hand the VIPs to the other node (issued on either node).
    Switchover {
        #[command(flatten)]
        socket: pair_cmd::SocketArgs,
    },
    /// Firewall pair: take this node out of service (it resigns and never takes over) or back.
    Maintenance {
        #[arg(value_enum)]
        mode: pair_cmd::OnOff,
        #[command(flatten)]
        socket: pair_cmd::SocketArgs,
    },
    /// Firewall pair: remove this node's VIPs (systemd ExecStopPost, even after a crash).
    VipCleanup {
        /// The pair agent's config (TOML with a [pair] section).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Prove that a failover could happen now, changing nothing: one verdict line per check.
    ///
    /// With a listener config: the disk reads, the primary's heartbeat progresses, the
    /// timeout keeps the primary's fencing bound, a test message in the primary's mailbox is
    /// acknowledged within two intervals (the mailbox is then restored), and the gate command
    /// is executable ([gate] gate_test, if set, is run; the gate itself never is).
    ///
    /// With a pair config: asks the running pair agent (its control socket) whether the
    /// peer is fresh on each medium, build and policy match, its checks and monitored
    /// targets are healthy, each VIP interface is up with carrier, it may change addresses
    /// and send announcements, and the hooks are executable. Nothing is added, sent or run.
    ///
    /// Exit status: 0 when ready, 2 when not, 1 when the drill could not run.
    Drill {
        /// The node's config (TOML); its sections say which drill runs.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a config file, and the shared disk it names, without running anything.
    CheckConfig {
        /// An agent, pair or listener config (TOML); its sections say which.
        file: PathBuf,
    },
    /// Watch a takeover on this machine: no root, no hardware, a temporary disk image.
    Demo {
        /// `n-plus-1`: three primaries and one spare; the spare boots as the one killed.
        scenario: Option<DemoScenario>,
        /// Heartbeat interval of the demo primary, in ms.
        #[arg(long, default_value_t = 100)]
        interval_ms: u64,
        /// Release timeout of the demo listener, in ms.
        #[arg(long, default_value_t = 1000)]
        timeout_ms: u64,
        /// Listener poll period, in ms.
        #[arg(long, default_value_t = 10)]
        poll_ms: u64,
        /// Repeat the takeover this many times and print median and max release latency.
        #[arg(long, default_value_t = 1)]
        runs: u32,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum DemoScenario {
    /// One spare for three primaries.
    #[value(name = "n-plus-1")]
    NPlus1,
}

fn main() -> ExitCode {
    rearguard_host_agent::sys::one_malloc_arena();
    let cli = on_own_stack(|| {
        let version: &'static str = Box::leak(build_info::long_version().into_boxed_str());
        let matches = Cli::command().version(version).get_matches();
        Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    });
    init_logging();
    match run(cli.command) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            print_fatal(&format!("error: {e:#}"));
            ExitCode::from(1)
        }
    }
}

/// Runs `f` on a thread of its own and returns its result. Parsing the arguments takes over
/// 100 KiB of stack frames (clap builds its whole command tree in them); on the main thread
/// those pages would stay resident under a daemon's loop for as long as it runs, while glibc
/// hands a finished thread's stack pages back (README "Footprint").
fn on_own_stack<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        let t = std::thread::Builder::new().stack_size(1 << 20).spawn_scoped(s, f).expect("spawn a parser thread");
        t.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// Logs go to the journal, with their fields as RG_* journal fields, when stderr is the
/// journal (systemd says so in JOURNAL_STREAM); otherwise to stderr as text.
fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    // `REARGUARD_LOG=warn` or `info,rearguard_host_agent::pair=debug`: levels per target.
    // Targets rather than EnvFilter: no span or field filters, and no regex engine in the
    // binary (a quarter of a megabyte of text, which is resident memory; README "Footprint").
    let setting = std::env::var("REARGUARD_LOG").ok().filter(|v| !v.trim().is_empty());
    let parsed = setting.as_deref().map(str::parse::<tracing_subscriber::filter::Targets>);
    let filter = match &parsed {
        Some(Ok(t)) => t.clone(),
        _ => tracing_subscriber::filter::Targets::new().with_default(tracing::Level::INFO),
    };
    let warn_bad_setting = move || {
        if let (Some(v), Some(Err(e))) = (&setting, &parsed) {
            tracing::warn!("REARGUARD_LOG={v:?} is not a log filter ({e}); logging at info (e.g. REARGUARD_LOG=warn)");
        }
    };
    if stderr_is_journal() {
        // A panic's message would otherwise be an info line of the stream, like any text.
        std::panic::set_hook(Box::new(|info| {
            let thread = std::thread::current();
            print_fatal(&format!("thread '{}' {info}", thread.name().unwrap_or("<unnamed>")));
        }));
        if let Ok(journal) = tracing_journald::layer() {
            // RG_STATE, RG_TERM, RG_PEER, RG_REASON: `journalctl -u rearguard-pair RG_STATE=active`.
            let journal = journal.with_field_prefix(Some("RG".into()));
            tracing_subscriber::registry().with(journal).with(filter).init();
            warn_bad_setting();
            return;
        }
    }
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    tracing_subscriber::registry().with(fmt).with(filter).init();
    warn_bad_setting();
}

fn stop_flag() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    Ok(stop)
}

fn run(cmd: Cmd) -> anyhow::Result<u8> {
    match cmd {
        Cmd::Disk(d) => disk_cmd::run(d),
        Cmd::Firmware(f) => firmware_cmd::run(f),
        Cmd::Agent { config } => {
            let src = Source::read(&config)?;
            if ConfigKind::of(&src)? == ConfigKind::Pair {
                return pair_cmd::run_agent(&src, build_info::stamp(), stop_flag()?);
            }
            let cfg = AgentConfig::from_source(&src)?;
            let opts = rearguard_host_agent::agent::AgentOptions {
                build_stamp: build_info::stamp(),
                config_digest: rearguard_shared::integrity::crc32c(src.text().as_bytes()),
            };
            match rearguard_host_agent::agent::run(&cfg, opts, stop_flag()?) {
                Ok(_) => Ok(0),
                Err(e) => {
                    print_fatal(&format!("error: {e}"));
                    Ok(e.exit_code() as u8)
                }
            }
        }
        Cmd::Listener { config } => {
            let cfg = rearguard_board_linux::config::LinuxListenerConfig::load(&config)?;
            let stop = stop_flag()?;
            let mut out = std::io::stdout();
            // The console: stdin bytes drive the firmware's configuration menu.
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                use std::io::Read;
                for b in std::io::stdin().lock().bytes().map_while(Result::ok) {
                    if tx.send(b).is_err() {
                        return;
                    }
                }
            });
            rearguard_board_linux::run(&cfg, &mut out, Some(rx), &stop)?;
            Ok(0)
        }
        Cmd::Status { socket, json } => pair_cmd::status(&socket, json),
        Cmd::Switchover { socket } => pair_cmd::switchover(&socket),
        Cmd::Maintenance { mode, socket } => pair_cmd::maintenance(&socket, mode),
        Cmd::VipCleanup { config } => pair_cmd::vip_cleanup(&config),
        Cmd::Drill { config } => {
            let src = Source::read(&config)?;
            match ConfigKind::of(&src)? {
                ConfigKind::Pair => pair_cmd::drill(&src),
                ConfigKind::Listener => {
                    let cfg = rearguard_board_linux::config::LinuxListenerConfig::from_source(&src)?;
                    let report = rearguard_board_linux::drill::run(&cfg)?;
                    print!("{}", report.render());
                    Ok(report.exit_code())
                }
                other => anyhow::bail!(
                    "{}: this file is {}; drill takes a pair config ([pair]) or a listener config ([listener])",
                    config.display(),
                    other.name()
                ),
            }
        }
        Cmd::CheckConfig { file } => check::run(&file),
        Cmd::Demo { scenario: None, interval_ms, timeout_ms, poll_ms, runs } => {
            demo::run(interval_ms, timeout_ms, poll_ms, runs)
        }
        Cmd::Demo { scenario: Some(DemoScenario::NPlus1), interval_ms, timeout_ms, poll_ms, .. } => {
            demo::n_plus_1(interval_ms, timeout_ms, poll_ms)
        }
    }
}
