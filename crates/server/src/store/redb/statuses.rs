//! Status ids on redb: assigned inside the publish transaction, removed
//! with their items (see `store::statuses`).

use std::collections::BinaryHeap;

use redb::{ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use stanza::{ns, BareJid};

use super::{decode, node_key, parse_jid, Redb, ITEMS, ITEM_IDS, META};
use crate::pubsub::StoredItem;
use crate::store::{Status, StatusRange, StatusStore, StoreError};

/// (`owner NUL node`, item id) -> status id; microblog nodes only.
pub(super) const STATUS_IDS: TableDefinition<'_, (&str, &str), u64> =
    TableDefinition::new("status_ids");
/// status id -> (owner, item id).
pub(super) const STATUSES: TableDefinition<'_, u64, (&str, &str)> =
    TableDefinition::new("statuses");
/// (owner, status id) -> item id: each author's statuses in id order.
pub(super) const AUTHOR_STATUSES: TableDefinition<'_, (&str, u64), &str> =
    TableDefinition::new("author_statuses");

const LAST_ID: &str = "last_status_id";

/// The owner, when `key` is a microblog node's.
fn microblog_owner(key: &str) -> Option<&str> {
    key.strip_suffix(ns::MICROBLOG)?.strip_suffix('\u{0}')
}

/// Gives `item_id` on node `key` a status id, unless it has one (an edit).
pub(super) fn assign(
    tx: &WriteTransaction,
    key: &str,
    item_id: &str,
    ms: u64,
) -> Result<(), StoreError> {
    let Some(owner) = microblog_owner(key) else {
        return Ok(());
    };
    let mut ids = tx.open_table(STATUS_IDS)?;
    if ids.get((key, item_id))?.is_some() {
        return Ok(());
    }
    let mut meta = tx.open_table(META)?;
    let last = meta.get(LAST_ID)?.map_or(0, |v| v.value());
    // Time-ordered, and strictly increasing even if the clock steps back.
    let id = (ms << 16).max(last + 1);
    meta.insert(LAST_ID, id)?;
    ids.insert((key, item_id), id)?;
    tx.open_table(STATUSES)?.insert(id, (owner, item_id))?;
    tx.open_table(AUTHOR_STATUSES)?
        .insert((owner, id), item_id)?;
    Ok(())
}

/// Removes the status of `item_id` on node `key`, if it has one.
pub(super) fn forget(tx: &WriteTransaction, key: &str, item_id: &str) -> Result<(), StoreError> {
    let Some(owner) = microblog_owner(key) else {
        return Ok(());
    };
    let id = tx
        .open_table(STATUS_IDS)?
        .remove((key, item_id))?
        .map(|v| v.value());
    if let Some(id) = id {
        tx.open_table(STATUSES)?.remove(id)?;
        tx.open_table(AUTHOR_STATUSES)?.remove((owner, id))?;
    }
    Ok(())
}

/// Removes every status of node `key` (purge, node or account deletion).
pub(super) fn forget_all(tx: &WriteTransaction, key: &str) -> Result<(), StoreError> {
    let Some(owner) = microblog_owner(key) else {
        return Ok(());
    };
    let mut by_author = tx.open_table(AUTHOR_STATUSES)?;
    let mut statuses = tx.open_table(STATUSES)?;
    let mut ids = tx.open_table(STATUS_IDS)?;
    let mine: Vec<(u64, String)> = by_author
        .range((owner, 0)..=(owner, u64::MAX))?
        .map(|e| e.map(|(k, v)| (k.value().1, v.value().to_owned())))
        .collect::<Result<_, _>>()?;
    for (id, item) in mine {
        by_author.remove((owner, id))?;
        statuses.remove(id)?;
        ids.remove((key, item.as_str()))?;
    }
    Ok(())
}

/// Gives every stored microblog item a status id, in publish order: the
/// migration to schema 5.
pub(super) fn backfill(tx: &WriteTransaction) -> Result<(), StoreError> {
    let mut found: Vec<(u64, String, String)> = Vec::new();
    {
        let items = tx.open_table(ITEMS)?;
        for e in items.iter()? {
            let (k, v) = e?;
            let key = k.value().0;
            if microblog_owner(key).is_some() {
                let item: StoredItem = decode(key, v.value())?;
                found.push((item.published_ms, key.to_owned(), item.id));
            }
        }
    }
    found.sort();
    for (ms, key, id) in found {
        assign(tx, &key, &id, ms)?;
    }
    Ok(())
}

/// Reads one status's item through open tables.
fn load(
    ids: &impl ReadableTable<(&'static str, &'static str), u64>,
    items: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    owner: &str,
    item_id: &str,
    id: u64,
) -> Result<Option<Status>, StoreError> {
    let key = node_key(&parse_jid(owner)?, ns::MICROBLOG);
    let Some(seq) = ids.get((key.as_str(), item_id))?.map(|v| v.value()) else {
        return Ok(None);
    };
    let Some(bytes) = items.get((key.as_str(), seq))? else {
        return Ok(None);
    };
    Ok(Some(Status {
        id,
        owner: parse_jid(owner)?,
        item: decode(&key, bytes.value())?,
    }))
}

impl StatusStore for Redb {
    fn status(&self, id: u64) -> Result<Option<Status>, StoreError> {
        let tx = self.db.begin_read()?;
        let statuses = tx.open_table(STATUSES)?;
        let Some(v) = statuses.get(id)? else {
            return Ok(None);
        };
        let (owner, item) = v.value();
        load(
            &tx.open_table(ITEM_IDS)?,
            &tx.open_table(ITEMS)?,
            owner,
            item,
            id,
        )
    }

    fn status_id(&self, owner: &BareJid, item_id: &str) -> Result<Option<u64>, StoreError> {
        let key = node_key(owner, ns::MICROBLOG);
        let tx = self.db.begin_read()?;
        let t = tx.open_table(STATUS_IDS)?;
        Ok(t.get((key.as_str(), item_id))?.map(|v| v.value()))
    }

    fn statuses_by(
        &self,
        authors: &[BareJid],
        range: StatusRange,
        limit: usize,
    ) -> Result<Vec<Status>, StoreError> {
        let (low, high) = range.bounds();
        if low > high || limit == 0 {
            return Ok(Vec::new());
        }
        let tx = self.db.begin_read()?;
        let by_author = tx.open_table(AUTHOR_STATUSES)?;
        let (ids, items) = (tx.open_table(ITEM_IDS)?, tx.open_table(ITEMS)?);
        // One lazy range per author, and a heap of their heads: the merge
        // reads `authors + limit` index entries, not `authors × limit`.
        let mut iters = Vec::with_capacity(authors.len());
        for a in authors {
            iters.push(by_author.range((a.as_str(), low)..=(a.as_str(), high))?);
        }
        let asc = range.ascending();
        // A max-heap keyed so the next status to take is on top: the
        // newest, or with `min_id` the oldest.
        let key = |id: u64| if asc { u64::MAX - id } else { id };
        let next = |i: usize, it: &mut redb::Range<'_, (&'static str, u64), &'static str>| {
            let e = if asc { it.next() } else { it.next_back() };
            e.transpose()
                .map(|o| o.map(|(k, v)| (key(k.value().1), i, v.value().to_owned())))
        };
        let mut heap = BinaryHeap::new();
        for (i, it) in iters.iter_mut().enumerate() {
            if let Some(head) = next(i, it)? {
                heap.push(head);
            }
        }
        let mut out = Vec::new();
        while out.len() < limit {
            let Some((k, i, item)) = heap.pop() else {
                break;
            };
            if let Some(s) = load(&ids, &items, authors[i].as_str(), &item, key(k))? {
                out.push(s);
            }
            if let Some(head) = next(i, &mut iters[i])? {
                heap.push(head);
            }
        }
        if asc {
            out.reverse();
        }
        Ok(out)
    }

    fn all_statuses(
        &self,
        range: StatusRange,
        limit: usize,
        scan: usize,
        keep: &mut dyn FnMut(&BareJid) -> bool,
    ) -> Result<Vec<Status>, StoreError> {
        let (low, high) = range.bounds();
        if low > high || limit == 0 {
            return Ok(Vec::new());
        }
        let tx = self.db.begin_read()?;
        let statuses = tx.open_table(STATUSES)?;
        let (ids, items) = (tx.open_table(ITEM_IDS)?, tx.open_table(ITEMS)?);
        let mut it = statuses.range(low..=high)?;
        let mut out = Vec::new();
        for _ in 0..scan {
            let e = if range.ascending() {
                it.next()
            } else {
                it.next_back()
            };
            let Some(e) = e else { break };
            let (k, v) = e?;
            let (owner, item) = v.value();
            if !keep(&parse_jid(owner)?) {
                continue;
            }
            if let Some(s) = load(&ids, &items, owner, item, k.value())? {
                out.push(s);
                if out.len() == limit {
                    break;
                }
            }
        }
        if range.ascending() {
            out.reverse();
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pubsub::Options;
    use crate::store::prelude::*;
    use crate::store::PublishRequest;

    fn publish(s: &Redb, owner: &str, node: &str, id: &str, ms: u64, options: Option<Options>) {
        let req = PublishRequest {
            owner: BareJid::new(owner).unwrap(),
            node: node.into(),
            item: StoredItem {
                id: id.into(),
                publisher: owner.into(),
                payload: format!(
                    "<entry xmlns='http://www.w3.org/2005/Atom'><title>{id}</title></entry>"
                ),
                published_ms: ms,
            },
            options,
            max_nodes: 100,
        };
        s.publish_batch(&[req]).unwrap().pop().unwrap().unwrap();
    }

    fn ids(v: &[Status]) -> Vec<&str> {
        v.iter().map(|s| s.item.id.as_str()).collect()
    }

    #[test]
    fn ids_follow_first_publish_and_survive_edits_not_retractions() {
        let dir = tempfile::tempdir().unwrap();
        let s = Redb::open(dir.path()).unwrap();
        let jane = BareJid::new("jane@a.example").unwrap();
        publish(&s, "jane@a.example", ns::MICROBLOG, "a", 1_000, None);
        publish(&s, "jane@a.example", ns::MICROBLOG, "b", 1_000, None);
        publish(&s, "jane@a.example", "urn:other", "x", 1_000, None);
        let a = s.status_id(&jane, "a").unwrap().unwrap();
        let b = s.status_id(&jane, "b").unwrap().unwrap();
        assert!(
            b > a && a >> 16 == 1_000,
            "same millisecond, still increasing"
        );
        assert_eq!(
            s.status_id(&jane, "x").unwrap(),
            None,
            "other nodes get none"
        );
        // An edit: same id, edited time set, first-publish order kept.
        publish(&s, "jane@a.example", ns::MICROBLOG, "a", 5_000, None);
        let st = s.status(a).unwrap().unwrap();
        assert_eq!(
            (st.id, st.created_ms(), st.edited_ms()),
            (a, 1_000, Some(5_000))
        );
        let all = s
            .statuses_by(std::slice::from_ref(&jane), StatusRange::default(), 10)
            .unwrap();
        assert_eq!(ids(&all), ["b", "a"]);
        assert_eq!(s.status(b).unwrap().unwrap().edited_ms(), None);
        // Retracted: gone by id and from the index.
        s.retract(&jane, ns::MICROBLOG, "b").unwrap();
        assert_eq!(s.status(b).unwrap(), None);
        assert_eq!(s.status_id(&jane, "b").unwrap(), None);
        let all = s
            .statuses_by(std::slice::from_ref(&jane), StatusRange::default(), 10)
            .unwrap();
        assert_eq!(ids(&all), ["a"]);
        // A purge forgets the rest.
        s.purge(&jane, ns::MICROBLOG).unwrap();
        assert_eq!(s.status(a).unwrap(), None);
    }

    #[test]
    fn a_merge_over_authors_pages_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        let s = Redb::open(dir.path()).unwrap();
        // Interleaved: jane 1, joe 2, jane 3, ... jane 9.
        for t in 1..=9u64 {
            let who = if t % 2 == 1 {
                "jane@a.example"
            } else {
                "joe@a.example"
            };
            publish(&s, who, ns::MICROBLOG, &format!("p{t}"), t * 1_000, None);
        }
        publish(&s, "amy@a.example", ns::MICROBLOG, "amy", 9_500, None);
        let both = [
            BareJid::new("jane@a.example").unwrap(),
            BareJid::new("joe@a.example").unwrap(),
        ];
        let id = |t: u64| {
            s.status_id(&both[(t % 2 == 0) as usize], &format!("p{t}"))
                .unwrap()
                .unwrap()
        };
        let page = s.statuses_by(&both, StatusRange::default(), 3).unwrap();
        assert_eq!(
            ids(&page),
            ["p9", "p8", "p7"],
            "newest first; amy not followed"
        );
        let older = StatusRange {
            max_id: Some(id(7)),
            ..StatusRange::default()
        };
        assert_eq!(
            ids(&s.statuses_by(&both, older, 3).unwrap()),
            ["p6", "p5", "p4"]
        );
        let since = StatusRange {
            since_id: Some(id(3)),
            ..StatusRange::default()
        };
        assert_eq!(ids(&s.statuses_by(&both, since, 2).unwrap()), ["p9", "p8"]);
        let min = StatusRange {
            min_id: Some(id(3)),
            ..StatusRange::default()
        };
        assert_eq!(
            ids(&s.statuses_by(&both, min, 2).unwrap()),
            ["p5", "p4"],
            "the page right after, newest first"
        );
        // Everyone's, filtered, with a bounded scan.
        let mut keep = |j: &BareJid| j.as_str() != "joe@a.example";
        let all = s
            .all_statuses(StatusRange::default(), 3, 100, &mut keep)
            .unwrap();
        assert_eq!(ids(&all), ["amy", "p9", "p7"]);
        let mut keep_all = |_: &BareJid| true;
        let all = s
            .all_statuses(StatusRange::default(), 20, 100, &mut keep_all)
            .unwrap();
        assert_eq!(all.len(), 10);
        assert_eq!(
            ids(&all[..3]),
            ["amy", "p9", "p8"],
            "ordered by time across authors"
        );
        let mut none = |_: &BareJid| false;
        assert!(s
            .all_statuses(StatusRange::default(), 3, 5, &mut none)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn trimmed_items_lose_their_status_and_deleted_accounts_everything() {
        let dir = tempfile::tempdir().unwrap();
        let s = Redb::open(dir.path()).unwrap();
        let jane = BareJid::new("jane@a.example").unwrap();
        s.create_account(&jane, &crate::store::AccountRecord::new("pw", 4096))
            .unwrap();
        let opts = Options {
            max_items: Some(Some(2)),
            ..Options::default()
        };
        publish(&s, "jane@a.example", ns::MICROBLOG, "a", 1_000, Some(opts));
        let a = s.status_id(&jane, "a").unwrap().unwrap();
        publish(&s, "jane@a.example", ns::MICROBLOG, "b", 2_000, None);
        publish(&s, "jane@a.example", ns::MICROBLOG, "c", 3_000, None);
        assert_eq!(s.status(a).unwrap(), None, "trimmed with its item");
        let all = s
            .statuses_by(std::slice::from_ref(&jane), StatusRange::default(), 10)
            .unwrap();
        assert_eq!(ids(&all), ["c", "b"]);
        s.delete_account(&jane).unwrap();
        let mut keep_all = |_: &BareJid| true;
        assert!(s
            .all_statuses(StatusRange::default(), 10, 100, &mut keep_all)
            .unwrap()
            .is_empty());
    }
}
