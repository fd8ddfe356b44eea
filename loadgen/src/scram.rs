//! The SCRAM client's key cache: PBKDF2 is the expensive part of a login,
//! and a load run logs in thousands of sessions whose salt and iteration
//! count repeat (per account on every server, and across runs when `setup`
//! warmed the cache). Keys are cached by (hash, password, salt,
//! iterations), never by account, so a wrong cache cannot log anyone in.
//!
//! `setup` saves the cache to a file (`--key-cache`, mode 0600: a
//! ClientKey logs in like the password) and later runs load it, so even a
//! server that salts every account differently is logged into without a
//! single PBKDF2 on loadgen's side. The file names passwords only by their
//! SHA-256.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use server::sasl::{ClientKeys, Hash, SaltParams};
use sha2::{Digest, Sha256};

type Key = (Hash, [u8; 32], Vec<u8>, u32);

/// The file's format tag.
const FORMAT: &str = "starling-loadgen-scram-keys/1";

#[derive(Serialize, Deserialize)]
struct File {
    format: String,
    entries: Vec<Entry>,
}

/// One cached derivation, all bytes in base64.
#[derive(Serialize, Deserialize)]
struct Entry {
    hash: Hash,
    password_sha256: String,
    salt: String,
    iterations: u32,
    client_key: String,
    stored_key: String,
    server_key: String,
}

fn digest(password: &str) -> [u8; 32] {
    Sha256::digest(password.as_bytes()).into()
}

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
        let key = (hash, digest(password), p.salt.clone(), p.iterations);
        if let Some(k) = self.map.lock().get(&key) {
            self.hits.fetch_add(1, Relaxed);
            return k.clone();
        }
        self.misses.fetch_add(1, Relaxed);
        let k = ClientKeys::derive(hash, password, &p.salt, p.iterations);
        self.map.lock().insert(key, k.clone());
        k
    }

    /// Keys cached.
    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Loads a cache saved by [`KeyCache::save`]; a missing file is an
    /// empty cache.
    pub fn load(path: &Path) -> Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let file: File = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a SCRAM key cache", path.display()))?;
        if file.format != FORMAT {
            anyhow::bail!(
                "{}: format {:?}, expected {FORMAT:?}",
                path.display(),
                file.format
            );
        }
        let bad = || format!("{}: a damaged entry", path.display());
        let mut map = HashMap::with_capacity(file.entries.len());
        for e in file.entries {
            let pw: [u8; 32] = B64
                .decode(&e.password_sha256)
                .ok()
                .and_then(|v| v.try_into().ok())
                .with_context(bad)?;
            let keys = ClientKeys {
                client_key: B64.decode(&e.client_key).ok().with_context(bad)?,
                stored_key: B64.decode(&e.stored_key).ok().with_context(bad)?,
                server_key: B64.decode(&e.server_key).ok().with_context(bad)?,
            };
            let salt = B64.decode(&e.salt).ok().with_context(bad)?;
            map.insert((e.hash, pw, salt, e.iterations), keys);
        }
        Ok(Self {
            map: Mutex::new(map),
            ..Self::default()
        })
    }

    /// Writes the cache to `path` (replacing it whole, mode 0600).
    pub fn save(&self, path: &Path) -> Result<()> {
        let entries = self
            .map
            .lock()
            .iter()
            .map(|((hash, pw, salt, iterations), k)| Entry {
                hash: *hash,
                password_sha256: B64.encode(pw),
                salt: B64.encode(salt),
                iterations: *iterations,
                client_key: B64.encode(&k.client_key),
                stored_key: B64.encode(&k.stored_key),
                server_key: B64.encode(&k.server_key),
            })
            .collect();
        let body = serde_json::to_vec(&File {
            format: FORMAT.into(),
            entries,
        })?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let tmp = path.with_extension("tmp");
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .with_context(|| format!("writing {}", tmp.display()))?;
            f.write_all(&body)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
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

    #[test]
    fn a_saved_cache_logs_in_without_deriving_and_names_no_password() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        assert!(KeyCache::load(&path).unwrap().is_empty());
        let stored = ScramKeys::generate(Hash::Sha1, "s3cret-pw", 4096);
        let cache = KeyCache::default();
        let login = |cache: &KeyCache, nonce: &str| {
            let (client, first) = ScramClient::new(Hash::Sha1, "jane", "s3cret-pw", nonce);
            let (server, sf) =
                ScramServer::start(stored.clone(), parse_client_first(&first).unwrap(), "srv");
            let (fin, _) = client
                .respond_with(&sf, |p| cache.get(Hash::Sha1, "s3cret-pw", p))
                .unwrap();
            server.finish(&fin).is_ok()
        };
        assert!(login(&cache, "a"));
        cache.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("s3cret-pw"));
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let warm = KeyCache::load(&path).unwrap();
        assert_eq!(warm.len(), 1);
        assert!(login(&warm, "b"));
        assert_eq!(warm.stats(), (1, 0), "a hit, no derivation");
        std::fs::write(&path, "{\"format\":\"other/1\",\"entries\":[]}").unwrap();
        assert!(KeyCache::load(&path).is_err());
    }
}
