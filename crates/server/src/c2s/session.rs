//! A bound session's stanzas: each is answered by the server, routed to
//! another entity, or refused.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use fanout::OutboundHandle;
use stanza::ser::{self, StanzaError};
use stanza::{
    ns, BareJid, Element, FullJid, Kind, Stanza, StanzaErrorCondition, StreamErrorCondition,
};
use tokio::task::JoinHandle;
use tracing::info;

use super::Conn;
use crate::stream::{Flow, Stop, Transport};
use crate::Shared;

/// A bound session.
pub(super) struct Session {
    pub(super) jid: FullJid,
    pub(super) handle: OutboundHandle,
    pub(super) writer: JoinHandle<()>,
    /// Set when this side closes the stream, so the writer can tell a
    /// normal close from a replacement by a newer session (`conflict`).
    pub(super) closing: Arc<AtomicBool>,
    /// What the fan-out knows of this resource's presence.
    pub(super) presence: fanout::Presence,
    /// The caps `ver` of the last available presence.
    pub(super) caps_ver: Option<String>,
    /// Outstanding disco#info queries for caps: iq id -> ver.
    pub(super) caps_pending: std::collections::HashMap<String, String>,
    /// Lets other tasks end this session (password change, deletion).
    pub(super) control: Arc<crate::control::Control>,
    /// The (publisher, node) pairs whose last item was replayed since the
    /// resource became available; `None` while unavailable.
    pub(super) replayed_for: Option<std::collections::HashSet<(BareJid, String)>>,
}

impl Session {
    pub(super) fn new(
        jid: FullJid,
        handle: OutboundHandle,
        writer: JoinHandle<()>,
        closing: Arc<AtomicBool>,
        control: Arc<crate::control::Control>,
    ) -> Self {
        Self {
            jid,
            handle,
            writer,
            closing,
            control,
            presence: fanout::Presence::default(),
            caps_ver: None,
            caps_pending: std::collections::HashMap::new(),
            replayed_for: None,
        }
    }

    /// Whether the registry's session for this JID is still ours (not
    /// replaced by a newer bind).
    pub(super) fn is_current(&self, shared: &Shared) -> bool {
        shared
            .fanout
            .registry()
            .session(&self.jid)
            .is_some_and(|e| e.id() == self.handle.session().id())
    }

    /// Detaches from the registry unless a newer session took the JID.
    pub(super) fn leave(&self, shared: &Shared) {
        shared
            .controls
            .remove_if(&self.jid, |_, c| c.id == self.control.id);
        if self.is_current(shared) {
            shared.fanout.detach(&self.jid);
        } else {
            self.handle.queue().close();
        }
        info!(jid = %self.jid, "session ended");
    }
}

