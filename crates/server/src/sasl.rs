//! SASL: SCRAM-SHA-1 and SCRAM-SHA-256 (RFC 5802, RFC 7677) and PLAIN
//! (RFC 4616), on stored SCRAM keys only.
//!
//! The store keeps, per account and per hash, the salt, the iteration count,
//! StoredKey and ServerKey: never the password. PLAIN is checked by deriving
//! the keys from the offered password (one PBKDF2) and comparing. The
//! exchange here is pure: it takes the client's messages and returns the
//! server's, with the nonce passed in, so tests are deterministic.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};

/// A SCRAM hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Hash {
    /// SHA-1 (SCRAM-SHA-1, what Movim and Prosody use).
    Sha1,
    /// SHA-256 (SCRAM-SHA-256).
    Sha256,
}

impl Hash {
    /// The SASL mechanism name.
    pub fn mechanism(self) -> &'static str {
        match self {
            Hash::Sha1 => "SCRAM-SHA-1",
            Hash::Sha256 => "SCRAM-SHA-256",
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha1 => {
                let mut m =
                    Hmac::<sha1::Sha1>::new_from_slice(key).expect("HMAC takes any key length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            Hash::Sha256 => {
                let mut m =
                    Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
        }
    }

    fn digest(self, data: &[u8]) -> Vec<u8> {
        use sha1::Digest as _;
        match self {
            Hash::Sha1 => sha1::Sha1::digest(data).to_vec(),
            Hash::Sha256 => sha2::Sha256::digest(data).to_vec(),
        }
    }

    fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        PBKDF2_RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match self {
            Hash::Sha1 => {
                let mut out = [0u8; 20];
                pbkdf2::pbkdf2_hmac::<sha1::Sha1>(password, salt, iterations, &mut out);
                out.to_vec()
            }
            Hash::Sha256 => {
                let mut out = [0u8; 32];
                pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password, salt, iterations, &mut out);
                out.to_vec()
            }
        }
    }
}

/// PBKDF2 derivations since the process started: the one costly step of
/// authentication, counted so that tests and metrics can see who pays it.
static PBKDF2_RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many PBKDF2 derivations this process has run.
pub fn pbkdf2_runs() -> u64 {
    PBKDF2_RUNS.load(std::sync::atomic::Ordering::Relaxed)
}

/// What the store keeps for one account and one hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramKeys {
    /// The hash these keys are for.
    pub hash: Hash,
    /// The PBKDF2 salt.
    pub salt: Vec<u8>,
    /// The PBKDF2 iteration count.
    pub iterations: u32,
    /// H(ClientKey).
    pub stored_key: Vec<u8>,
    /// HMAC(SaltedPassword, "Server Key").
    pub server_key: Vec<u8>,
}

impl ScramKeys {
    /// Derives the keys for `password` (after SASLprep, which for the
    /// ASCII passwords of tests and benchmarks is the identity).
    pub fn derive(hash: Hash, password: &str, salt: &[u8], iterations: u32) -> Self {
        let salted = hash.salted_password(password.as_bytes(), salt, iterations);
        let client_key = hash.hmac(&salted, b"Client Key");
        Self {
            hash,
            salt: salt.to_vec(),
            iterations,
            stored_key: hash.digest(&client_key),
            server_key: hash.hmac(&salted, b"Server Key"),
        }
    }

    /// Derives with a fresh random 16-byte salt.
    pub fn generate(hash: Hash, password: &str, iterations: u32) -> Self {
        let salt: [u8; 16] = rand::random();
        Self::derive(hash, password, &salt, iterations)
    }

