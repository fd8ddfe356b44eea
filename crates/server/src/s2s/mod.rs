//! Server-to-server streams (RFC 6120 with `jabber:server`, XEP-0220
//! dialback), issue #12.
//!
//! Negotiation, without I/O:
//! - [`incoming`]: an incoming stream's header, STARTTLS and dialback, and
//!   the rule every stanza on it passes: its from-domain was verified for
//!   its to-domain.
//! - [`outgoing`]: an outgoing stream's header, STARTTLS, our dialback key,
//!   and the `<db:verify/>` questions we ask as the receiving server.
//! - [`resolve`]: where to connect for a domain: the static host map, then
//!   SRV records in RFC 2782's order, then the domain on 5269.
//!
//! The transports, on the same framer and TLS as c2s:
//! - `listen`: the 5269 listener and each incoming stream's task, which
//!   hands verified stanzas to `inbound`.
//! - `link`: one outgoing stream per (local, remote) domain pair, shared by
//!   every sender, with its bounded queue; `connect` finds and reaches the
//!   server (hickory-resolver).
//! - `inbound`: stanzas from other servers, delivered to local sessions or
//!   answered for local accounts (PEP, disco).
//! - `wire`: what both directions share on the wire.
//! - [`settings`]: the `[s2s]` configuration.

pub mod incoming;
pub mod outgoing;
pub mod resolve;
pub mod settings;

mod connect;
mod inbound;
mod link;
pub(crate) mod listen;
mod multicast;
pub(crate) mod presence;
mod remote;
pub(crate) mod wire;

use std::sync::{Arc, OnceLock, Weak};

use bytes::Bytes;
use dashmap::DashMap;
use fanout::{Frame, PushError};
use stanza::StanzaErrorCondition as C;
use tokio::sync::oneshot;

pub use settings::S2sConfig;

use crate::Shared;

/// The server's federation state: its outgoing links, the resolver, and
/// the TLS client configuration.
pub(crate) struct Federation {
    /// By "local remote".
    links: DashMap<String, Arc<link::Link>>,
    resolver: OnceLock<Option<hickory_resolver::TokioResolver>>,
    pub(crate) client_tls: Arc<rustls::ClientConfig>,
    /// The server, for the link tasks this starts.
    shared: Weak<Shared>,
    /// Permits for incoming streams (`max_incoming`).
    pub(crate) incoming: Arc<tokio::sync::Semaphore>,
    /// Remote resources that sent our accounts available presence.
    remote: DashMap<stanza::FullJid, remote::RemoteResource>,
    /// Our open caps questions to remote resources: id → (ver, asked at).
    caps_queries: DashMap<String, (String, std::time::Instant)>,
    /// Our open multicast questions to peers: id → remote domain.
    multicast_queries: DashMap<String, String>,
}

impl std::fmt::Debug for Federation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Federation")
            .field("links", &self.links.len())
            .finish()
    }
}

impl Federation {
    pub(crate) fn new(shared: Weak<Shared>, config: &S2sConfig) -> Self {
        Self {
            links: DashMap::new(),
            resolver: OnceLock::new(),
            client_tls: crate::tls::unverified_client_config(),
            shared,
            incoming: Arc::new(tokio::sync::Semaphore::new(config.max_incoming)),
            remote: DashMap::new(),
            caps_queries: DashMap::new(),
            multicast_queries: DashMap::new(),
        }
    }

    /// The link from `local` to `remote`, started on first use; `None`
    /// past `max_remote_domains` or while the server stops.
    pub(crate) fn link(&self, local: &str, remote: &str) -> Option<Arc<link::Link>> {
        let key = format!("{local} {remote}");
        if let Some(l) = self.links.get(&key) {
            return Some(l.clone());
        }
        let shared = self.shared.upgrade()?;
        let s2s = &shared.config.s2s;
        if self.links.len() >= s2s.max_remote_domains {
            return None;
        }
        let l = self
            .links
            .entry(key)
            .or_insert_with(|| {
                let (l, questions) = link::Link::new(local, remote, s2s.queue, s2s.queue_bytes);
                tokio::spawn(link::run(shared.clone(), l.clone(), questions));
                l
            })
            .clone();
        Some(l)
    }

    /// Queues a stanza from `local` for `remote`. The error is what to
    /// bounce with.
    pub(crate) fn send(&self, local: &str, remote: &str, bytes: Bytes) -> Result<(), C> {
        let Some(link) = self.link(local, remote) else {
            return Err(C::ResourceConstraint);
        };
        let bytes = wire::renamespace(&bytes, stanza::ns::CLIENT, stanza::ns::SERVER);
        match link.queue.push(Frame::Bytes(bytes)) {
            Ok(()) => Ok(()),
            Err(PushError::Full) => Err(C::ResourceConstraint),
            Err(PushError::Closed) => Err(C::RemoteServerNotFound),
        }
    }

    /// Asks `originating`'s authoritative server whether `key` is its key
    /// for our incoming stream `id` to `receiving`.
    pub(crate) async fn verify(
        &self,
        receiving: &str,
        originating: &str,
        id: &str,
        key: &str,
    ) -> bool {
        let Some(link) = self.link(receiving, originating) else {
            return false;
        };
        let (tx, rx) = oneshot::channel();
        let q = link::VerifyReq {
            originating: originating.to_owned(),
            receiving: receiving.to_owned(),
            id: id.to_owned(),
            key: key.to_owned(),
            reply: tx,
        };
        if link.verify.send(q).await.is_err() {
            return false;
        }
        rx.await.unwrap_or(false)
    }
}
