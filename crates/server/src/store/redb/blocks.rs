//! Block lists on redb.

use redb::{ReadableDatabase, ReadableTable};
use stanza::BareJid;

use super::{parse_jid, Redb, BLOCKS};
use crate::store::{BlockStore, Quota, StoreError};

impl BlockStore for Redb {
    fn blocklist(&self, owner: &BareJid) -> Result<Vec<stanza::Jid>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(BLOCKS)?;
        let mut out = Vec::new();
        for entry in t.range((owner.as_str(), "")..)? {
            let (k, _) = entry?;
            let (o, j) = k.value();
            if o != owner.as_str() {
                break;
            }
            out.push(
                stanza::Jid::new(j)
                    .map_err(|_| StoreError::Corrupt(j.to_owned(), "bad blocked JID".into()))?,
            );
        }
        Ok(out)
    }

    fn all_blocks(&self) -> Result<Vec<(BareJid, Vec<stanza::Jid>)>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(BLOCKS)?;
        let mut out: Vec<(BareJid, Vec<stanza::Jid>)> = Vec::new();
        for entry in t.iter()? {
            let (k, _) = entry?;
            let (o, j) = k.value();
            let j = stanza::Jid::new(j)
                .map_err(|_| StoreError::Corrupt(j.to_owned(), "bad blocked JID".into()))?;
            match out.last_mut() {
                Some((owner, list)) if owner.as_str() == o => list.push(j),
                _ => out.push((parse_jid(o)?, vec![j])),
            }
        }
        Ok(out)
    }

    fn set_blocked(
        &self,
        owner: &BareJid,
        jids: &[stanza::Jid],
        block: bool,
        max_items: usize,
    ) -> Result<Vec<stanza::Jid>, StoreError> {
        let all = if !block && jids.is_empty() {
            self.blocklist(owner)?
        } else {
            jids.to_vec()
        };
        let tx = self.db.begin_write()?;
        let mut changed = Vec::new();
        {
            let mut t = tx.open_table(BLOCKS)?;
            for j in all {
                let key = (owner.as_str(), j.as_str());
                let did = if block {
                    t.insert(key, ())?.is_none()
                } else {
                    t.remove(key)?.is_some()
                };
                if did {
                    changed.push(j);
                }
            }
            if block {
                let mut n = 0;
                for entry in t.range((owner.as_str(), "")..)? {
                    if entry?.0.value().0 != owner.as_str() || n > max_items {
                        break;
                    }
                    n += 1;
                }
                if n > max_items {
                    // Dropping the transaction uncommitted writes nothing.
                    return Err(StoreError::Quota(Quota::BlockList));
                }
            }
        }
        tx.commit()?;
        Ok(changed)
    }
}