    /// Keys for an account that does not exist, so that SCRAM answers a
    /// stranger as it answers a real account: a salt that stays the same for
    /// the same name (derived from the server `secret`, so it cannot be
    /// told from a real one), the configured iteration count, and keys no
    /// password matches. Made with a few HMACs, no PBKDF2: looking up a real
    /// account costs no PBKDF2 either.
    pub fn decoy(hash: Hash, secret: &[u8], name: &str, iterations: u32) -> Self {
        let tagged = |tag: &str| {
            let mut data = Vec::with_capacity(tag.len() + name.len() + 16);
            data.extend_from_slice(tag.as_bytes());
            data.push(0);
            data.extend_from_slice(hash.mechanism().as_bytes());
            data.push(0);
            data.extend_from_slice(name.as_bytes());
            hash.hmac(secret, &data)
        };
        Self {
            hash,
            salt: tagged("decoy salt")[..16].to_vec(),
            iterations,
            stored_key: tagged("decoy stored key"),
            server_key: tagged("decoy server key"),
        }
    }

    /// Checks a password as PLAIN does: one PBKDF2, then compare.
    pub fn verify_password(&self, password: &str) -> bool {
        let other = Self::derive(self.hash, password, &self.salt, self.iterations);
        constant_time_eq(&other.stored_key, &self.stored_key)
    }
}

/// Equal bytes, compared in time that does not depend on where they
/// differ (keys and stored secrets).
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why an exchange failed; each maps to a SASL failure condition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    /// The message is not what the mechanism expects.
    #[error("malformed SASL message: {0}")]
    Malformed(&'static str),
    /// Wrong credentials, or no such account.
    #[error("not authorized")]
    NotAuthorized,
    /// An authorization identity other than the authenticated one.
    #[error("invalid authzid")]
    InvalidAuthzid,
}

impl SaslError {
    /// The RFC 6120 failure condition.
    pub fn failure(&self) -> stanza::ser::SaslFailure {
        match self {
            SaslError::Malformed(_) => stanza::ser::SaslFailure::MalformedRequest,
            SaslError::NotAuthorized => stanza::ser::SaslFailure::NotAuthorized,
            SaslError::InvalidAuthzid => stanza::ser::SaslFailure::InvalidAuthzid,
        }
    }
}

/// Parses a PLAIN message: `authzid NUL authcid NUL password`.
pub fn parse_plain(msg: &[u8]) -> Result<(Option<String>, String, String), SaslError> {
    let mut parts = msg.split(|&b| b == 0);
    let (Some(authz), Some(user), Some(pass), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::Malformed(
            "PLAIN needs three NUL-separated fields",
        ));
    };
    let s = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| SaslError::Malformed("not UTF-8"));
    let authz = if authz.is_empty() {
        None
    } else {
        Some(s(authz)?)
    };
    Ok((authz, s(user)?, s(pass)?))
}

/// The client-first message, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFirst {
    /// The username (`n=`), with `=2C`/`=3D` decoded.
    pub username: String,
    /// The authorization identity from the GS2 header, if any.
    pub authzid: Option<String>,
    gs2_header: String,
    bare: String,
    nonce: String,
}

/// Parses `gs2-header client-first-message-bare`.
pub fn parse_client_first(msg: &[u8]) -> Result<ClientFirst, SaslError> {
    let text = std::str::from_utf8(msg).map_err(|_| SaslError::Malformed("not UTF-8"))?;
    let mut it = text.splitn(3, ',');
    let cb = it.next().ok_or(SaslError::Malformed("empty"))?;
    let authz = it.next().ok_or(SaslError::Malformed("no GS2 header"))?;
    let bare = it
        .next()
        .ok_or(SaslError::Malformed("no client-first-bare"))?;
    // No channel binding is offered (no -PLUS mechanisms), so `p=` is an
    // error; `y` means the client could bind but thinks we cannot: fine.
    if cb != "n" && cb != "y" {
        return Err(SaslError::Malformed("channel binding not supported"));
    }
    let authzid = match authz.strip_prefix("a=") {
        Some(a) => Some(decode_name(a)?),
        None if authz.is_empty() => None,
        None => return Err(SaslError::Malformed("bad GS2 header")),
    };
    let mut username = None;
    let mut nonce = None;
    for attr in bare.split(',') {
        if let Some(v) = attr.strip_prefix("n=") {
            username = Some(decode_name(v)?);
        } else if let Some(v) = attr.strip_prefix("r=") {
            nonce = Some(v.to_owned());
        } else if attr.starts_with("m=") {
            return Err(SaslError::Malformed("mandatory extension not supported"));
        }
    }
    let (Some(username), Some(nonce)) = (username, nonce) else {
        return Err(SaslError::Malformed("missing n= or r="));
    };
    if nonce.is_empty() || nonce.contains(',') {
        return Err(SaslError::Malformed("bad nonce"));
    }
    Ok(ClientFirst {
        username,
        authzid,
        gs2_header: format!("{cb},{authz},"),
        bare: bare.to_owned(),
        nonce,
    })
}

