//! The SCRAM client's key cache: PBKDF2 is the expensive part of a login,
//! and a load run logs in thousands of sessions whose salt and iteration
//! count repeat (per account on every server, and across runs when `setup`
//! warmed the cache). Keys are cached by (hash, password, salt,
//! iterations), never by account, so a wrong cache cannot log anyone in.

use std::collections::HashMap;

use parking_lot::Mutex;
use server::sasl::{ClientKeys, Hash, SaltParams};

type Key = (Hash, String, Vec<u8>, u32);

/// A concurrent cache of derived SCRAM client keys.
#[derive(Debug, Default)]
pub struct KeyCache {
    map: Mutex<HashMap<Key, ClientKeys>>,
    hits: std::sync::atomic::AtomicU64,
    misses: std::sync::atomic::AtomicU64,
}

impl KeyCache {
    /// The keys for these parameters, derived once.
    pub fn get(&self, hash: Hash, password: &str, p: &SaltParams) -> ClientKeys {
        use std::sync::atomic::Ordering::Relaxed;
        let key = (hash, password.to_owned(), p.salt.clone(), p.iterations);
        if let Some(k) = self.map.lock().get(&key) {
            self.hits.fetch_add(1, Relaxed);
            return k.clone();
        }
        self.misses.fetch_add(1, Relaxed);
        let k = ClientKeys::derive(hash, password, &p.salt, p.iterations);
        self.map.lock().insert(key, k.clone());
        k
    }

    /// (hits, misses) so far.
    pub fn stats(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.hits.load(Relaxed), self.misses.load(Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use server::sasl::{parse_client_first, ScramClient, ScramKeys, ScramServer};

    #[test]
    fn cached_keys_log_in_like_fresh_ones_and_derive_once() {
        let cache = KeyCache::default();
        let stored = ScramKeys::generate(Hash::Sha1, "pw", 4096);
        for round in 0..3 {
            let (client, first) =
                ScramClient::new(Hash::Sha1, "jane", "pw", &format!("nonce{round}"));
            let (server, sf) =
                ScramServer::start(stored.clone(), parse_client_first(&first).unwrap(), "srv");
            let (fin, expect_sig) = client
                .respond_with(&sf, |p| cache.get(Hash::Sha1, "pw", p))
                .unwrap();
            let sig = server
                .finish(&fin)
                .expect("the server accepts the cached proof");
            assert_eq!(sig, expect_sig);
        }
        assert_eq!(cache.stats(), (2, 1));
        // A wrong password is not rescued by the cache.
        let (client, first) = ScramClient::new(Hash::Sha1, "jane", "nope", "n9");
        let (server, sf) = ScramServer::start(stored, parse_client_first(&first).unwrap(), "srv");
        let (fin, _) = client
            .respond_with(&sf, |p| cache.get(Hash::Sha1, "nope", p))
            .unwrap();
        assert!(server.finish(&fin).is_err());
    }
}
