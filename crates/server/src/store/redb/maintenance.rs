//! Schema version, seeding and deletion on redb.

use redb::{ReadableDatabase, ReadableTable};
use stanza::BareJid;

use super::rosters::put_item;
use super::{decode, node_key, Redb, ACCOUNTS, META, NODES, ROSTER, SUBS, SUBS_BY};
use crate::store::{Deleted, MaintenanceStore, NodeRecord, Seed, StoreError};

impl MaintenanceStore for Redb {
    fn schema_version(&self) -> Result<u64, StoreError> {
        let tx = self.db.begin_read()?;
        let meta = tx.open_table(META)?;
        Ok(meta.get("schema_version")?.map_or(0, |v| v.value()))
    }

    fn seed(&self, seed: &Seed) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        {
            let mut accounts = tx.open_table(ACCOUNTS)?;
            for (jid, rec) in &seed.accounts {
                accounts.insert(jid.as_str(), serde_json::to_vec(rec)?.as_slice())?;
            }
            let mut roster = tx.open_table(ROSTER)?;
            for (owner, contact, item) in &seed.roster {
                put_item(&mut roster, owner, contact, Some(item))?;
            }
            let mut nodes = tx.open_table(NODES)?;
            for (owner, node, config) in &seed.nodes {
                let key = node_key(owner, node);
                let rec = match nodes.get(key.as_str())? {
                    Some(v) => {
                        let mut r: NodeRecord = decode(&key, v.value())?;
                        r.config = config.clone();
                        r
                    }
                    None => NodeRecord {
                        config: config.clone(),
                        next_seq: 0,
                        count: 0,
                    },
                };
                nodes.insert(key.as_str(), serde_json::to_vec(&rec)?.as_slice())?;
            }
            let mut subs = tx.open_table(SUBS)?;
            let mut by = tx.open_table(SUBS_BY)?;
            for s in &seed.subscriptions {
                let key = node_key(&s.owner, &s.node);
                subs.insert((key.as_str(), s.jid.as_str()), "subscribed")?;
                by.insert((s.jid.to_bare().as_str(), key.as_str(), s.jid.as_str()), ())?;
            }
            let mut tokens = tx.open_table(super::tokens::TOKENS)?;
            let mut tokens_by = tx.open_table(super::tokens::TOKENS_BY)?;
            for (hash, t) in &seed.tokens {
                tokens.insert(&hash[..], serde_json::to_vec(t)?.as_slice())?;
                tokens_by.insert((t.jid.as_str(), t.created_ms, &hash[..]), ())?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn delete_account(&self, jid: &BareJid) -> Result<Deleted, StoreError> {
        super::delete::delete_account(&self.db, jid)
    }
}
