//! OAuth applications and access tokens for the HTTP API. A token is
//! stored only as its SHA-256 hash: a copy of the store does not log
//! anyone in. The same goes for an application's client secret.

use serde::{Deserialize, Serialize};
use stanza::BareJid;

use super::StoreError;

/// A registered application (`POST /api/v1/apps`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppRecord {
    /// Its name.
    pub name: String,
    /// `client_id`, public.
    pub client_id: String,
    /// SHA-256 of `client_secret`.
    pub secret_hash: [u8; 32],
    /// Where authorization codes may be sent, space-separated.
    pub redirect_uris: String,
    /// The scopes it asked for, space-separated.
    pub scopes: String,
    /// Its website, if given.
    pub website: Option<String>,
}

/// What an access token stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// The account.
    pub jid: String,
    /// The application's `client_id`; empty for personal tokens.
    pub client_id: String,
    /// Granted scopes, space-separated.
    pub scopes: String,
    /// When it was made, in milliseconds since the Unix epoch.
    pub created_ms: u64,
}

/// Applications and tokens.
pub trait TokenStore {
    /// Records an application.
    fn create_app(&self, app: &AppRecord) -> Result<(), StoreError>;

    /// An application by `client_id`.
    fn app(&self, client_id: &str) -> Result<Option<AppRecord>, StoreError>;

    /// Records a token by its hash. When the account already holds `max`
    /// tokens, the oldest are revoked to make room. Durable when it
    /// returns.
    fn create_token(
        &self,
        hash: &[u8; 32],
        token: &TokenRecord,
        max: usize,
    ) -> Result<(), StoreError>;

    /// The token with this hash.
    fn token(&self, hash: &[u8; 32]) -> Result<Option<TokenRecord>, StoreError>;

    /// Revokes a token; false when there was none.
    fn revoke_token(&self, hash: &[u8; 32]) -> Result<bool, StoreError>;

    /// How many tokens `jid` holds.
    fn token_count(&self, jid: &BareJid) -> Result<usize, StoreError>;
}
