//! What the model checks share: state identity through `Debug`, and running a checker with
//! its figures printed.
//!
//! The shared state machines are plain `Clone + Debug` values; they do not implement `Hash`
//! (nothing in the product needs it, and deriving it through every nested type would bind
//! the wire types to the model). A derived `Debug` prints every field, so it is a faithful
//! identity: the models hash and compare states by streaming their `Debug` text into the
//! hasher, with no allocation.

use stateright::{Checker, HasDiscoveries, Model};
use std::fmt::{self, Debug, Write};
use std::hash::{Hash, Hasher};
use std::time::Instant;

struct HashWriter<'a, H: Hasher>(&'a mut H);

impl<H: Hasher> Write for HashWriter<'_, H> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.write(s.as_bytes());
        Ok(())
    }
}

/// Hashes `v` by its `Debug` text.
pub fn hash_debug<T: Debug, H: Hasher>(v: &T, h: &mut H) {
    let _ = write!(HashWriter(h), "{v:?}");
}

/// Equality by `Debug` text (only used to print paths).
pub fn eq_debug<T: Debug>(a: &T, b: &T) -> bool {
    format!("{a:?}") == format!("{b:?}")
}

/// Implements `Hash` and `PartialEq` for a model state through its `Debug` text.
#[macro_export]
macro_rules! identity_by_debug {
    ($t:ty) => {
        impl std::hash::Hash for $t {
            fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
                $crate::model::hash_debug(self, h)
            }
        }
        impl PartialEq for $t {
            fn eq(&self, other: &Self) -> bool {
                $crate::model::eq_debug(self, other)
            }
        }
    };
}

/// The figures of one run, printed so the suite's log carries them.
pub struct Run {
    pub unique: usize,
    pub generated: usize,
    pub depth: usize,
    pub secs: f64,
}

/// Explores `model` breadth-first to its boundary; prints the figures. With `stop_at`, stops
/// at the first discovery of that property (the broken variants).
pub fn explore<M>(name: &str, model: M, stop_at: Option<&'static str>) -> (Run, impl Checker<M>)
where
    M: Model + Send + Sync + 'static,
    M::State: Clone + Debug + Hash + PartialEq + Send + Sync + 'static,
    M::Action: Clone + Debug + PartialEq + Send + Sync + 'static,
{
    let t = Instant::now();
    let mut b = model.checker().threads(2);
    if let Some(p) = stop_at {
        b = b.finish_when(HasDiscoveries::AnyOf([p].into_iter().collect()));
    }
    let c = b.spawn_bfs().join();
    let run = Run {
        unique: c.unique_state_count(),
        generated: c.state_count(),
        depth: c.max_depth(),
        secs: t.elapsed().as_secs_f64(),
    };
    eprintln!(
        "model {name}: {} unique states ({} generated), depth {}, {:.1} s",
        run.unique, run.generated, run.depth, run.secs
    );
    (run, c)
}

/// Asserts that `property` has a counterexample and prints it (the broken variants).
pub fn expect_counterexample<M, C>(checker: &C, property: &'static str)
where
    M: Model,
    M::State: Clone + Debug + PartialEq,
    M::Action: Clone + Debug + PartialEq,
    C: Checker<M>,
{
    let path = checker.discovery(property).unwrap_or_else(|| panic!("no counterexample for {property:?}"));
    let actions: Vec<String> = path.into_actions().iter().map(|a| format!("{a:?}")).collect();
    eprintln!("counterexample for {property:?} in {} steps: {}", actions.len(), actions.join(", "));
}

/// A primary's heartbeat as its agent writes it to its slot (the encoded frame's bytes), for
/// the standby models.
#[allow(dead_code)] // the pair model has no slot
pub fn heartbeat_frame(cluster_id: u32, node: u8, epoch: u32, seq: u64) -> Vec<u8> {
    use rearguard_shared::heartbeat::{self, HealthFlags, Heartbeat, NodeState, Role, MAX_FRAME};
    let hb = Heartbeat {
        cluster_id,
        node_id: node,
        role: Role::Primary,
        boot_epoch: epoch,
        sequence: seq,
        uptime: rearguard_shared::Duration::from_millis(seq * 100),
        state: NodeState::Active,
        health: HealthFlags::OK,
        config_digest: 1,
        build_stamp: 2,
        budget: rearguard_shared::fencing::FencingBudget::NONE,
        test_acks: 0,
        last_test: 0,
    };
    let mut frame = [0u8; MAX_FRAME];
    let n = heartbeat::encode(&hb, None, &mut frame);
    frame[..n].to_vec()
}