fn decode_name(s: &str) -> Result<String, SaslError> {
    if s.contains('=') {
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(i) = rest.find('=') {
            out.push_str(&rest[..i]);
            match rest.get(i..i + 3) {
                Some("=2C") => out.push(','),
                Some("=3D") => out.push('='),
                _ => return Err(SaslError::Malformed("bad escape in name")),
            }
            rest = &rest[i + 3..];
        }
        out.push_str(rest);
        Ok(out)
    } else {
        Ok(s.to_owned())
    }
}

/// A SCRAM exchange after the server-first message.
#[derive(Debug, Clone)]
pub struct ScramServer {
    keys: ScramKeys,
    first: ClientFirst,
    server_first: String,
    nonce: String,
}

impl ScramServer {
    /// Answers `first` for an account with `keys`. `server_nonce` must be
    /// fresh and unpredictable (the caller passes randomness in).
    pub fn start(keys: ScramKeys, first: ClientFirst, server_nonce: &str) -> (Self, Vec<u8>) {
        let nonce = format!("{}{}", first.nonce, server_nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&keys.salt),
            keys.iterations
        );
        let out = server_first.clone().into_bytes();
        (
            Self {
                keys,
                first,
                server_first,
                nonce,
            },
            out,
        )
    }

    /// Checks the client-final message; on success returns the
    /// server-final message (`v=ServerSignature`) for `<success/>`.
    pub fn finish(&self, msg: &[u8]) -> Result<Vec<u8>, SaslError> {
        let text = std::str::from_utf8(msg).map_err(|_| SaslError::Malformed("not UTF-8"))?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or(SaslError::Malformed("no proof"))?;
        let mut cbind = None;
        let mut nonce = None;
        for attr in without_proof.split(',') {
            if let Some(v) = attr.strip_prefix("c=") {
                cbind = Some(v);
            } else if let Some(v) = attr.strip_prefix("r=") {
                nonce = Some(v);
            }
        }
        let expected_cbind = B64.encode(self.first.gs2_header.as_bytes());
        if cbind != Some(expected_cbind.as_str()) {
            return Err(SaslError::Malformed("channel binding mismatch"));
        }
        if nonce != Some(self.nonce.as_str()) {
            return Err(SaslError::Malformed("nonce mismatch"));
        }
        let proof = B64
            .decode(proof)
            .map_err(|_| SaslError::Malformed("bad proof"))?;
        let h = self.keys.hash;
        let auth_message = format!(
            "{},{},{}",
            self.first.bare, self.server_first, without_proof
        );
        let client_signature = h.hmac(&self.keys.stored_key, auth_message.as_bytes());
        if proof.len() != client_signature.len() {
            return Err(SaslError::NotAuthorized);
        }
        let client_key: Vec<u8> = proof
            .iter()
            .zip(&client_signature)
            .map(|(a, b)| a ^ b)
            .collect();
        if !constant_time_eq(&h.digest(&client_key), &self.keys.stored_key) {
            return Err(SaslError::NotAuthorized);
        }
        let server_signature = h.hmac(&self.keys.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature)).into_bytes())
    }

    /// The authenticated username.
    pub fn username(&self) -> &str {
        &self.first.username
    }

    /// The authorization identity the client asked for, if any.
    pub fn authzid(&self) -> Option<&str> {
        self.first.authzid.as_deref()
    }
}

