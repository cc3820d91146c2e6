//! Firewall-pair mode: both nodes run this; the active one holds the virtual IPs.
//!
//! `driver` runs the election and carries out its actions; the other modules are what it
//! drives or listens to: `net` (advert sockets), `netlink` (VIPs), `announce` (GARP/NA),
//! `checks` (health), `control` (operator socket), `hooks` (notify scripts), `persist` (term
//! and replay mark kept across restarts) and `status` (the control socket's status reply).

pub mod announce;
pub mod checks;
pub mod control;
mod driver;
mod hooks;
pub mod net;
pub mod netlink;
mod persist;
mod status;

pub use driver::{remove_vips, run, PairError, PairOptions};
