//! Stream management (XEP-0198) for a client session: acks both ways, and
//! a session that outlives its connection while it may be resumed.
//!
//! A resumable session whose connection drops is parked in
//! [`Shared::detached`] under its resumption id, still in the fan-out
//! registry: deliveries keep going into its queue, bounded in bytes as
//! always (an overflow makes it unresumable). A `<resume/>` from the same
//! account within `limits.resumption_timeout_secs` takes it back, sends
//! again what the client did not acknowledge, and starts a writer on the
//! new connection. Otherwise it ends: unacknowledged messages get RFC 6121
//! §8.5 handling (headlines are dropped and counted), iqs an error, and the
//! resource goes unavailable.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use bytes::Bytes;
use fanout::{Frame, QueueState};
use stanza::ser::{self, StanzaError};
use stanza::xep::sm::{self, Nonza};
use stanza::{Element, Kind, Stanza, StanzaErrorCondition, StreamErrorCondition};
use tracing::{debug, info};

use super::session::Session;
use super::Conn;
use crate::stream::{Flow, Stop, Transport, WriterParams};
use crate::Shared;

/// A session waiting to be resumed.
pub(crate) struct Detached {
    session: Session,
}

impl std::fmt::Debug for Detached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detached")
            .field("jid", &self.session.jid)
            .finish_non_exhaustive()
    }
}

impl<T: Transport> Conn<T> {
    /// A stream management nonza from a bound session.
    pub(super) async fn on_sm(&mut self, el: &Element) -> Flow {
        let nonza = Nonza::parse(el).map_err(|c| Stop::Error(c, None))?;
        let timeout = self.shared.config.limits.resumption_timeout_secs;
        let max_bytes = self.shared.config.limits.outbound_queue_bytes;
        let s = self.session.as_mut().ok_or(Stop::Gone)?;
        let reply = {
            let mut slot = s.sm.lock().unwrap_or_else(|e| e.into_inner());
            match nonza {
                Nonza::Enable { resume, .. } if slot.tracker.is_none() => {
                    slot.tracker = Some(fanout::unacked::Tracker::new(max_bytes));
                    slot.resume = resume;
                    s.sm_id = resume.then(|| crate::stream::stream_id().into());
                    if let Some(id) = &s.sm_id {
                        let entry = (s.jid.to_bare(), s.control.clone());
                        self.shared.resumable.insert(id.to_string(), entry);
                    }
                    let max = u32::try_from(timeout).unwrap_or(u32::MAX);
                    Some(sm::enabled(s.sm_id.as_deref().map(|id| (id, max))))
                }
                // Enabled already, or a resume inside a session.
                Nonza::Enable { .. } | Nonza::Resume { .. } => {
                    Some(sm::failed("unexpected-request", None))
                }
                Nonza::Request => slot.tracker.as_ref().map(|t| sm::ack(t.handled())),
                Nonza::Ack { h } => match slot.tracker.as_mut().map(|t| t.ack(h)) {
                    Some(Err(e)) => {
                        debug!(jid = %s.jid, error = %e, "stream management ack too high");
                        return Err(Stop::Error(
                            StreamErrorCondition::UndefinedCondition,
                            Some("handled-count-too-high"),
                        ));
                    }
                    _ => None,
                },
            }
        };
        match reply {
            Some(r) => self.send(r).await,
            None => Ok(()),
        }
    }

    /// A client stanza was handled: counted when stream management is on.
    pub(super) fn sm_handled(&self) {
        if let Some(s) = &self.session {
            let mut slot = s.sm.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(t) = slot.tracker.as_mut() {
                t.handled_one();
            }
        }
    }

