//! Status ids for the Mastodon-compatible API: each microblog item
//! (`urn:xmpp:microblog:0`) gets, at its first publish, a numeric id that
//! increases with publish time (milliseconds shifted left by 16 bits, as
//! Mastodon's own ids are), kept beside the XEP-0277 item id.
//!
//! Republishing an item id is an edit: the status keeps its id, so API
//! timelines keep first-publish order while XMPP history (PROTOCOL §5)
//! moves the replaced item to the newest place. Retracting, trimming,
//! purging or deleting the node removes the status with the item.

use stanza::BareJid;

use super::StoreError;
use crate::pubsub::StoredItem;

/// One status: its id, whose node it is on, and the item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The API id.
    pub id: u64,
    /// The node's owner, the author.
    pub owner: BareJid,
    /// The item as stored (its `published_ms` is the latest publish).
    pub item: StoredItem,
}

impl Status {
    /// When the status was first published, in milliseconds since the
    /// Unix epoch (from its id).
    pub fn created_ms(&self) -> u64 {
        self.id >> 16
    }

    /// When it was last edited: a republish of the same item id.
    pub fn edited_ms(&self) -> Option<u64> {
        (self.item.published_ms > self.created_ms()).then_some(self.item.published_ms)
    }
}

/// A page of statuses, as the API's paging parameters ask (all bounds
/// exclusive): older than `max_id`, newer than `since_id`; with `min_id`,
/// the page just newer than it (the oldest such, still returned newest
/// first).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusRange {
    /// Older than this.
    pub max_id: Option<u64>,
    /// Newer than this; the newest page.
    pub since_id: Option<u64>,
    /// Newer than this; the page right after it.
    pub min_id: Option<u64>,
}

impl StatusRange {
    /// The ids the range admits, as inclusive bounds.
    pub fn bounds(&self) -> (u64, u64) {
        let low = self
            .since_id
            .into_iter()
            .chain(self.min_id)
            .max()
            .map_or(0, |i| i.saturating_add(1));
        let high = self.max_id.map_or(u64::MAX, |i| i.saturating_sub(1));
        (low, high)
    }

    /// Whether the page is taken from the old end (`min_id`).
    pub fn ascending(&self) -> bool {
        self.min_id.is_some()
    }
}

/// Statuses by id, by author, and all of them.
pub trait StatusStore {
    /// One status by id.
    fn status(&self, id: u64) -> Result<Option<Status>, StoreError>;

    /// The status id of `owner`'s microblog item `item_id`.
    fn status_id(&self, owner: &BareJid, item_id: &str) -> Result<Option<u64>, StoreError>;

    /// Up to `limit` statuses of each of `authors` in `range`, merged:
    /// newest first. One author is an account's statuses; many are a home
    /// timeline (a k-way merge over the authors' indexes).
    fn statuses_by(
        &self,
        authors: &[BareJid],
        range: StatusRange,
        limit: usize,
    ) -> Result<Vec<Status>, StoreError>;

    /// Up to `limit` statuses in `range` from anyone, newest first, that
    /// `keep` admits; at most `scan` are looked at, so a page of mostly
    /// filtered statuses stays bounded.
    fn all_statuses(
        &self,
        range: StatusRange,
        limit: usize,
        scan: usize,
        keep: &mut dyn FnMut(&BareJid) -> bool,
    ) -> Result<Vec<Status>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_exclusive_and_min_id_pages_from_the_old_end() {
        assert_eq!(StatusRange::default().bounds(), (0, u64::MAX));
        let r = StatusRange {
            max_id: Some(10),
            since_id: Some(3),
            min_id: None,
        };
        assert_eq!(r.bounds(), (4, 9));
        assert!(!r.ascending());
        let r = StatusRange {
            min_id: Some(5),
            since_id: Some(2),
            ..StatusRange::default()
        };
        assert_eq!(r.bounds(), (6, u64::MAX));
        assert!(r.ascending());
    }
}
