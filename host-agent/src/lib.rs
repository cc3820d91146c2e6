//! The Linux side of Rearguard: the primary's heartbeat agent and everything it needs to
//! touch the OS (direct block I/O, watchdog, fencing commands, TOML config).

pub mod agent;
pub mod blockdev;
pub mod config;
pub mod drill;
pub mod fence;
pub mod pair;
pub mod serial;
pub mod sys;
pub mod time;