/// What a SCRAM client derives from the password for one salt and
/// iteration count: the expensive part (PBKDF2), which a client that logs
/// in many times with the same credentials caches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientKeys {
    /// ClientKey.
    pub client_key: Vec<u8>,
    /// StoredKey = H(ClientKey).
    pub stored_key: Vec<u8>,
    /// ServerKey, to check the server's signature.
    pub server_key: Vec<u8>,
}

impl ClientKeys {
    /// Derives the keys (one PBKDF2).
    pub fn derive(hash: Hash, password: &str, salt: &[u8], iterations: u32) -> Self {
        let salted = hash.salted_password(password.as_bytes(), salt, iterations);
        let client_key = hash.hmac(&salted, b"Client Key");
        Self {
            stored_key: hash.digest(&client_key),
            server_key: hash.hmac(&salted, b"Server Key"),
            client_key,
        }
    }
}

/// The salt and iteration count of a server-first message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SaltParams {
    /// The decoded salt.
    pub salt: Vec<u8>,
    /// The iteration count.
    pub iterations: u32,
}

/// A SCRAM client, for tests and tools such as loadgen.
#[derive(Debug)]
pub struct ScramClient {
    hash: Hash,
    password: String,
    nonce: String,
    first_bare: String,
}

impl ScramClient {
    /// Starts an exchange; returns the client and the client-first message.
    pub fn new(hash: Hash, user: &str, password: &str, nonce: &str) -> (Self, Vec<u8>) {
        let first_bare = format!("n={user},r={nonce}");
        let msg = format!("n,,{first_bare}").into_bytes();
        (
            Self {
                hash,
                password: password.to_owned(),
                nonce: nonce.to_owned(),
                first_bare,
            },
            msg,
        )
    }

    /// Answers the server-first message; returns client-final and the
    /// expected server signature message.
    pub fn respond(&self, server_first: &[u8]) -> Result<(Vec<u8>, Vec<u8>), SaslError> {
        self.respond_with(server_first, |p| {
            ClientKeys::derive(self.hash, &self.password, &p.salt, p.iterations)
        })
    }

