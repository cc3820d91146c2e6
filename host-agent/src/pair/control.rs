//! The control socket: one request line in, one JSON line out.
//!
//! Requests: `status`, `drill`, `switchover`, `maintenance on`, `maintenance off`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::Arc;
use std::time::Duration;

/// Binds the socket (replacing a stale one) and serves it on a thread: each request line goes
/// to `forward` with the channel its answer comes back on; `forward` returns false once the
/// agent has gone.
pub fn serve(
    path: &Path,
    mut forward: impl FnMut(String, Sender<String>) -> bool + Send + 'static,
    stop: Arc<AtomicBool>,
) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if path.exists() {
        // A live agent answers; a stale socket file from a crash does not.
        if UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("{}: another agent is running on this control socket", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    std::thread::Builder::new().name("control".into()).stack_size(256 * 1024).spawn(move || {
        for conn in listener.incoming() {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let Ok(conn) = conn else { continue };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
            let mut line = String::new();
            if BufReader::new(&conn).read_line(&mut line).is_err() {
                continue;
            }
            let (rtx, rrx) = channel();
            if !forward(line.trim().to_string(), rtx) {
                return;
            }
            let reply = rrx
                .recv_timeout(Duration::from_secs(2))
                .unwrap_or_else(|_| r#"{"ok":false,"error":"agent did not answer"}"#.into());
            let mut conn = conn;
            let _ = conn.write_all(reply.as_bytes());
            let _ = conn.write_all(b"\n");
        }
    })?;
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("{path}: cannot reach the pair agent ({source}); is `rearguard agent` running with this control_socket?")]
    Connect { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: the agent's reply is not JSON: {text}")]
    Reply { path: PathBuf, text: String },
}

/// Sends one request and returns the agent's JSON reply.
pub fn request(path: &Path, req: &str) -> Result<serde_json::Value, ControlError> {
    let mut s = UnixStream::connect(path).map_err(|source| ControlError::Connect { path: path.into(), source })?;
    let io = |source| ControlError::Io { path: path.into(), source };
    s.set_read_timeout(Some(Duration::from_secs(5))).map_err(io)?;
    s.write_all(format!("{req}\n").as_bytes()).map_err(io)?;
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).map_err(io)?;
    serde_json::from_str(line.trim()).map_err(|_| ControlError::Reply { path: path.into(), text: line })
}
