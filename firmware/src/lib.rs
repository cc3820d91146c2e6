//! The listener application that runs on a storage controller (or, via `boards/linux`, as a
//! Linux process). It knows no registers and no OS: every piece of hardware is one of the
//! small traits in [`board`], and time is passed in.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(test)]
extern crate std;

pub mod app;
pub mod board;
pub mod menu;
pub mod nv;
pub mod report;

pub use app::{App, Event, StartError};
