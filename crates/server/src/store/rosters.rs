//! Rosters: items, and the RFC 6121 subscription state machines of both
//! accounts run in the one transaction that changes them.

use stanza::BareJid;

use super::StoreError;
use crate::roster::{Outcome, RosterItem, SubKind};

/// One subscription stanza through both servers (RFC 6121 §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// The sender's half: its new item for the contact.
    pub user: Outcome,
    /// The contact's half, when the stanza reached a local account.
    pub contact: Option<Outcome>,
    /// What the contact's server answered on its own (a `subscribed` for
    /// an existing subscription or a pre-approval, an `unsubscribed` for no
    /// such account), already applied to the sender's item.
    pub reply: Option<(SubKind, Outcome)>,
}

/// (the user's item for the contact, the contact's item for the user).
pub type RosterPair = (Option<RosterItem>, Option<RosterItem>);

/// What removing a roster item did: both items before, and the
/// unsubscribe/unsubscribed exchanges it made.
#[derive(Debug, Clone)]
pub struct RosterRemoval {
    /// (the owner's item for the contact, the contact's item for the owner)
    /// as they were inside the removing transaction.
    pub before: RosterPair,
    /// The unsubscribe and unsubscribed halves.
    pub exchanges: Vec<Exchange>,
}

/// Per-account roster quotas, checked inside the write transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RosterQuota {
    /// Most roster items (hidden pending requests included).
    pub max_items: usize,
    /// Most pending incoming subscription requests.
    pub max_pending: usize,
}

impl RosterQuota {
    /// No limits (tests, seeding).
    pub const UNLIMITED: Self = Self {
        max_items: usize::MAX,
        max_pending: usize::MAX,
    };
}

/// Rosters and subscription state.
pub trait RosterStore {
    /// Every item of `owner`'s roster, hidden pending-in requests included.
    fn roster(&self, owner: &BareJid) -> Result<Vec<(BareJid, RosterItem)>, StoreError>;

    /// One roster item.
    fn roster_item(
        &self,
        owner: &BareJid,
        contact: &BareJid,
    ) -> Result<Option<RosterItem>, StoreError>;

    /// Every (owner, contact) whose item has a `from` or `both`
    /// subscription: the presence follows, to rebuild the fan-out index.
    fn all_presence_follows(&self) -> Result<Vec<(BareJid, BareJid)>, StoreError>;

    /// Adds or updates a roster item's name and groups (RFC 6121 §2.3).
    /// Durable when it returns.
    fn roster_update(
        &self,
        owner: &BareJid,
        contact: &BareJid,
        name: Option<String>,
        groups: Vec<String>,
        max_items: usize,
    ) -> Result<RosterItem, StoreError>;

    /// Runs one subscription stanza from `user` about `contact` through
    /// both servers' state machines in one transaction (RFC 6121 §3).
    /// `contact_local`: the contact's account is served here; otherwise
    /// only the user's half runs. Durable when it returns.
    fn subscription(
        &self,
        user: &BareJid,
        contact: &BareJid,
        kind: SubKind,
        contact_local: bool,
        quota: RosterQuota,
    ) -> Result<(RosterPair, Exchange), StoreError>;

    /// Runs a subscription stanza from a remote `user` through the local
    /// `contact`'s half of the state machine (RFC 6121 §3, the contact's
    /// server): its item before, and the outcome. `None` when `contact` has
    /// no account (a `subscribe` is then answered `unsubscribed`). Durable
    /// when it returns.
    fn inbound_subscription(
        &self,
        contact: &BareJid,
        user: &BareJid,
        kind: SubKind,
        quota: RosterQuota,
    ) -> Result<Option<(Option<RosterItem>, Outcome)>, StoreError>;

    /// Removes a roster item (RFC 6121 §2.5): cancels the subscription both
    /// ways as `unsubscribe` and `unsubscribed` would, then deletes it.
    /// Returns the two exchanges, for their pushes and routing.
    fn roster_remove(
        &self,
        owner: &BareJid,
        contact: &BareJid,
        contact_local: bool,
    ) -> Result<Option<RosterRemoval>, StoreError>;
}
