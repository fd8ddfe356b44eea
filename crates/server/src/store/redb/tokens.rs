//! Applications and access tokens on redb.

use redb::{ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use stanza::BareJid;

use super::{decode, Redb};
use crate::store::{AppRecord, StoreError, TokenRecord, TokenStore};

/// client id -> [`AppRecord`] (JSON).
pub(super) const APPS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("apps");
/// SHA-256 of a token -> [`TokenRecord`] (JSON).
pub(super) const TOKENS: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("tokens");
/// (account, created ms, token hash) -> (): each account's tokens, oldest
/// first, to count, evict and delete them.
pub(super) const TOKENS_BY: TableDefinition<'_, (&str, u64, &[u8]), ()> =
    TableDefinition::new("tokens_by");

/// The hashes of `jid`'s tokens, oldest first.
fn tokens_of(tx: &WriteTransaction, jid: &str) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
    let by = tx.open_table(TOKENS_BY)?;
    let out = by
        .range((jid, 0, &[][..])..)?
        .map_while(|e| e.ok())
        .take_while(|(k, _)| k.value().0 == jid)
        .map(|(k, _)| (k.value().1, k.value().2.to_vec()))
        .collect();
    Ok(out)
}

/// Removes every token of `jid` (account deletion).
pub(super) fn delete_tokens(tx: &WriteTransaction, jid: &BareJid) -> Result<(), StoreError> {
    let mine = tokens_of(tx, jid.as_str())?;
    let mut by = tx.open_table(TOKENS_BY)?;
    let mut tokens = tx.open_table(TOKENS)?;
    for (ms, hash) in mine {
        by.remove((jid.as_str(), ms, hash.as_slice()))?;
        tokens.remove(hash.as_slice())?;
    }
    Ok(())
}

impl TokenStore for Redb {
    fn create_app(&self, app: &AppRecord) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        tx.open_table(APPS)?
            .insert(app.client_id.as_str(), serde_json::to_vec(app)?.as_slice())?;
        tx.commit()?;
        Ok(())
    }

    fn app(&self, client_id: &str) -> Result<Option<AppRecord>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(APPS)?;
        t.get(client_id)?
            .map(|v| decode(client_id, v.value()))
            .transpose()
    }

    fn create_token(
        &self,
        hash: &[u8; 32],
        token: &TokenRecord,
        max: usize,
    ) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        let mine = tokens_of(&tx, &token.jid)?;
        {
            let mut by = tx.open_table(TOKENS_BY)?;
            let mut tokens = tx.open_table(TOKENS)?;
            let excess = (mine.len() + 1).saturating_sub(max.max(1));
            for (ms, old) in mine.into_iter().take(excess) {
                by.remove((token.jid.as_str(), ms, old.as_slice()))?;
                tokens.remove(old.as_slice())?;
            }
            tokens.insert(&hash[..], serde_json::to_vec(token)?.as_slice())?;
            by.insert((token.jid.as_str(), token.created_ms, &hash[..]), ())?;
        }
        tx.commit()?;
        Ok(())
    }

    fn token(&self, hash: &[u8; 32]) -> Result<Option<TokenRecord>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(TOKENS)?;
        t.get(&hash[..])?
            .map(|v| decode("token", v.value()))
            .transpose()
    }

    fn revoke_token(&self, hash: &[u8; 32]) -> Result<bool, StoreError> {
        let tx = self.db.begin_write()?;
        let found = {
            let mut tokens = tx.open_table(TOKENS)?;
            let rec: Option<TokenRecord> = tokens
                .remove(&hash[..])?
                .map(|v| decode("token", v.value()))
                .transpose()?;
            if let Some(rec) = &rec {
                tx.open_table(TOKENS_BY)?
                    .remove((rec.jid.as_str(), rec.created_ms, &hash[..]))?;
            }
            rec.is_some()
        };
        tx.commit()?;
        Ok(found)
    }

    fn token_count(&self, jid: &BareJid) -> Result<usize, StoreError> {
        let tx = self.db.begin_read()?;
        let by = tx.open_table(TOKENS_BY)?;
        let n = by
            .range((jid.as_str(), 0, &[][..])..)?
            .map_while(|e| e.ok())
            .take_while(|(k, _)| k.value().0 == jid.as_str())
            .count();
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(jid: &str, ms: u64) -> TokenRecord {
        TokenRecord {
            jid: jid.into(),
            client_id: "app".into(),
            scopes: "read write".into(),
            created_ms: ms,
        }
    }

    #[test]
    fn tokens_are_found_by_hash_revoked_and_capped_per_account() {
        let dir = tempfile::tempdir().unwrap();
        let s = Redb::open(dir.path()).unwrap();
        let jane = BareJid::new("jane@a.example").unwrap();
        for i in 0..3u8 {
            s.create_token(&[i; 32], &token("jane@a.example", u64::from(i)), 2)
                .unwrap();
        }
        assert_eq!(s.token_count(&jane).unwrap(), 2);
        assert_eq!(s.token(&[0; 32]).unwrap(), None, "the oldest made room");
        assert_eq!(s.token(&[2; 32]).unwrap(), Some(token("jane@a.example", 2)));
        assert!(s.revoke_token(&[2; 32]).unwrap());
        assert!(!s.revoke_token(&[2; 32]).unwrap());
        assert_eq!(s.token_count(&jane).unwrap(), 1);
        let app = AppRecord {
            name: "toot".into(),
            client_id: "cid".into(),
            secret_hash: [7; 32],
            redirect_uris: "urn:ietf:wg:oauth:2.0:oob".into(),
            scopes: "read".into(),
            website: None,
        };
        s.create_app(&app).unwrap();
        assert_eq!(s.app("cid").unwrap(), Some(app));
        assert_eq!(s.app("other").unwrap(), None);
    }
}