impl<T: Transport> Conn<T> {
    pub(super) async fn on_session(&mut self, stanza: &Stanza) -> Flow {
        let Some(session) = &self.session else {
            return Err(Stop::Gone);
        };
        let me = session.jid.clone();
        match stanza.kind() {
            Kind::Iq => {
                let ty = stanza.type_();
                if matches!(ty.as_deref(), Some("result" | "error")) {
                    let to = stanza.to();
                    let for_us = to
                        .as_deref()
                        .is_none_or(|t| Some(t) == self.neg.domain() || t == me.to_bare().as_str());
                    if !for_us {
                        // A client answering another client.
                        return self.route_iq(stanza, &me).await;
                    }
                    return self.on_iq_response(stanza).await;
                }
                let el = Element::from_stanza(stanza.bytes())
                    .map_err(|_| Stop::Error(StreamErrorCondition::NotWellFormed, None))?;
                let id = el.attr("id").unwrap_or("").to_owned();
                let to = el.attr("to").map(str::to_owned);
                let own_bare = me.to_bare();
                let to_domain = to.as_deref() == self.neg.domain();
                let to_own = to.as_deref() == Some(own_bare.as_str());
                // No `to`, or our own bare JID: the server answers for the
                // account (RFC 6120 §10.3.3).
                let to_server = to.is_none() || to_domain || to_own;
                let payload = el.first_element();
                let is = |name: &str, xmlns: &str| payload.is_some_and(|p| p.is(name, xmlns));
                let get = ty.as_deref() == Some("get");
                if to_server && is("query", ns::REGISTER) {
                    let domain = self.neg.domain().unwrap_or_default().to_owned();
                    let reply = crate::register::iq(
                        &self.shared,
                        Some(&own_bare),
                        Some(&me),
                        &domain,
                        self.peer.ip(),
                        &el,
                    )
                    .await;
                    return self.send(reply).await;
                }
                if (to.is_none() || to_own) && is("query", ns::ROSTER) {
                    let reply = crate::presence::roster_iq(&self.shared, &me, &el).await;
                    return self.send(reply).await;
                }
                if (to.is_none() || to_own) && payload.is_some_and(|p| p.ns == ns::BLOCKING) {
                    let reply = crate::blocking::iq(&self.shared, &me, &el).await;
                    return self.send(reply).await;
                }
                if payload.is_some_and(|p| p.ns == ns::PUBSUB || p.ns == ns::PUBSUB_OWNER) {
                    for out in crate::pep::iq(&self.shared, &me, &el).await {
                        self.send(out).await?;
                    }
                    return Ok(());
                }
                let disco = payload.filter(|p| {
                    get && (p.is("query", ns::DISCO_INFO) || p.is("query", ns::DISCO_ITEMS))
                });
                if let Some(query) = disco {
                    let target = match to.as_deref().map(stanza::Jid::new) {
                        None => None,
                        Some(Ok(j)) if !j.is_full() => Some(j.to_bare()),
                        _ => {
                            // A full JID: the client answers for itself.
                            return self.route_iq(stanza, &me).await;
                        }
                    };
                    let target = target.filter(|t| t.node().is_some());
                    if target
                        .as_ref()
                        .is_some_and(|t| self.shared.config.served_domain(t.domain()).is_none())
                    {
                        return self.route_iq(stanza, &me).await;
                    }
                    let reply = match crate::disco::iq(&self.shared, &me, target.as_ref(), query)
                        .await
                    {
                        Ok(p) => ser::iq_result(&id, to.as_deref(), Some(me.as_str()), Some(&p)),
                        Err(e) => {
                            ser::stanza_error("iq", Some(&id), to.as_deref(), Some(me.as_str()), &e)
                        }
                    };
                    return self.send(reply).await;
                }
                let known = to_server
                    && payload.is_some_and(|p| {
                        (p.is("session", ns::SESSION) && ty.as_deref() == Some("set"))
                            || (p.is("ping", ns::PING) && get)
                    });
                if known {
                    return self
                        .send(ser::iq_result(&id, to.as_deref(), Some(me.as_str()), None))
                        .await;
                }
                if !to_server {
                    return self.route_iq(stanza, &me).await;
                }
                let err = StanzaError::new(StanzaErrorCondition::ServiceUnavailable);
                self.send(ser::stanza_error(
                    "iq",
                    Some(&id),
                    to.as_deref(),
                    Some(me.as_str()),
                    &err,
                ))
                .await
            }
            Kind::Message => match crate::route::message(&self.shared, &me, stanza) {
                Some(error) => self.send(error).await,
                None => Ok(()),
            },
            Kind::Presence => {
                let ty = stanza.type_().map(|t| t.into_owned());
                if let Some(kind) = ty.as_deref().and_then(crate::roster::SubKind::parse) {
                    if stanza.to().is_none() {
                        return Ok(());
                    }
                    return match crate::presence::subscription(&self.shared, &me, stanza, kind)
                        .await
                    {
                        Some(e) => self.send(e).await,
                        None => Ok(()),
                    };
                }
                if !matches!(ty.as_deref(), None | Some("unavailable")) {
                    // probe and error from a client: nothing to do.
                    return Ok(());
                }
                if stanza.to().is_some() {
                    return match crate::presence::directed(&self.shared, &me, stanza) {
                        Some(e) => self.send(e).await,
                        None => Ok(()),
                    };
                }
                self.on_own_presence(stanza).await
            }
            Kind::Other => Err(Stop::Error(
                StreamErrorCondition::UnsupportedStanzaType,
                None,
            )),
        }
    }

    /// An iq for another entity: routed to a full JID's session, answered
    /// for a bare JID (RFC 6121 §8.5).
    async fn route_iq(&mut self, stanza: &Stanza, me: &FullJid) -> Flow {
        match crate::route::iq(&self.shared, me, stanza) {
            Some(e) => self.send(e).await,
            None => Ok(()),
        }
    }
}
