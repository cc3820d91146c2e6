//! Rearguard's shared core.
//!
//! Everything here is `no_std`, allocation-free and I/O-free: formats are encoded into
//! caller-provided buffers, and every state machine is a pure function of
//! `(state, input, now)` returning a short list of actions. The firmware, the Linux
//! agent, the demo and the tests all drive the same code.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(test)]
extern crate std;

pub mod config;
pub mod debounce;
pub mod detector;
pub mod disk;
pub mod election;
pub mod fencing;
pub mod frame;
pub mod heartbeat;
pub mod image;
pub mod integrity;
pub mod link;
pub mod listener;
pub mod reject;
pub mod text;
pub mod time;
pub mod wire;

/// Version of the heartbeat wire format. A peer speaking another version is rejected.
/// 2: heartbeats carry the sender's fencing budget and test-message acknowledgements.
pub const PROTOCOL_VERSION: u8 = 2;

pub use time::{Duration, Instant};