    /// As [`Self::respond`], with the keys for the server's salt and
    /// iteration count supplied by `keys` (from a cache, say).
    pub fn respond_with(
        &self,
        server_first: &[u8],
        keys: impl FnOnce(&SaltParams) -> ClientKeys,
    ) -> Result<(Vec<u8>, Vec<u8>), SaslError> {
        let sf =
            std::str::from_utf8(server_first).map_err(|_| SaslError::Malformed("not UTF-8"))?;
        let mut nonce = None;
        let mut salt = None;
        let mut iters = None;
        for attr in sf.split(',') {
            if let Some(v) = attr.strip_prefix("r=") {
                nonce = Some(v);
            } else if let Some(v) = attr.strip_prefix("s=") {
                salt = B64.decode(v).ok();
            } else if let Some(v) = attr.strip_prefix("i=") {
                iters = v.parse::<u32>().ok();
            }
        }
        let (Some(nonce), Some(salt), Some(iterations)) = (nonce, salt, iters) else {
            return Err(SaslError::Malformed("bad server-first"));
        };
        if !nonce.starts_with(&self.nonce) {
            return Err(SaslError::Malformed("server nonce does not extend ours"));
        }
        let h = self.hash;
        let k = keys(&SaltParams { salt, iterations });
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{},{}", self.first_bare, sf, without_proof);
        let signature = h.hmac(&k.stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = k
            .client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_sig = h.hmac(&k.server_key, auth_message.as_bytes());
        Ok((
            format!("{without_proof},p={}", B64.encode(proof)).into_bytes(),
            format!("v={}", B64.encode(server_sig)).into_bytes(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 5802 §5: user "user", password "pencil", SCRAM-SHA-1.
    #[test]
    fn rfc5802_example() {
        let salt = B64.decode("QSXCR+Q6sek8bf92").unwrap();
        let keys = ScramKeys::derive(Hash::Sha1, "pencil", &salt, 4096);
        let first = parse_client_first(b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL").unwrap();
        let (server, sf) = ScramServer::start(keys, first, "3rfcNHYJY1ZVvWVs7j");
        assert_eq!(
            sf,
            b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096"
        );
        let fin = server
            .finish(b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=")
            .unwrap();
        assert_eq!(fin, b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ=");
    }

    /// RFC 7677 §3: the same exchange with SCRAM-SHA-256.
    #[test]
    fn rfc7677_example() {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let keys = ScramKeys::derive(Hash::Sha256, "pencil", &salt, 4096);
        let first = parse_client_first(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO").unwrap();
        let (server, _) = ScramServer::start(keys, first, "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0");
        let fin = server
            .finish(
                b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            )
            .unwrap();
        assert_eq!(fin, b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    }

    #[test]
    fn client_and_server_agree_and_wrong_password_fails() {
        for hash in [Hash::Sha1, Hash::Sha256] {
            let keys = ScramKeys::generate(hash, "secret", 4096);
            let (client, cf) = ScramClient::new(hash, "jane", "secret", "abc");
            let (server, sf) =
                ScramServer::start(keys.clone(), parse_client_first(&cf).unwrap(), "xyz");
            let (cfin, expect) = client.respond(&sf).unwrap();
            assert_eq!(server.finish(&cfin).unwrap(), expect);
            assert_eq!(server.username(), "jane");

            let (bad, cf) = ScramClient::new(hash, "jane", "wrong", "abc");
            let (server, sf) = ScramServer::start(keys, parse_client_first(&cf).unwrap(), "xyz");
            let (cfin, _) = bad.respond(&sf).unwrap();
            assert_eq!(server.finish(&cfin), Err(SaslError::NotAuthorized));
        }
    }

    #[test]
    fn decoys_are_stable_per_name() {
        let a = ScramKeys::decoy(Hash::Sha1, b"secret", "nobody", 4096);
        let b = ScramKeys::decoy(Hash::Sha1, b"secret", "nobody", 4096);
        let c = ScramKeys::decoy(Hash::Sha1, b"secret", "someone", 4096);
        let d = ScramKeys::decoy(Hash::Sha1, b"other secret", "nobody", 4096);
        assert_eq!(a, b, "the same name gets the same salt every time");
        assert_ne!(a.salt, c.salt);
        assert_ne!(a.salt, d.salt, "the salt depends on the server secret");
        assert_eq!(
            (a.salt.len(), a.iterations),
            (16, 4096),
            "shaped like a real one"
        );
        assert_eq!(a.stored_key.len(), 20);
        let sha256 = ScramKeys::decoy(Hash::Sha256, b"secret", "nobody", 4096);
        assert_eq!(sha256.stored_key.len(), 32);
        assert!(!a.verify_password("nobody"));
    }

    #[test]
    fn plain_checks_derived_keys() {
        let keys = ScramKeys::generate(Hash::Sha1, "secret", 4096);
        assert!(keys.verify_password("secret"));
        assert!(!keys.verify_password("Secret"));
        assert_eq!(
            parse_plain(b"\0jane\0secret").unwrap(),
            (None, "jane".to_owned(), "secret".to_owned())
        );
        assert!(parse_plain(b"jane\0secret").is_err());
    }

    #[test]
    fn malformed_first_messages() {
        for bad in [
            &b"p=tls-unique,,n=u,r=x"[..],
            b"n,,r=x",
            b"n,,n=u",
            b"n,,n=u,r=x,m=ext",
            b"n,,n=a=2Xb,r=x",
            b"",
        ] {
            assert!(
                parse_client_first(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            parse_client_first(b"n,,n=a=2Cb=3D,r=x").unwrap().username,
            "a,b="
        );
        assert_eq!(
            parse_client_first(b"n,a=me@x,n=me,r=x")
                .unwrap()
                .authzid
                .as_deref(),
            Some("me@x")
        );
    }
}
