//! Block lists (XEP-0191).

use stanza::BareJid;

use super::StoreError;

/// Block lists.
pub trait BlockStore {
    /// `owner`'s block list (XEP-0191).
    fn blocklist(&self, owner: &BareJid) -> Result<Vec<stanza::Jid>, StoreError>;

    /// Every account's block list, to rebuild the fan-out index.
    fn all_blocks(&self) -> Result<Vec<(BareJid, Vec<stanza::Jid>)>, StoreError>;

    /// Adds (`block`) or removes JIDs from `owner`'s block list; an empty
    /// `jids` with `block == false` clears it. Returns the JIDs whose state
    /// changed. A block that would take the list past `max_items` writes
    /// nothing and fails with [`super::Quota::BlockList`]. Durable when it returns.
    fn set_blocked(
        &self,
        owner: &BareJid,
        jids: &[stanza::Jid],
        block: bool,
        max_items: usize,
    ) -> Result<Vec<stanza::Jid>, StoreError>;
}
