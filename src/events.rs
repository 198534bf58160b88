//! The messages from the target tasks to the reconcilers.

use std::sync::Arc;

use crate::core::health::State;
use crate::dane::KeyDigest;
use crate::targets::TargetId;

/// What a target task reports. Events carry the generation of the
/// configuration their task was started for: after a reload, events of the
/// old tasks still under way are ignored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Rise or fall decided a new state.
    Transition {
        generation: u64,
        target: TargetId,
        state: State,
    },
    /// The target's first probe finished (for readiness).
    FirstResult { generation: u64, target: TargetId },
    /// An up target saw a failure and may fall (`within`: by when it
    /// decides if its next probes fail as fast), or it recovered
    /// (`within: None`). Its zone's reconciler holds a node's removal in
    /// one pool for the node's other pools that are falling, so that the
    /// node leaves all of them in one UPDATE.
    Falling {
        generation: u64,
        target: TargetId,
        within: Option<std::time::Duration>,
    },
    /// A handshake of a `dane = "manage"` target showed a key other than
    /// the one told before: the SHA-256 of its SubjectPublicKeyInfo. Sent
    /// before the transition the same probe may decide.
    ServedKey {
        generation: u64,
        target: TargetId,
        key: KeyDigest,
    },
}

/// Where a target task sends its events: its zone's reconciler. A closure,
/// so that the target tasks know nothing of the reconciler's types.
#[derive(Clone)]
pub struct Outbox(Arc<dyn Fn(Event) + Send + Sync>);

impl Outbox {
    pub fn new(send: impl Fn(Event) + Send + Sync + 'static) -> Self {
        Self(Arc::new(send))
    }

    pub fn send(&self, event: Event) {
        (self.0)(event);
    }
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Outbox")
    }
}
