//! The durable store: what the server keeps, by concern, behind traits.
//!
//! # Layout
//! - [`accounts`]: accounts with their SCRAM keys ([`AccountStore`]).
//! - [`pubsub`]: nodes, items, RSM pages and explicit subscriptions
//!   ([`PubsubStore`]).
//! - [`rosters`]: roster items, and subscription exchanges run through
//!   both accounts' state machines in one transaction ([`RosterStore`]).
//! - [`blocks`]: block lists ([`BlockStore`]).
//! - [`maintenance`]: schema version, seeding, account deletion
//!   ([`MaintenanceStore`]).
//! - [`statuses`]: the HTTP API's status ids beside microblog items
//!   ([`StatusStore`]).
//! - [`tokens`]: the HTTP API's applications and hashed tokens
//!   ([`TokenStore`]).
//! - [`redb`]: the one implementation: open, migrations, tables.
//! - [`hooked`]: a wrapper that runs a hook before each call, for tests
//!   of store faults and of changes racing a request.
//!
//! The server holds an `Arc<dyn Store>`, every concern at once, so a
//! second backend (PostgreSQL, for a cluster) implements the seven traits
//! and nothing else changes. Every write is durable when it returns, and
//! every call blocks (disk, fsync): async code runs it through
//! `blocking`, which also turns a failed task into a [`StoreError`].

use std::sync::Arc;

pub mod accounts;
pub mod blocks;
pub mod hooked;
pub mod maintenance;
pub mod pubsub;
pub mod redb;
pub mod rosters;
pub mod statuses;
pub mod tokens;

pub use self::redb::Redb;
pub use accounts::{AccountRecord, AccountStore};
pub use blocks::BlockStore;
pub use maintenance::{Deleted, MaintenanceStore, Seed};
pub use pubsub::{
    Anchor, Budget, NodeRecord, Page, PublishError, PublishRequest, PubsubStore, Subscription,
};
pub use rosters::{Exchange, RosterPair, RosterQuota, RosterRemoval, RosterStore};
pub use statuses::{Status, StatusRange, StatusStore};
pub use tokens::{AppRecord, TokenRecord, TokenStore};

/// Every concern together: what the server runs on.
pub trait Store:
    AccountStore
    + PubsubStore
    + RosterStore
    + BlockStore
    + MaintenanceStore
    + StatusStore
    + TokenStore
    + Send
    + Sync
    + 'static
{
}

impl<T> Store for T where
    T: AccountStore
        + PubsubStore
        + RosterStore
        + BlockStore
        + MaintenanceStore
        + StatusStore
        + TokenStore
        + Send
        + Sync
        + 'static
{
}

/// The store traits, for callers that use the methods.
pub mod prelude {
    pub use super::{
        AccountStore as _, BlockStore as _, MaintenanceStore as _, PubsubStore as _,
        RosterStore as _, StatusStore as _, Store, TokenStore as _,
    };
}

/// Runs `f` on the blocking pool with the store, so the async workers never
/// wait on the disk. A task that panicked becomes [`StoreError::Task`].
pub(crate) async fn blocking<T, E>(
    store: &Arc<dyn Store>,
    f: impl FnOnce(&dyn Store) -> Result<T, E> + Send + 'static,
) -> Result<T, E>
where
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
{
    let store = store.clone();
    match tokio::task::spawn_blocking(move || f(&*store)).await {
        Ok(r) => r,
        Err(e) => Err(StoreError::Task(e).into()),
    }
}

/// Which quota a change would exceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quota {
    /// The user's roster is full.
    RosterItems,
    /// The contact has too many pending requests (or a full roster).
    PendingRequests,
    /// The block list is full.
    BlockList,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A per-account quota would be exceeded; nothing was written.
    #[error("quota exceeded: {0:?}")]
    Quota(Quota),
    /// The account exists already.
    #[error("account {0} exists")]
    Exists(String),
    /// No such account.
    #[error("no account {0}")]
    NotFound(String),
    /// The file was written by a newer Starling.
    #[error("store schema version {found} is newer than this build's {supported}")]
    TooNew {
        /// The version in the file.
        found: u64,
        /// The newest this build knows.
        supported: u64,
    },
    /// A record could not be decoded.
    #[error("corrupt record for {0}: {1}")]
    Corrupt(String, String),
    /// The database failed.
    #[error("database: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A record could not be encoded.
    #[error("encoding a record: {0}")]
    Encode(#[from] serde_json::Error),
    /// The data directory could not be prepared.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: std::path::PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The blocking task running the call panicked or was cancelled.
    #[error("store task: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The store is shutting down and takes no more writes.
    #[error("the store is shut down")]
    Closed,
    /// The group commit this write was part of failed.
    #[error("group commit: {0}")]
    Batch(#[source] std::sync::Arc<StoreError>),
}
