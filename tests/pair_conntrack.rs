//! Firewall pair with conntrackd: a TCP connection through the firewall survives the active
//! node's death, and does not without conntrackd. Real agents, real conntrackd (FTFW over
//! the side link), nftables stateful forwarding, all in network namespaces.

mod support;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::netns::*;

const SERVER: &str = "10.202.0.20";
const WAN_VIP: &str = "10.202.0.100";
const PORT: u16 = 7000;

/// Stateful forwarding as a firewall pair runs it: replies and related traffic pass, new
/// connections only from the inside (LAN), anything conntrack calls invalid is dropped.
const RULES: &str = "table inet fw {
  chain forward {
    type filter hook forward priority 0; policy drop;
    ct state invalid drop
    ct state established,related accept
    iifname \"lan\" ct state new accept
  }
}
";

/// conntrackd for node `i` (1 or 2): FTFW over the side link, control socket in `dir`.
fn conntrackd_conf(dir: &std::path::Path, i: usize) -> std::path::PathBuf {
    let (me, peer) = if i == 1 { (1, 2) } else { (2, 1) };
    let text = format!(
        "Sync {{
    Mode FTFW {{
    }}
    UDP {{
        IPv4_address 10.201.0.{me}
        IPv4_Destination_Address 10.201.0.{peer}
        Port 3780
        Interface side
        Checksum on
    }}
}}
General {{
    HashSize 8192
    HashLimit 65536
    Syslog off
    LogFile {dir}/conntrackd-{i}.log
    LockFile {dir}/conntrackd-{i}.lock
    UNIX {{
        Path {dir}/conntrackd-{i}.ctl
    }}
    NetlinkBufferSize 2097152
    NetlinkBufferSizeMaxGrowth 8388608
    Filter From Userspace {{
        Protocol Accept {{
            TCP
        }}
        Address Ignore {{
            IPv4_address 127.0.0.1
            IPv4_address 10.201.0.{me}
            IPv4_address 10.200.0.{me}
            IPv4_address 10.202.0.{me}
            IPv4_address {VIP}
            IPv4_address {WAN_VIP}
        }}
    }}
}}
",
        dir = dir.display()
    );
    let path = dir.join(format!("conntrackd-{i}.conf"));
    std::fs::write(&path, text).unwrap();
    path
}

fn conntrackd(cfg: &std::path::Path, args: &[&str]) -> std::process::Output {
    let mut argv = vec!["conntrackd", "-C", cfg.to_str().unwrap()];
    argv.extend_from_slice(args);
    sh(&argv)
}

/// The pair as a firewall between client (LAN) and server (WAN), a VIP on each side as the
/// gateways; with conntrackd running in both nodes when `sync`.
fn firewall(sync: bool) -> (Pair, [std::path::PathBuf; 2]) {
    let mut opts = [NodeOpts::new(200), NodeOpts::new(100)];
    for o in &mut opts {
        o.extra = format!("[[pair.vip]]\naddress = \"{WAN_VIP}/24\"\ninterface = \"wan\"\n");
    }
    let [a, b] = opts;
    let mut p = Pair::new(true, a, b);
    p.add_outside();
    let rules = p.dir.join("fw.nft");
    std::fs::write(&rules, RULES).unwrap();
    let mut confs = Vec::new();
    for i in 0..2 {
        let n = Pair::node(i);
        must(&["ip", "netns", "exec", &p.ns(n), "nft", "-f", rules.to_str().unwrap()]);
        // tcp_loose = 0: a packet of a connection the kernel does not know is invalid, not
        // picked up mid-stream. Without it any node would forward the stream, synced or not.
        must(&["ip", "netns", "exec", &p.ns(n), "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        must(&["ip", "netns", "exec", &p.ns(n), "sysctl", "-qw", "net.netfilter.nf_conntrack_tcp_loose=0"]);
        let conf = conntrackd_conf(&p.dir, i + 1);
        if sync {
            p.spawn_in(n, &["conntrackd", "-C", conf.to_str().unwrap()]);
            let c = conf.clone();
            p.wait_until(Duration::from_secs(5), "conntrackd answers", move |_| {
                conntrackd(&c, &["-s"]).status.success()
            });
            p.opts[i].pair_keys = format!("[pair.conntrack]\nconfig = \"{}\"\n", conf.display());
        }
        confs.push(conf);
    }
    must(&["ip", "-n", &p.ns("c"), "route", "add", "default", "via", VIP]);
    must(&["ip", "-n", &p.ns("s"), "route", "add", "default", "via", WAN_VIP]);
    p.start_both();
    assert_eq!(p.holders(), vec![0]);
    (p, confs.try_into().unwrap())
}

/// The server: echoes every connection; counts them (a reconnect would show).
fn serve(p: &Pair) -> Arc<AtomicU32> {
    let addr: SocketAddr = format!("{SERVER}:{PORT}").parse().unwrap();
    let listener = in_netns(&p.ns("s"), move || TcpListener::bind(addr).unwrap());
    let accepted = Arc::new(AtomicU32::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            count.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut buf = [0u8; 8];
                while conn.read_exact(&mut buf).is_ok() && conn.write_all(&buf).is_ok() {}
            });
        }
    });
    accepted
}

