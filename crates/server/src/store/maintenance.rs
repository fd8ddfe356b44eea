//! Maintenance: the schema version, bulk seeding for load tests, and
//! deleting an account with everything it owned.

use stanza::BareJid;

use super::{AccountRecord, StoreError, Subscription};
use crate::pubsub::NodeConfig;
use crate::roster::RosterItem;

/// What [`MaintenanceStore::seed`] imports.
#[derive(Debug, Clone, Default)]
pub struct Seed {
    /// Accounts.
    pub accounts: Vec<(BareJid, AccountRecord)>,
    /// Roster items: (owner, contact, item).
    pub roster: Vec<(BareJid, BareJid, RosterItem)>,
    /// Nodes with their configuration.
    pub nodes: Vec<(BareJid, String, NodeConfig)>,
    /// Explicit subscriptions.
    pub subscriptions: Vec<Subscription>,
    /// API tokens, by their SHA-256 hash.
    pub tokens: Vec<([u8; 32], super::TokenRecord)>,
}

/// What a deletion removed that the running server must act on.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Deleted {
    /// The account's roster, as it was: contacts to tell (`unsubscribed`,
    /// `unavailable`) and whose own items for the account were removed too.
    pub roster: Vec<(BareJid, RosterItem)>,
    /// Other accounts whose roster held an item for the deleted one (the
    /// contacts above, plus requests it left with strangers).
    pub other_sides: Vec<BareJid>,
    /// The account's own nodes, removed with their items and subscribers.
    pub nodes: Vec<String>,
    /// Subscriptions the account held to others' nodes: (owner, node, JID).
    pub subscriptions: Vec<(BareJid, String, String)>,
}

/// Schema, seeding, deletion.
pub trait MaintenanceStore {
    /// The schema version of the open file.
    fn schema_version(&self) -> Result<u64, StoreError>;

    /// Imports accounts, roster items, nodes and subscriptions in one
    /// transaction, for load-test set-up (loadgen seeds an embedded server
    /// this way instead of running thousands of subscription exchanges).
    /// Existing records with the same keys are replaced; an existing node
    /// keeps its items.
    fn seed(&self, seed: &Seed) -> Result<(), StoreError>;

    /// Deletes `jid` and everything it owned: its nodes, their items and
    /// subscribers; its subscriptions to other nodes; its roster and the
    /// items other accounts kept for it (pending requests included); its
    /// block list. Fails with [`StoreError::NotFound`] when there is no
    /// such account.
    fn delete_account(&self, jid: &BareJid) -> Result<Deleted, StoreError>;
}