    /// `<resume/>` after authentication: takes back a detached session of
    /// this account, or answers `<failed/>`.
    pub(super) async fn resume(&mut self, previd: &str, h: u32) -> Flow {
        let account = self.binding().ok_or(Stop::Gone)?;
        let shared = self.shared.clone();
        // Still attached to a connection the server has not seen die: that
        // connection lets go, and the session is parked for this one.
        let live = shared
            .resumable
            .get(previd)
            .filter(|e| e.0 == account)
            .map(|e| e.1.clone());
        if let Some(control) = live {
            control.take_over();
            for _ in 0..200 {
                if shared.detached.contains_key(previd) {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
        // Only the same account may resume; anyone else finds nothing, and
        // the session stays parked for its owner.
        let found = shared
            .detached
            .remove_if(previd, |_, d| d.session.jid.to_bare() == account);
        let Some((_, d)) = found else {
            self.bind_refused();
            return self.send(sm::failed("item-not-found", None)).await;
        };
        let mut s = d.session;
        s.control.taken_over();
        let again = {
            let mut slot = s.sm.lock().unwrap_or_else(|e| e.into_inner());
            let usable = s.handle.state() == QueueState::Open && s.is_current(&shared);
            match slot
                .tracker
                .as_mut()
                .filter(|_| usable)
                .and_then(|t| t.resume(h))
            {
                Some(Ok(frames)) => Some(frames),
                _ => None,
            }
        };
        let Some(again) = again else {
            // Overflowed, replaced, or an impossible h: it ends now.
            end(&shared, s).await;
            self.bind_refused();
            return self.send(sm::failed("item-not-found", None)).await;
        };
        let handled = {
            let slot = s.sm.lock().unwrap_or_else(|e| e.into_inner());
            slot.tracker.as_ref().map_or(0, |t| t.handled())
        };
        // `<resumed/>`, then what the client had not acknowledged, then the
        // writer takes over the queue that filled meanwhile.
        self.t
            .write(&sm::resumed(previd, handled))
            .await
            .map_err(|_| Stop::Gone)?;
        let to = s.handle.to_escaped().to_vec();
        for f in &again {
            let bytes = f.to_bytes(&to);
            self.t.write(&bytes).await.map_err(|_| Stop::Gone)?;
        }
        {
            let mut slot = s.sm.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(t) = slot.tracker.as_mut() {
                for f in again {
                    let len = f.len_for(&to);
                    t.sent(f, len);
                }
            }
        }
        s.closing = Arc::new(AtomicBool::new(false));
        s.writer = self
            .t
            .spawn_writer(WriterParams {
                handle: s.handle.clone(),
                closing: s.closing.clone(),
                metrics: shared.metrics.clone(),
                stall: shared.config.limits.write_stall_timeout(),
                sm: s.sm.clone(),
            })
            .ok_or(Stop::Gone)?;
        self.bound();
        shared.metrics.sessions.inc();
        shared.metrics.sm_resumed.inc();
        shared
            .resumable
            .insert(previd.to_owned(), (account, s.control.clone()));
        info!(peer = %self.peer, jid = %s.jid, "resumed");
        self.session = Some(s);
        Ok(())
    }
}

/// Whether a session whose connection ended this way may wait to be
/// resumed.
pub(super) fn parkable(shared: &Shared, s: &Session, stop: &Stop) -> bool {
    // A dead connection shows as EOF, a failed write, or silence until the
    // idle timeout: all three leave the session resumable.
    let lost = matches!(
        stop,
        Stop::Gone | Stop::WriterEnded | Stop::Error(StreamErrorCondition::ConnectionTimeout, _)
    );
    let slot = s.sm.lock().unwrap_or_else(|e| e.into_inner());
    lost && !*shared.shutdown.borrow()
        && s.sm_id.is_some()
        && slot.resume
        && slot.tracker.as_ref().is_some_and(|t| t.resumable())
        && s.handle.state() == QueueState::Open
        && s.is_current(shared)
}

/// Parks a session whose connection is gone, and ends it after the
/// resumption timeout unless it was resumed by then.
pub(super) fn park(shared: &Arc<Shared>, s: Session) {
    s.writer.abort();
    let Some(id) = s.sm_id.clone() else { return };
    shared.resumable.remove(&*id);
    let control = s.control.clone();
    debug!(jid = %s.jid, "detached; waiting to be resumed");
    shared.metrics.sessions.dec();
    shared
        .detached
        .insert(id.to_string(), Detached { session: s });
    let shared = shared.clone();
    let timeout = shared.config.limits.resumption_timeout();
    tokio::spawn(async move {
        let mut stop = shared.shutdown.clone();
        tokio::select! {
            () = tokio::time::sleep(timeout) => {}
            _ = control.ended() => {}
            () = crate::stopped(&mut stop) => {}
        }
        if let Some((_, d)) = shared.detached.remove(&*id) {
            end(&shared, d.session).await;
        }
    });
}

/// Ends a detached session for good: what it never got is handled as for
/// an unavailable resource, and it goes unavailable.
async fn end(shared: &Arc<Shared>, s: Session) {
    let mut undelivered = {
        let mut slot = s.sm.lock().unwrap_or_else(|e| e.into_inner());
        slot.tracker
            .as_mut()
            .map(|t| t.take_unacked())
            .unwrap_or_default()
    };
    s.handle.drain(&mut undelivered, usize::MAX);
    let to = s.handle.to_escaped().to_vec();
    for f in undelivered {
        bounce(shared, &s, f.to_bytes(&to));
    }
    if s.is_current(shared) {
        crate::presence::broadcast(shared, &s.jid, None).await;
    }
    s.leave(shared);
    info!(jid = %s.jid, "resumption timed out");
}

/// RFC 6121 §8.5 for a stanza its resource will never get: headlines are
/// dropped (counted), other messages go to the account's other available
/// resources or back to the sender as `service-unavailable`, iq requests
/// get that error, and anything else is dropped.
fn bounce(shared: &Shared, s: &Session, bytes: Bytes) {
    let Ok(st) = Stanza::from_framed(bytes) else {
        return;
    };
    let ty = st.type_().map(|t| t.into_owned());
    let (kind, from) = (st.kind(), st.from().map(|f| f.into_owned()));
    let error = |name: &str| {
        let err = StanzaError::new(StanzaErrorCondition::ServiceUnavailable);
        ser::stanza_error(
            name,
            st.id().as_deref(),
            Some(s.jid.as_str()),
            from.as_deref(),
            &err,
        )
    };
    let reply = match (kind, ty.as_deref()) {
        (Kind::Message, Some("headline")) => {
            shared.metrics.dropped("sm_headline");
            return;
        }
        (Kind::Message, Some("error")) | (Kind::Iq, Some("result" | "error")) => return,
        (Kind::Message, _) => {
            let others: Vec<_> = crate::presence::available(shared, &s.jid.to_bare())
                .into_iter()
                .filter(|o| *o.jid() != s.jid)
                .collect();
            if !others.is_empty() {
                for o in others {
                    if let Ok(m) =
                        st.with_addresses(from.as_deref().unwrap_or(""), Some(o.jid().as_str()))
                    {
                        let _ = o.queue().push(Frame::Bytes(m.bytes().clone()));
                    }
                }
                return;
            }
            error("message")
        }
        (Kind::Iq, _) => error("iq"),
        _ => return,
    };
    // Back to the sender, if it is one of ours and still there.
    if let Some(sender) = from.as_deref().and_then(|f| stanza::FullJid::new(f).ok()) {
        if let Some(entry) = shared.fanout.registry().session(&sender) {
            let _ = entry.queue().push(Frame::Bytes(reply));
        }
    }
}
