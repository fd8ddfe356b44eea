//! Publish-subscribe: nodes, their items (ordered, trimmed, paged with
//! RSM), and explicit subscriptions (XEP-0060).

use serde::{Deserialize, Serialize};
use stanza::BareJid;

use super::StoreError;
use crate::pubsub::{NodeConfig, Options, StoredItem};

/// One stored explicit subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The node's owner.
    pub owner: BareJid,
    /// The node.
    pub node: String,
    /// The subscribed JID, bare or full.
    pub jid: stanza::Jid,
}

/// A node as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Its configuration.
    pub config: NodeConfig,
    /// The next item's sequence number.
    pub next_seq: u64,
    /// Items stored now.
    pub count: u64,
}

/// One publish for [`PubsubStore::publish_batch`].
#[derive(Debug, Clone)]
pub struct PublishRequest {
    /// The node's owner.
    pub owner: BareJid,
    /// The node.
    pub node: String,
    /// The item.
    pub item: StoredItem,
    /// `<publish-options/>`, if sent.
    pub options: Option<Options>,
    /// Most nodes the owner may have: a publish that would create one more
    /// is refused.
    pub max_nodes: usize,
}

/// Why a publish was refused.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// publish-options disagree with the existing node.
    #[error("publish-options do not match the node configuration")]
    PreconditionNotMet,
    /// The node does not exist and the owner already has `max_nodes`.
    #[error("the owner has reached the node limit")]
    TooManyNodes,
    /// The store failed; nothing of the batch was written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where an RSM page starts (XEP-0059 §2).
pub use stanza::xep::rsm::Anchor;

/// How much one reply may carry: a request must not be able to make the
/// server read and send more than this, whatever it asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Most items.
    pub items: usize,
    /// Most payload bytes, all items together.
    pub bytes: usize,
}

impl Budget {
    /// No limit (tests and internal reads of known-small sets).
    pub const UNLIMITED: Self = Self {
        items: usize::MAX,
        bytes: usize::MAX,
    };
    /// At most `items` items, any size.
    pub fn items(items: usize) -> Self {
        Self {
            items,
            bytes: usize::MAX,
        }
    }
    /// Whether an item of `len` bytes still fits after `taken` items of
    /// `used` bytes.
    pub fn fits(&self, taken: usize, used: usize, len: usize) -> bool {
        taken < self.items && used.saturating_add(len) <= self.bytes
    }
}

/// One RSM page of items, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The items.
    pub items: Vec<StoredItem>,
    /// The position of the first of them in the whole list.
    pub first_index: u64,
    /// How many items the node holds.
    pub count: u64,
}

/// Nodes, items and explicit subscriptions.
pub trait PubsubStore {
    /// Applies publishes in one write transaction: one fsync for the whole
    /// batch (group commit). Each result says whether that publish was
    /// applied; a refused publish writes nothing.
    fn publish_batch(
        &self,
        reqs: &[PublishRequest],
    ) -> Result<Vec<Result<NodeConfig, PublishError>>, StoreError>;

    /// Creates `owner`'s node with `options` applied to the defaults, if it
    /// does not exist; its configuration either way (an existing node is
    /// left as it is). Refused when it would exceed `max_nodes`.
    fn create_node(
        &self,
        owner: &BareJid,
        node: &str,
        options: &Options,
        max_nodes: usize,
    ) -> Result<Result<NodeConfig, PublishError>, StoreError>;

    /// Removes one item. `Ok(None)` when the node or the item does not
    /// exist; otherwise the node's configuration. Durable when it returns.
    fn retract(
        &self,
        owner: &BareJid,
        node: &str,
        id: &str,
    ) -> Result<Option<NodeConfig>, StoreError>;

    /// A node's record.
    fn node(&self, owner: &BareJid, node: &str) -> Result<Option<NodeRecord>, StoreError>;

    /// The newest items that fit `budget`, oldest first.
    fn items(
        &self,
        owner: &BareJid,
        node: &str,
        budget: Budget,
    ) -> Result<Vec<StoredItem>, StoreError>;

    /// One item by id.
    fn item(&self, owner: &BareJid, node: &str, id: &str)
        -> Result<Option<StoredItem>, StoreError>;

    /// Records an explicit subscription. Durable when it returns.
    fn subscribe(&self, owner: &BareJid, node: &str, jid: &stanza::Jid) -> Result<(), StoreError>;

    /// Removes an explicit subscription; false when there was none.
    fn unsubscribe(
        &self,
        owner: &BareJid,
        node: &str,
        jid: &stanza::Jid,
    ) -> Result<bool, StoreError>;

    /// The subscribers of one node, bare or full.
    fn node_subscriptions(
        &self,
        owner: &BareJid,
        node: &str,
    ) -> Result<Vec<stanza::Jid>, StoreError>;

    /// Every subscription held by `subscriber`'s account, by any of its
    /// JIDs (XEP-0060 §5.6).
    fn subscriptions_of(&self, subscriber: &BareJid) -> Result<Vec<Subscription>, StoreError>;

    /// `owner`'s nodes with their configurations.
    fn nodes_of(&self, owner: &BareJid) -> Result<Vec<(String, NodeConfig)>, StoreError>;

    /// Changes a node's configuration (XEP-0060 §8.2.3); `None` when there
    /// is no such node. Items beyond a lowered limit are dropped, oldest
    /// first. Durable when it returns.
    fn configure(
        &self,
        owner: &BareJid,
        node: &str,
        options: &Options,
    ) -> Result<Option<NodeConfig>, StoreError>;

    /// Removes every item of a node (XEP-0060 §8.5); `None` when there is
    /// no such node, else its configuration. Durable when it returns.
    fn purge(&self, owner: &BareJid, node: &str) -> Result<Option<NodeConfig>, StoreError>;

    /// Deletes a node with its items and subscriptions (XEP-0060 §8.4).
    /// Returns the subscriptions it had, or `None` when there was no such
    /// node. Durable when it returns.
    fn delete_node(
        &self,
        owner: &BareJid,
        node: &str,
    ) -> Result<Option<Vec<stanza::Jid>>, StoreError>;

    /// One page of a node's items for RSM (XEP-0059), over the items
    /// ordered oldest to newest. `None` when the anchor item is unknown.
    fn items_page(
        &self,
        owner: &BareJid,
        node: &str,
        anchor: &Anchor,
        budget: Budget,
    ) -> Result<Option<Page>, StoreError>;

    /// Every explicit subscription, to rebuild the fan-out registry at start.
    fn all_subscriptions(&self) -> Result<Vec<Subscription>, StoreError>;

    /// Every node, with its owner and configuration, to rebuild access
    /// rules at start.
    fn all_nodes(&self) -> Result<Vec<(BareJid, String, NodeConfig)>, StoreError>;
}
