//! Stanzas from other servers, after the incoming stream checked that
//! their from-domain was verified for their to-domain: delivered to local
//! sessions, or answered for local accounts and the server (PEP requests
//! under each node's access model, disco, ping). Answers and errors go
//! back over our outgoing stream to the sender's domain.

use std::sync::Arc;

use bytes::Bytes;
use stanza::ser::{self, StanzaError};
use stanza::xep::{IqType, Payload};
use stanza::{ns, Element, Jid, Kind, Stanza, StanzaErrorCondition as C};
use tracing::{debug, warn};

use crate::metrics::Metrics;

use crate::route;
use crate::Shared;

/// Handles one stanza from a verified remote sender.
pub(super) async fn stanza(shared: &Arc<Shared>, stanza: Stanza) {
    let parse = |j: Option<std::borrow::Cow<'_, str>>| j.and_then(|j| Jid::new(&j).ok());
    let (Some(from), Some(to)) = (parse(stanza.from()), parse(stanza.to())) else {
        return;
    };
    let bytes = super::wire::renamespace(stanza.bytes(), ns::SERVER, ns::CLIENT);
    let ty = stanza.type_().map(|t| t.into_owned());
    let error_back = |cond: C| {
        let e = ser::stanza_error(
            stanza.name(),
            stanza.id().as_deref(),
            Some(to.as_str()),
            Some(from.as_str()),
            &StanzaError::new(cond),
        );
        send_back(shared, &to, &from, e);
    };
    let blocked = {
        let registry = shared.fanout.registry();
        registry.is_blocked(&to.to_bare(), &from.to_bare(), from.to_full().as_ref())
    };
    match stanza.kind() {
        Kind::Message if to.node().is_none() => {
            // To our domain: a multicast (XEP-0033) for our users.
            match Element::from_stanza(&bytes) {
                Ok(el) if super::multicast::is_multicast(&el) => {
                    super::multicast::deliver(shared, &from, to.domain(), el);
                }
                Ok(_) => {}
                // The framer took it, so this is a limit of the tree
                // parser: said, and counted, rather than lost unseen.
                Err(e) => {
                    warn!(from = %from, error = %e, bytes = bytes.len(),
                          "s2s: a message to the domain could not be parsed; dropped");
                    shared
                        .metrics
                        .s2s_drops
                        .get_or_create(&Metrics::domain(from.domain(), "reason", "unparsable"))
                        .inc();
                }
            }
        }
        Kind::Message => {
            let ty = ty.as_deref().unwrap_or("normal");
            let sent = if blocked {
                Err(C::ServiceUnavailable)
            } else {
                route::deliver_message(shared, &to, ty, &bytes)
            };
            tracing::trace!(%to, ok = sent.is_ok(), "s2s: message in");
            if let Err(c) = sent {
                if ty != "error" && ty != "headline" {
                    error_back(c);
                }
            }
        }
        Kind::Iq => {
            let response = matches!(ty.as_deref(), Some("result" | "error"));
            if blocked {
                if !response {
                    error_back(C::ServiceUnavailable);
                }
                return;
            }
            if to.is_full() {
                if let Err(c) = route::deliver_iq(shared, &to, &bytes) {
                    if !response {
                        error_back(c);
                    }
                }
                return;
            }
            if !response {
                for out in iq_request(shared, &from, &to, &bytes).await {
                    send_back(shared, &to, &from, out);
                }
            } else if to.node().is_none() {
                // Answers to the server: our caps questions.
                if let (Some(id), Ok(el)) = (stanza.id(), Element::from_stanza(&bytes)) {
                    if !super::multicast::answer(shared, &id, &el) {
                        super::remote::caps_answer(shared, &id, &el).await;
                    }
                }
            }
        }
        Kind::Presence => {
            if !blocked {
                super::presence::inbound(shared, &from, &to, ty.as_deref(), &bytes).await;
            }
        }
        Kind::Other => {}
    }
}

/// Queues a reply for the remote sender over our stream to its domain.
fn send_back(shared: &Shared, local: &Jid, remote: &Jid, bytes: Bytes) {
    if let Err(c) = shared.s2s.send(local.domain(), remote.domain(), bytes) {
        debug!(remote = %remote, ?c, "s2s: a reply could not be queued");
    }
}

/// An iq get or set for a local account's bare JID or the server: PEP,
/// disco and ping are answered; anything else is `service-unavailable`.
async fn iq_request(shared: &Arc<Shared>, from: &Jid, to: &Jid, bytes: &Bytes) -> Vec<Bytes> {
    let Ok(el) = Element::from_stanza(bytes) else {
        return Vec::new();
    };
    let id = el.attr("id").unwrap_or("").to_owned();
    let reply_error = |e: StanzaError<'_>| {
        vec![ser::stanza_error(
            "iq",
            Some(&id),
            Some(to.as_str()),
            Some(from.as_str()),
            &e,
        )]
    };
    let Some(payload) = el.first_element() else {
        return reply_error(StanzaError::new(C::BadRequest));
    };
    let parsed = IqType::parse(el.attr("type"))
        .ok_or_else(|| StanzaError::new(C::BadRequest))
        .and_then(|ty| {
            Payload::parse(ty, payload)
                .unwrap_or_else(|| Err(StanzaError::new(C::ServiceUnavailable)))
        });
    let to_server = to.node().is_none();
    match parsed {
        Err(e) => reply_error(e),
        // PEP acts for a resource: a request from a bare JID or a domain
        // has nobody to act for.
        Ok(Payload::Pubsub(r)) if !to_server => match from.to_full() {
            Some(me) => crate::pep::iq(shared, &me, &id, Some(to.as_str()), *r).await,
            None => reply_error(StanzaError::new(C::ServiceUnavailable)),
        },
        Ok(Payload::Disco(r)) => {
            let target = (!to_server).then(|| to.to_bare());
            match crate::disco::iq(shared, from, target.as_ref(), &r).await {
                Ok(p) => vec![ser::iq_result(
                    &id,
                    Some(to.as_str()),
                    Some(from.as_str()),
                    Some(&p),
                )],
                Err(e) => reply_error(e),
            }
        }
        Ok(Payload::Ping) => vec![ser::iq_result(
            &id,
            Some(to.as_str()),
            Some(from.as_str()),
            None,
        )],
        // Rosters, block lists and registration are the account's own.
        Ok(_) => reply_error(StanzaError::new(C::ServiceUnavailable)),
    }
}
