//! Publishes a client sent together are handled together.
//!
//! When the reader meets a publish to the account's own PEP service, it
//! takes the publishes framed right behind it from the bytes already read
//! (no waiting for more), up to [`MAX_PUBLISHES`]. They are stored in one
//! transaction and delivered in order in one pass, so a burst costs one
//! fsync and each follower's writer finds the posts queued together and
//! writes them at once. Anything else stops the run and is handled after
//! it, so stanzas keep their order (RFC 6120 §10.1): every publish of the
//! run is durable and delivered before the next stanza is looked at.

use stanza::ser::{self, StanzaError};
use stanza::xep::pubsub::Request;
use stanza::xep::{IqType, Payload};
use stanza::{Element, Event, FullJid, Kind, Stanza, StanzaErrorCondition, StreamErrorCondition};

use super::{Conn, Held};

/// A publish taken into a run: iq id, `to`, and the checked request or
/// the error to answer.
type Taken = (
    String,
    Option<String>,
    Result<Prepared, StanzaError<'static>>,
);
use crate::pep::Prepared;
use crate::stream::{Flow, Stop, Transport};

/// Most publishes taken in one run.
pub(super) const MAX_PUBLISHES: usize = 64;

/// A publish to the sender's own service, parsed: its iq id, its `to`,
/// and the request.
pub(super) struct OwnPublish {
    id: String,
    to: Option<String>,
    node: String,
    item_id: Option<String>,
    payload: Element,
    options: Option<Element>,
}

impl<T: Transport> Conn<T> {
    /// The stanza as an own-account publish, or `None` for anything else.
    pub(super) fn own_publish(&self, stanza: &Stanza, me: &FullJid) -> Option<OwnPublish> {
        if stanza.kind() != Kind::Iq
            || stanza.type_().as_deref() != Some("set")
            || !stanza.bytes().windows(8).any(|w| w == b"<publish")
        {
            return None;
        }
        let el = Element::from_stanza(stanza.bytes()).ok()?;
        let to = el.attr("to").map(str::to_owned);
        let own = me.to_bare();
        if to.as_deref().is_some_and(|t| t != own.as_str()) {
            return None;
        }
        let Some(Ok(Payload::Pubsub(req))) = Payload::parse(IqType::Set, el.first_element()?)
        else {
            return None;
        };
        let Request::Publish {
            node,
            id: item_id,
            payload,
            options,
        } = *req
        else {
            return None;
        };
        Some(OwnPublish {
            id: el.attr("id").unwrap_or("").to_owned(),
            to,
            node,
            item_id,
            payload,
            options,
        })
    }

    /// The checks before storing (the publish rate among them).
    fn prepare(&self, p: OwnPublish, me: &FullJid) -> Taken {
        let prepared = crate::pep::prepare(
            &self.shared,
            me,
            &me.to_bare(),
            p.node,
            p.item_id,
            &p.payload,
            p.options.as_ref(),
        );
        (p.id, p.to, prepared)
    }

    /// Handles `first` and the publishes already framed behind it.
    pub(super) async fn on_publishes(&mut self, first: OwnPublish, me: &FullJid) -> Flow {
        let mut run = vec![self.prepare(first, me)];
        while run.len() < MAX_PUBLISHES {
            let next = match self.t.next_event() {
                Ok(Some(Event::Stanza(bytes))) => bytes,
                other => {
                    self.held = Some(Box::new(Held {
                        next: other,
                        wait: None,
                    }));
                    break;
                }
            };
            let stanza = Stanza::from_framed(next.clone())
                .map_err(|_| Stop::Error(StreamErrorCondition::NotWellFormed, None))?;
            let Some(p) = self.own_publish(&stanza, me) else {
                self.held = Some(Box::new(Held {
                    next: Ok(Some(Event::Stanza(next))),
                    wait: None,
                }));
                break;
            };
            self.shared.metrics.stanzas_in.inc();
            let wait = self.shared.limiters.stanza(&me.to_bare());
            if !wait.is_zero() {
                // Over the stanza rate: the run ends here, and this one
                // waits on the reader's usual path.
                self.held = Some(Box::new(Held {
                    next: Ok(Some(Event::Stanza(next))),
                    wait: Some(wait),
                }));
                break;
            }
            run.push(self.prepare(p, me));
        }
        let internal = || StanzaError::new(StanzaErrorCondition::InternalServerError);
        let mut ready = Vec::new();
        let mut replies: Vec<(String, Option<String>, Option<StanzaError<'static>>)> =
            Vec::with_capacity(run.len());
        for (id, to, prepared) in run {
            match prepared {
                Ok(req) => {
                    ready.push(req);
                    replies.push((id, to, None));
                }
                Err(e) => replies.push((id, to, Some(e))),
            }
        }
        let mut results = crate::pep::publish_prepared(&self.shared, ready)
            .await
            .into_iter();
        for (id, to, refused) in replies {
            let reply = match refused {
                Some(e) => Err(e),
                None => results.next().unwrap_or_else(|| Err(internal())),
            };
            let (to, from) = (to.as_deref(), Some(me.as_str()));
            let out = match reply {
                Ok(payload) => ser::iq_result(&id, to, from, Some(&payload)),
                Err(e) => ser::stanza_error("iq", Some(&id), to, from, &e),
            };
            self.send(out).await?;
            self.sm_handled();
        }
        Ok(())
    }
}
