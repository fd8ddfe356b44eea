//! Nodes, items and subscriptions on redb.

use redb::{ReadableDatabase, ReadableTable};
use stanza::BareJid;

use super::{decode, node_key, split_node_key, Redb, ITEMS, ITEM_IDS, NODES, SUBS, SUBS_BY};
use crate::pubsub::{NodeConfig, Options, StoredItem};
use crate::store::{
    Anchor, Budget, NodeRecord, Page, PublishError, PublishRequest, PubsubStore, StoreError,
    Subscription,
};

/// How many nodes `owner` has, counting no further than `upto`.
fn count_nodes(
    nodes: &impl ReadableTable<&'static str, &'static [u8]>,
    owner: &BareJid,
    upto: usize,
) -> Result<usize, StoreError> {
    let prefix = format!("{owner}\u{0}");
    let mut n = 0;
    for entry in nodes.range(prefix.as_str()..)? {
        let (k, _) = entry?;
        if !k.value().starts_with(&prefix) || n >= upto {
            break;
        }
        n += 1;
    }
    Ok(n)
}

type ItemsTable<'t> = redb::Table<'t, (&'static str, u64), &'static [u8]>;
type IdsTable<'t> = redb::Table<'t, (&'static str, &'static str), u64>;

/// Drops a node's oldest items until it holds no more than its limit.
fn trim(
    tx: &redb::WriteTransaction,
    items: &mut ItemsTable<'_>,
    ids: &mut IdsTable<'_>,
    key: &str,
    rec: &mut NodeRecord,
) -> Result<(), StoreError> {
    while rec.count > rec.config.item_limit() {
        let oldest = items
            .range((key, 0)..=(key, u64::MAX))?
            .next()
            .transpose()?
            .map(|(k, v)| (k.value().1, v.value().to_vec()));
        let Some((seq, bytes)) = oldest else { break };
        let item: StoredItem = decode(key, &bytes)?;
        items.remove((key, seq))?;
        ids.remove((key, item.id.as_str()))?;
        super::statuses::forget(tx, key, &item.id)?;
        rec.count -= 1;
    }
    Ok(())
}

fn clear_items(tx: &redb::WriteTransaction, key: &str) -> Result<(), StoreError> {
    let mut items = tx.open_table(ITEMS)?;
    let mut ids = tx.open_table(ITEM_IDS)?;
    items.retain_in((key, 0)..=(key, u64::MAX), |_, _| false)?;
    let all: Vec<String> = ids
        .range((key, "")..)?
        .map_while(|e| e.ok())
        .take_while(|(k, _)| k.value().0 == key)
        .map(|(k, _)| k.value().1.to_owned())
        .collect();
    for id in all {
        ids.remove((key, id.as_str()))?;
    }
    super::statuses::forget_all(tx, key)?;
    Ok(())
}

impl PubsubStore for Redb {
    fn publish_batch(
        &self,
        reqs: &[PublishRequest],
    ) -> Result<Vec<Result<NodeConfig, PublishError>>, StoreError> {
        let tx = self.db.begin_write()?;
        let mut out = Vec::with_capacity(reqs.len());
        {
            let mut nodes = tx.open_table(NODES)?;
            let mut items = tx.open_table(ITEMS)?;
            let mut ids = tx.open_table(ITEM_IDS)?;
            for r in reqs {
                let key = node_key(&r.owner, &r.node);
                let existing: Option<NodeRecord> = match nodes.get(key.as_str())? {
                    Some(v) => Some(decode(&key, v.value())?),
                    None => None,
                };
                let mut rec = match existing {
                    Some(rec) => {
                        if r.options.as_ref().is_some_and(|o| !o.met_by(&rec.config)) {
                            out.push(Err(PublishError::PreconditionNotMet));
                            continue;
                        }
                        rec
                    }
                    None if count_nodes(&nodes, &r.owner, r.max_nodes)? >= r.max_nodes => {
                        out.push(Err(PublishError::TooManyNodes));
                        continue;
                    }
                    None => NodeRecord {
                        config: r
                            .options
                            .clone()
                            .unwrap_or_default()
                            .apply(NodeConfig::default()),
                        next_seq: 0,
                        count: 0,
                    },
                };
                // Publishing an existing id replaces it; it becomes newest.
                let old = ids
                    .get((key.as_str(), r.item.id.as_str()))?
                    .map(|v| v.value());
                if let Some(old) = old {
                    items.remove((key.as_str(), old))?;
                    rec.count -= 1;
                }
                let seq = rec.next_seq;
                rec.next_seq += 1;
                items.insert((key.as_str(), seq), serde_json::to_vec(&r.item)?.as_slice())?;
                ids.insert((key.as_str(), r.item.id.as_str()), seq)?;
                super::statuses::assign(&tx, &key, &r.item.id, r.item.published_ms)?;
                rec.count += 1;
                trim(&tx, &mut items, &mut ids, &key, &mut rec)?;
                nodes.insert(key.as_str(), serde_json::to_vec(&rec)?.as_slice())?;
                out.push(Ok(rec.config.clone()));
            }
        }
        tx.commit()?;
        Ok(out)
    }

    fn create_node(
        &self,
        owner: &BareJid,
        node: &str,
        options: &Options,
        max_nodes: usize,
    ) -> Result<Result<NodeConfig, PublishError>, StoreError> {
        let key = node_key(owner, node);
        let tx = self.db.begin_write()?;
        let config = {
            let mut nodes = tx.open_table(NODES)?;
            if let Some(v) = nodes.get(key.as_str())? {
                let rec: NodeRecord = decode(&key, v.value())?;
                return Ok(Ok(rec.config));
            }
            if count_nodes(&nodes, owner, max_nodes)? >= max_nodes {
                return Ok(Err(PublishError::TooManyNodes));
            }
            let rec = NodeRecord {
                config: options.clone().apply(NodeConfig::default()),
                next_seq: 0,
                count: 0,
            };
            nodes.insert(key.as_str(), serde_json::to_vec(&rec)?.as_slice())?;
            rec.config
        };
        tx.commit()?;
        Ok(Ok(config))
    }

    fn retract(
        &self,
        owner: &BareJid,
        node: &str,
        id: &str,
    ) -> Result<Option<NodeConfig>, StoreError> {
        let key = node_key(owner, node);
        let tx = self.db.begin_write()?;
        let config = {
            let mut nodes = tx.open_table(NODES)?;
            let mut items = tx.open_table(ITEMS)?;
            let mut ids = tx.open_table(ITEM_IDS)?;
            let rec: Option<NodeRecord> = match nodes.get(key.as_str())? {
                Some(v) => Some(decode(&key, v.value())?),
                None => None,
            };
            let Some(mut rec) = rec else { return Ok(None) };
            let seq = ids.remove((key.as_str(), id))?.map(|v| v.value());
            let Some(seq) = seq else { return Ok(None) };
            items.remove((key.as_str(), seq))?;
            super::statuses::forget(&tx, &key, id)?;
            rec.count = rec.count.saturating_sub(1);
            nodes.insert(key.as_str(), serde_json::to_vec(&rec)?.as_slice())?;
            rec.config
        };
        tx.commit()?;
        Ok(Some(config))
    }

    fn node(&self, owner: &BareJid, node: &str) -> Result<Option<NodeRecord>, StoreError> {
        let key = node_key(owner, node);
        let tx = self.db.begin_read()?;
        let t = tx.open_table(NODES)?;
        let v = t.get(key.as_str())?;
        v.map(|v| decode(&key, v.value())).transpose()
    }

    fn items(
        &self,
        owner: &BareJid,
        node: &str,
        budget: Budget,
    ) -> Result<Vec<StoredItem>, StoreError> {
        let key = node_key(owner, node);
        let tx = self.db.begin_read()?;
        let t = tx.open_table(ITEMS)?;
        let mut out = Vec::new();
        let mut used = 0;
        for entry in t.range((key.as_str(), 0)..=(key.as_str(), u64::MAX))?.rev() {
            let (_, v) = entry?;
            // The stored record's length bounds the payload's: checked
            // before decoding, so an over-budget item costs no copy.
            let len = v.value().len();
            if !budget.fits(out.len(), used, len) {
                break;
            }
            used += len;
            out.push(decode(&key, v.value())?);
        }
        out.reverse();
        Ok(out)
    }

    fn item(
        &self,
        owner: &BareJid,
        node: &str,
        id: &str,
    ) -> Result<Option<StoredItem>, StoreError> {
        let key = node_key(owner, node);
        let tx = self.db.begin_read()?;
        let Some(seq) = tx
            .open_table(ITEM_IDS)?
            .get((key.as_str(), id))?
            .map(|v| v.value())
        else {
            return Ok(None);
        };
        let t = tx.open_table(ITEMS)?;
        let v = t.get((key.as_str(), seq))?;
        v.map(|v| decode(&key, v.value())).transpose()
    }

    fn subscribe(&self, owner: &BareJid, node: &str, jid: &stanza::Jid) -> Result<(), StoreError> {
        let key = node_key(owner, node);
        let tx = self.db.begin_write()?;
        tx.open_table(SUBS)?
            .insert((key.as_str(), jid.as_str()), "subscribed")?;
        tx.open_table(SUBS_BY)?
            .insert((jid.to_bare().as_str(), key.as_str(), jid.as_str()), ())?;
        tx.commit()?;
        Ok(())
    }

    fn unsubscribe(
        &self,
        owner: &BareJid,
        node: &str,
        jid: &stanza::Jid,
    ) -> Result<bool, StoreError> {
        let key = node_key(owner, node);
        let tx = self.db.begin_write()?;
        let existed = tx
            .open_table(SUBS)?
            .remove((key.as_str(), jid.as_str()))?
            .is_some();
        tx.open_table(SUBS_BY)?
            .remove((jid.to_bare().as_str(), key.as_str(), jid.as_str()))?;
        tx.commit()?;
        Ok(existed)
    }

    fn node_subscriptions(
        &self,
        owner: &BareJid,
        node: &str,
    ) -> Result<Vec<stanza::Jid>, StoreError> {
        let key = node_key(owner, node);
        let tx = self.db.begin_read()?;
        let t = tx.open_table(SUBS)?;
        let mut out = Vec::new();
        for entry in t.range((key.as_str(), "")..)? {
            let (k, _) = entry?;
            let (nk, jid) = k.value();
            if nk != key {
                break;
            }
            out.push(
                stanza::Jid::new(jid).map_err(|_| {
                    StoreError::Corrupt(nk.to_owned(), "bad subscription JID".into())
                })?,
            );
        }
        Ok(out)
    }

    fn subscriptions_of(&self, subscriber: &BareJid) -> Result<Vec<Subscription>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(SUBS_BY)?;
        let mut out = Vec::new();
        for entry in t.range((subscriber.as_str(), "", "")..)? {
            let (k, _) = entry?;
            let (bare, nk, jid) = k.value();
            if bare != subscriber.as_str() {
                break;
            }
            let (owner, node) = split_node_key(nk)?;
            out.push(Subscription {
                owner,
                node: node.to_owned(),
                jid: stanza::Jid::new(jid).map_err(|_| {
                    StoreError::Corrupt(nk.to_owned(), "bad subscription JID".into())
                })?,
            });
        }
        Ok(out)
    }

    fn nodes_of(&self, owner: &BareJid) -> Result<Vec<(String, NodeConfig)>, StoreError> {
        let prefix = node_key(owner, "");
        let tx = self.db.begin_read()?;
        let t = tx.open_table(NODES)?;
        let mut out = Vec::new();
        for entry in t.range(prefix.as_str()..)? {
            let (k, v) = entry?;
            let key = k.value();
            let Some(node) = key.strip_prefix(prefix.as_str()) else {
                break;
            };
            let rec: NodeRecord = decode(key, v.value())?;
            out.push((node.to_owned(), rec.config));
        }
        Ok(out)
    }

    fn configure(
        &self,
        owner: &BareJid,
        node: &str,
        options: &Options,
    ) -> Result<Option<NodeConfig>, StoreError> {
        let key = node_key(owner, node);
        let tx = self.db.begin_write()?;
        let config = {
            let mut nodes = tx.open_table(NODES)?;
            let rec: Option<NodeRecord> = match nodes.get(key.as_str())? {
                Some(v) => Some(decode(&key, v.value())?),
                None => None,
            };
            let Some(mut rec) = rec else { return Ok(None) };
            rec.config = options.apply(rec.config);
            let mut items = tx.open_table(ITEMS)?;
            let mut ids = tx.open_table(ITEM_IDS)?;
            trim(&tx, &mut items, &mut ids, &key, &mut rec)?;
            nodes.insert(key.as_str(), serde_json::to_vec(&rec)?.as_slice())?;
            rec.config
        };
        tx.commit()?;
        Ok(Some(config))
    }

    fn purge(&self, owner: &BareJid, node: &str) -> Result<Option<NodeConfig>, StoreError> {
        let key = node_key(owner, node);
        let tx = self.db.begin_write()?;
        let config = {
            let mut nodes = tx.open_table(NODES)?;
            let rec: Option<NodeRecord> = match nodes.get(key.as_str())? {
                Some(v) => Some(decode(&key, v.value())?),
                None => None,
            };
            let Some(mut rec) = rec else { return Ok(None) };
            clear_items(&tx, &key)?;
            rec.count = 0;
            nodes.insert(key.as_str(), serde_json::to_vec(&rec)?.as_slice())?;
            rec.config
        };
        tx.commit()?;
        Ok(Some(config))
    }

    fn delete_node(
        &self,
        owner: &BareJid,
        node: &str,
    ) -> Result<Option<Vec<stanza::Jid>>, StoreError> {
        let key = node_key(owner, node);
        let tx = self.db.begin_write()?;
        let mut subs = Vec::new();
        {
            if tx.open_table(NODES)?.remove(key.as_str())?.is_none() {
                return Ok(None);
            }
            clear_items(&tx, &key)?;
            let mut t = tx.open_table(SUBS)?;
            let mut by = tx.open_table(SUBS_BY)?;
            // The subscribers as of this transaction: one added just
            // before must go too, not linger without its node.
            for raw in super::delete::prefixed_keys(&t, &key)? {
                let j = stanza::Jid::new(&raw)
                    .map_err(|_| StoreError::Corrupt(raw.clone(), "bad subscription JID".into()))?;
                t.remove((key.as_str(), raw.as_str()))?;
                by.remove((j.to_bare().as_str(), key.as_str(), raw.as_str()))?;
                subs.push(j);
            }
        }
        tx.commit()?;
        Ok(Some(subs))
    }

    fn items_page(
        &self,
        owner: &BareJid,
        node: &str,
        anchor: &Anchor,
        budget: Budget,
    ) -> Result<Option<Page>, StoreError> {
        let max = budget.items;
        let key = node_key(owner, node);
        let tx = self.db.begin_read()?;
        let t = tx.open_table(ITEMS)?;
        // The sequence numbers only: cheap, and nodes are bounded by
        // MAX_ITEMS_CEILING.
        let mut seqs = Vec::new();
        for entry in t.range((key.as_str(), 0)..=(key.as_str(), u64::MAX))? {
            seqs.push(entry?.0.value().1);
        }
        let n = seqs.len();
        let pos_of = |id: &str| -> Result<Option<usize>, StoreError> {
            let ids = tx.open_table(ITEM_IDS)?;
            let seq = ids.get((key.as_str(), id))?.map(|v| v.value());
            Ok(seq.and_then(|s| seqs.binary_search(&s).ok()))
        };
        let (start, end) = match anchor {
            Anchor::First => (0, max.min(n)),
            Anchor::Last => (n.saturating_sub(max), n),
            Anchor::Index(i) => {
                let i = (*i as usize).min(n);
                (i, (i + max).min(n))
            }
            Anchor::After(id) => match pos_of(id)? {
                None => return Ok(None),
                Some(p) => (p + 1, (p + 1 + max).min(n)),
            },
            Anchor::Before(id) => match pos_of(id)? {
                None => return Ok(None),
                Some(p) => (p.saturating_sub(max), p),
            },
        };
        // Past the byte budget the page is cut short on the side away from
        // the anchor, so the client's next <before/> or <after/> from this
        // page's edge continues where it stopped.
        let backward = matches!(anchor, Anchor::Last | Anchor::Before(_));
        let range = &seqs[start..end];
        let mut items = Vec::with_capacity(range.len());
        let mut used = 0;
        let mut first = start;
        let order: Box<dyn Iterator<Item = (usize, &u64)>> = if backward {
            Box::new(range.iter().enumerate().rev())
        } else {
            Box::new(range.iter().enumerate())
        };
        for (i, &seq) in order {
            if let Some(v) = t.get((key.as_str(), seq))? {
                let len = v.value().len();
                if !budget.fits(items.len(), used, len) {
                    break;
                }
                used += len;
                items.push(decode(&key, v.value())?);
                if backward {
                    first = start + i;
                }
            }
        }
        if backward {
            items.reverse();
        }
        Ok(Some(Page {
            items,
            first_index: first as u64,
            count: n as u64,
        }))
    }

    fn all_subscriptions(&self) -> Result<Vec<Subscription>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(SUBS)?;
        let mut out = Vec::new();
        for entry in t.iter()? {
            let (k, _) = entry?;
            let (node_key, jid) = k.value();
            let (owner, node) = split_node_key(node_key)?;
            out.push(Subscription {
                owner,
                node: node.to_owned(),
                jid: stanza::Jid::new(jid).map_err(|_| {
                    StoreError::Corrupt(node_key.to_owned(), "bad subscription JID".into())
                })?,
            });
        }
        Ok(out)
    }

    fn all_nodes(&self) -> Result<Vec<(BareJid, String, NodeConfig)>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(NODES)?;
        let mut out = Vec::new();
        for entry in t.iter()? {
            let (k, v) = entry?;
            let key = k.value();
            let (owner, node) = split_node_key(key)?;
            let rec: NodeRecord = decode(key, v.value())?;
            out.push((owner, node.to_owned(), rec.config));
        }
        Ok(out)
    }
}