fn connect(p: &Pair) -> std::io::Result<TcpStream> {
    let addr: SocketAddr = format!("{SERVER}:{PORT}").parse().unwrap();
    in_netns(&p.ns("c"), move || TcpStream::connect_timeout(&addr, Duration::from_secs(2)))
}

/// A message every 10 ms from the client, each echoed; when each echo came back.
struct Stream {
    echoes: Arc<Mutex<Vec<(u64, Instant)>>>,
    error: Arc<Mutex<Option<String>>>,
    stop: Arc<AtomicBool>,
}

impl Stream {
    fn start(p: &Pair) -> Stream {
        let conn = connect(p).expect("the client connects to the server through the firewall");
        conn.set_nodelay(true).unwrap();
        let mut writer = conn.try_clone().unwrap();
        let mut reader = conn;
        let s = Stream { echoes: Arc::default(), error: Arc::default(), stop: Arc::new(AtomicBool::new(false)) };
        let (stop, error) = (s.stop.clone(), s.error.clone());
        std::thread::spawn(move || {
            let mut seq = 0u64;
            while !stop.load(Ordering::SeqCst) {
                if let Err(e) = writer.write_all(&seq.to_be_bytes()) {
                    *error.lock().unwrap() = Some(format!("write: {e}"));
                    return;
                }
                seq += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = writer.shutdown(std::net::Shutdown::Both);
        });
        let (echoes, error, stop) = (s.echoes.clone(), s.error.clone(), s.stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 8];
            loop {
                if let Err(e) = reader.read_exact(&mut buf) {
                    if !stop.load(Ordering::SeqCst) {
                        *error.lock().unwrap() = Some(format!("read: {e}"));
                    }
                    return;
                }
                echoes.lock().unwrap().push((u64::from_be_bytes(buf), Instant::now()));
            }
        });
        s
    }

    fn count(&self) -> usize {
        self.echoes.lock().unwrap().len()
    }

    fn error(&self) -> Option<String> {
        self.error.lock().unwrap().clone()
    }

    /// The longest wait between two echoes; panics if an echo is missing or out of order.
    fn longest_stall(&self) -> Duration {
        let e = self.echoes.lock().unwrap();
        for (i, (seq, _)) in e.iter().enumerate() {
            assert_eq!(*seq, i as u64, "echo {i} carried {seq}: a message lost or repeated");
        }
        e.windows(2).map(|w| w[1].1 - w[0].1).max().unwrap_or_default()
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// What the client saw when the active node died under a running stream.
struct Death {
    /// Echoes came back after the takeover.
    resumed: bool,
    stall: Duration,
    error: Option<String>,
    takeover: Duration,
}

/// Runs the stream through node 1, kills node 1 (agent and conntrackd SIGKILLed, every cable
/// cut), and watches the stream for `watch` after node 2 took over.
fn node_death(p: &mut Pair, confs: &[std::path::PathBuf; 2], sync: bool, watch: Duration) -> Death {
    let accepted = serve(p);
    let stream = Stream::start(p);
    p.wait_until(Duration::from_secs(5), "the stream runs (100 echoes)", |_| stream.count() >= 100);
    if sync {
        // The standby holds the connection in its external cache before the primary dies.
        p.wait_until(Duration::from_secs(5), "node 2's conntrackd has the connection from node 1", |_| {
            let out = conntrackd(&confs[1], &["-e"]);
            String::from_utf8_lossy(&out.stdout).contains("10.200.0.10")
        });
    }
    let before = stream.count();
    let killed = Instant::now();
    p.kill9(0);
    // The daemons were started in node order: node 1's conntrackd is the first.
    if let Some(d) = p.daemons.first_mut() {
        d.kill();
    }
    p.set_lan(0, false);
    p.set_wan(0, false);
    must(&["ip", "-n", &p.ns("a"), "link", "set", "side", "down"]);
    p.wait_until(Duration::from_secs(5), "node 2 takes over", |p| p.state(1) == "active");
    let takeover = killed.elapsed();
    let start = Instant::now();
    let mut resumed = false;
    while start.elapsed() < watch {
        if stream.count() > before + 50 {
            resumed = true;
            break;
        }
        if stream.error().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let stall = if resumed { stream.longest_stall() } else { killed.elapsed() };
    let error = stream.error();
    drop(stream);
    // A new connection works through the new active, with or without conntrackd.
    let mut c = connect(p).expect("a new connection through node 2");
    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    c.write_all(&42u64.to_be_bytes()).unwrap();
    let mut buf = [0u8; 8];
    c.read_exact(&mut buf).expect("the new connection is echoed");
    assert_eq!(u64::from_be_bytes(buf), 42);
    assert_eq!(accepted.load(Ordering::SeqCst), 2, "the stream's connection and the new one: no reconnect");
    Death { resumed, stall, error, takeover }
}

#[test]
fn a_tcp_stream_through_the_firewall_survives_the_active_nodes_death_with_conntrackd() {
    let (mut p, confs) = firewall(true);
    let d = node_death(&mut p, &confs, true, Duration::from_secs(5));
    eprintln!(
        "with conntrackd: node 2 active {} ms after the kill; longest stall {} ms; resumed {}",
        d.takeover.as_millis(),
        d.stall.as_millis(),
        d.resumed
    );
    assert_eq!(d.error, None, "the stream broke (reset?)\n{}", p.logs());
    assert!(d.resumed, "the stream did not resume within 5 s of the takeover\n{}", p.logs());
    assert!(d.stall < Duration::from_secs(4), "stall {} ms", d.stall.as_millis());
    // The new active ran conntrackd's primary sequence, in primary-backup.sh's order.
    let st = p.status(1);
    let ct = &st["conntrack"];
    assert_eq!(ct["last_transition"], "primary", "{st}");
    let steps: Vec<&str> = ct["steps"].as_array().unwrap().iter().map(|s| s["command"].as_str().unwrap()).collect();
    assert_eq!(steps, ["-c", "-f", "-R", "-B"], "{st}");
    assert_eq!(ct["ok"], true, "{st}");
    assert_eq!(ct["answered_at_start"], true, "{st}");
    // And the text status says so.
    let out = p.ctl(1, &["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("conntrackd (") && text.contains("primary") && text.contains("-c ok"), "{text}");
}

#[test]
fn without_conntrackd_the_same_stream_breaks_at_the_active_nodes_death() {
    let (mut p, confs) = firewall(false);
    let d = node_death(&mut p, &confs, false, Duration::from_secs(5));
    eprintln!(
        "without conntrackd: node 2 active {} ms after the kill; stream resumed {}, error {:?}",
        d.takeover.as_millis(),
        d.resumed,
        d.error
    );
    assert!(!d.resumed, "the stream went on without conntrackd: the test cannot tell anything\n{}", p.logs());
    assert_eq!(p.status(1)["conntrack"], serde_json::Value::Null);
}

#[test]
fn a_conntrackd_that_does_not_answer_at_start_is_a_warning_and_the_node_still_serves() {
    let mut p = Pair::new(false, NodeOpts::new(200), NodeOpts::new(100));
    // A valid config, but no daemon behind its socket.
    let conf = conntrackd_conf(&p.dir, 1);
    p.opts[0].pair_keys = format!("[pair.conntrack]\nconfig = \"{}\"\ntimeout_ms = 500\n", conf.display());
    p.start_both();
    assert_eq!(p.holders(), vec![0]);
    p.wait_until(Duration::from_secs(3), "client reaches the VIP on node 1", |p| p.client_reaches_vip());
    let log = p.log(0);
    assert!(log.contains("WARN") && log.contains("does not answer"), "{log}");
    let st = p.status(0);
    assert_eq!(st["conntrack"]["answered_at_start"], false, "{st}");
    p.wait_until(Duration::from_secs(3), "the failed commit is shown", |p| {
        p.status(0)["conntrack"]["failures"].as_u64().unwrap_or(0) >= 4
    });
    let out = p.ctl(0, &["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("did NOT answer at start") && text.contains("-c FAILED"), "{text}");
}
