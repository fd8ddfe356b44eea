//! The `[web]` settings: limits of the HTTP side's API and feeds.

use serde::Deserialize;

use crate::config::ConfigError;

/// HTTP API and feed settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebConfig {
    /// Entries in an Atom feed, newest first (100).
    pub feed_items: usize,
    /// Characters in a status posted through the API (500, Mastodon's).
    pub max_status_chars: usize,
    /// Bytes in a request body (64 KiB); larger gets 413.
    pub max_body_bytes: usize,
    /// HTTP requests (API, pages, feeds, discovery) per token or page
    /// session, and per source address, in each window (300, Mastodon's
    /// default); past it, 429 until the window ends.
    pub requests_per_window: u32,
    /// The rate window in seconds (300).
    pub window_secs: u64,
    /// Most tokens (API and page sessions) one account may hold (100);
    /// the oldest is revoked to make room.
    pub max_tokens_per_account: usize,
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            feed_items: 100,
            max_status_chars: 500,
            max_body_bytes: 64 * 1024,
            requests_per_window: 300,
            window_secs: 300,
            max_tokens_per_account: 100,
        }
    }
}

impl WebConfig {
    /// Checks the values, naming the key of the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (key, v) in [
            ("web.feed_items", self.feed_items as u64),
            ("web.max_status_chars", self.max_status_chars as u64),
            ("web.max_body_bytes", self.max_body_bytes as u64),
            (
                "web.requests_per_window",
                u64::from(self.requests_per_window),
            ),
            ("web.window_secs", self.window_secs),
            (
                "web.max_tokens_per_account",
                self.max_tokens_per_account as u64,
            ),
        ] {
            if v == 0 {
                return Err(ConfigError::Invalid {
                    key,
                    why: "must be at least 1".into(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_a_zero_names_its_key() {
        WebConfig::default().validate().unwrap();
        let c: WebConfig = toml::from_str("feed_items = 0").unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("web.feed_items"), "{e}");
        assert!(toml::from_str::<WebConfig>("no_such_key = 1").is_err());
    }
}
