//! # starling-fanout
//!
//! Who receives a post, and how it gets into their sessions' outbound
//! queues. No sockets and no clock: the server's writer tasks drain the
//! queues, and the benches drive the same types directly.
//!
//! # Layout
//! - [`queue`]: the bounded per-session [`OutboundQueue`] of [`Frame`]s, with
//!   a waker for the writer and the slow-consumer policy.
//! - [`registry`]: the subscriber [`Registry`]: follows (presence and explicit
//!   subscriptions), sessions with presence and `+notify`, blocks, and the
//!   exact recipient set of a publish.
//! - [`map`]: the concurrent map behind the registry's JID index (dashmap
//!   and a sharded `RwLock<HashMap>`, compared in the benches).
//! - [`strategy`]: the [`Fanout`] interface and its strategies `naive`,
//!   `shared`, `sharded` and `broadcast`, selectable with [`by_name`].
//! - `compact`: lazily allocated maps and a hasher of no size, which keep
//!   an account that publishes nothing small.
//! - [`handle`]: the [`OutboundHandle`] a session's writer drains.
//! - [`unacked`]: XEP-0198 counts and the bounded buffer of stanzas sent
//!   and not yet acknowledged, which a resumed session sends again.

mod compact;
pub mod handle;
pub mod map;
mod prefetch;
pub mod queue;
pub mod registry;
pub mod strategy;
pub mod unacked;

pub use handle::OutboundHandle;
pub use queue::{Frame, OutboundQueue, PushError, QueueState};
pub use registry::{Account, NodeId, Presence, Registry, SessionEntry, SessionId, Target};
pub use strategy::{
    by_name, Config, DeliveryReport, DropReason, Dropped, Fanout, Publish, StatsSnapshot,
    UnknownStrategy, STRATEGIES,
};
