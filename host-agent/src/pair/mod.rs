//! Firewall-pair mode: both nodes run this; the active one holds the virtual IPs.
//!
//! `driver` runs the election and carries out its actions; the other modules are what it
//! drives or listens to: `net` (advert sockets), `netlink` (VIPs), `announce` (GARP/NA),
//! `checks` (health), `control` (operator socket), `hooks` (notify scripts), `conntrack`
//! (conntrackd on transitions), `vmac` (macvlans with the virtual MAC), `persist` (term and
//! replay mark kept across restarts), `status` (the control socket's status reply) and `drill`
//! (the readiness drill's checks).

pub mod announce;
pub mod checks;
pub mod conntrack;
pub mod control;
pub mod drill;
mod driver;
mod hooks;
pub mod net;
pub mod netlink;
pub mod persist;
mod status;
mod vmac;

pub use driver::{remove_vips, run, PairError, PairOptions};
