//! A bound session's stanzas: each is answered by the server, routed to
//! another entity, or refused.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use fanout::OutboundHandle;
use stanza::ser::{self, StanzaError};
use stanza::{ns, Element, FullJid, Kind, Stanza, StanzaErrorCondition, StreamErrorCondition};
use tokio::task::JoinHandle;
use tracing::info;

use super::Conn;
use crate::stream::{Flow, Stop, Transport};
use crate::Shared;
use stanza::xep::{IqType, Payload};

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
    pub(super) caps_ver: Option<Box<str>>,
    /// Outstanding disco#info queries for caps: (iq id, ver), at most
    /// `max_caps_queries` of them. A vector: few, and nothing held while
    /// there are none (a map's empty value is 48 bytes).
    pub(super) caps_pending: Vec<(String, String)>,
    /// Lets other tasks end this session (password change, deletion).
    pub(super) control: Arc<crate::control::Control>,
    /// The (publisher, node) pairs whose last item was replayed since the
    /// resource became available; `None` while unavailable.
    pub(super) replayed_for: Option<super::presence::Replayed>,
    /// Stream management (XEP-0198), shared with the writer.
    pub(super) sm: crate::stream::Sm,
    /// The resumption id, when the client enabled resumption.
    pub(super) sm_id: Option<Box<str>>,
}

impl Session {
    pub(super) fn new(
        jid: FullJid,
        handle: OutboundHandle,
        writer: JoinHandle<()>,
        closing: Arc<AtomicBool>,
        control: Arc<crate::control::Control>,
        sm: crate::stream::Sm,
    ) -> Self {
        Self {
            sm,
            sm_id: None,
            jid,
            handle,
            writer,
            closing,
            control,
            presence: fanout::Presence::default(),
            caps_ver: None,
            caps_pending: Vec::new(),
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
        if let Some(id) = &self.sm_id {
            shared.resumable.remove(&**id);
        }
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
                        .is_none_or(|t| Some(t) == self.domain() || t == me.to_bare().as_str());
                    if !for_us {
                        // A client answering another client.
                        return self.route_iq(stanza, &me).await;
                    }
                    return self.on_iq_response(stanza).await;
                }
                self.on_iq_request(stanza, &me).await
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
            Kind::Other => {
                let el = Element::from_stanza(stanza.bytes())
                    .map_err(|_| Stop::Error(StreamErrorCondition::NotWellFormed, None))?;
                if el.ns == stanza::xep::sm::NS {
                    return self.on_sm(&el).await;
                }
                Err(Stop::Error(
                    StreamErrorCondition::UnsupportedStanzaType,
                    None,
                ))
            }
        }
    }

    /// An iq get or set: parsed once into a typed request and answered
    /// when it is for the server or the account, routed otherwise.
    async fn on_iq_request(&mut self, stanza: &Stanza, me: &FullJid) -> Flow {
        let el = Element::from_stanza(stanza.bytes())
            .map_err(|_| Stop::Error(StreamErrorCondition::NotWellFormed, None))?;
        let id = el.attr("id").unwrap_or("").to_owned();
        let to = el.attr("to").map(str::to_owned);
        let reply_error = |e: &StanzaError<'_>| {
            ser::stanza_error("iq", Some(&id), to.as_deref(), Some(me.as_str()), e)
        };
        let own_bare = me.to_bare();
        let to_own = to.as_deref() == Some(own_bare.as_str());
        // No `to`, the domain, or our own bare JID: the server answers for
        // the account (RFC 6120 §10.3.3).
        let to_server = to.is_none() || to_own || to.as_deref() == self.domain();
        let remote = to
            .as_deref()
            .and_then(|t| stanza::Jid::new(t).ok())
            .is_some_and(|j| self.shared.config.served_domain(j.domain()).is_none());
        if remote {
            // Another domain's entity answers for itself, over s2s.
            return self.route_iq(stanza, me).await;
        }
        let Some(payload) = el.first_element() else {
            if !to_server {
                return self.route_iq(stanza, me).await;
            }
            return self
                .send(reply_error(&StanzaError::new(
                    StanzaErrorCondition::BadRequest,
                )))
                .await;
        };
        if !self.answers(payload, to.as_deref(), to_server, to_own) {
            if !to_server {
                return self.route_iq(stanza, me).await;
            }
            let err = StanzaError::new(StanzaErrorCondition::ServiceUnavailable);
            return self.send(reply_error(&err)).await;
        }
        let parsed = IqType::parse(el.attr("type"))
            .ok_or_else(|| StanzaError::new(StanzaErrorCondition::BadRequest))
            .and_then(|ty| {
                Payload::parse(ty, payload).unwrap_or_else(|| {
                    Err(StanzaError::new(StanzaErrorCondition::ServiceUnavailable))
                })
            });
        let req = match parsed {
            Ok(req) => req,
            Err(e) => return self.send(reply_error(&e)).await,
        };
        let shared = self.shared.clone();
        let reply = match req {
            Payload::Register(r) => {
                let domain = self.domain().unwrap_or_default().to_owned();
                let peer = self.peer.ip();
                crate::register::iq(&shared, Some(&own_bare), Some(me), &domain, peer, &id, r).await
            }
            Payload::Roster(r) => crate::presence::roster_iq(&shared, me, &id, r).await,
            Payload::Blocking(r) => crate::blocking::iq(&shared, me, &id, r).await,
            Payload::Pubsub(r) => {
                for out in crate::pep::iq(&shared, me, &id, to.as_deref(), *r).await {
                    self.send(out).await?;
                }
                return Ok(());
            }
            Payload::Disco(r) => {
                let target = to
                    .as_deref()
                    .and_then(|t| stanza::Jid::new(t).ok())
                    .map(|j| j.to_bare())
                    .filter(|t| t.node().is_some());
                match crate::disco::iq(&shared, &me.to_jid(), target.as_ref(), &r).await {
                    Ok(p) => ser::iq_result(&id, to.as_deref(), Some(me.as_str()), Some(&p)),
                    Err(e) => reply_error(&e),
                }
            }
            Payload::Ping | Payload::Session => {
                ser::iq_result(&id, to.as_deref(), Some(me.as_str()), None)
            }
        };
        self.send(reply).await
    }

    /// Whether the server answers this payload for this address: the
    /// account's own roster, block list and registration; any account's
    /// PEP service (the pubsub code checks the owner); disco of the server
    /// or of a local account's bare JID; ping and session to the server.
    fn answers(&self, payload: &Element, to: Option<&str>, to_server: bool, to_own: bool) -> bool {
        match payload.ns.as_str() {
            ns::PUBSUB | ns::PUBSUB_OWNER => true,
            ns::ROSTER | ns::BLOCKING => to.is_none() || to_own,
            ns::REGISTER | ns::PING | ns::SESSION => to_server,
            ns::DISCO_INFO | ns::DISCO_ITEMS => match to.map(stanza::Jid::new) {
                None => true,
                // A full JID answers for itself; a remote domain is not ours.
                Some(Ok(j)) => {
                    !j.is_full() && self.shared.config.served_domain(j.domain()).is_some()
                }
                Some(Err(_)) => false,
            },
            _ => false,
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
