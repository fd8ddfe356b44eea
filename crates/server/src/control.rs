//! Ending sessions from outside their connection: a password change ends
//! the account's other sessions, and a deleted account loses all of them.
//!
//! Each bound session registers a [`Control`]; whoever wants it gone sets
//! the stream error to close with and wakes it. The connection task then
//! ends the stream the ordinary way (unavailable presence, detach, close),
//! so nothing is torn down from another task.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use stanza::{BareJid, FullJid, StreamErrorCondition};
use tokio::sync::Notify;

use crate::Shared;

/// One bound session's kill switch.
#[derive(Debug)]
pub(crate) struct Control {
    /// The fan-out session id: a newer session on the same full JID has
    /// its own control, and must not be ended by a stale one's removal.
    pub(crate) id: u64,
    reason: Mutex<Option<StreamErrorCondition>>,
    /// A resumption (XEP-0198) on another connection wants the session:
    /// this connection lets go of it without ending it. One wake-up for
    /// both, so an idle session's task waits on one future (#11).
    taken: AtomicBool,
    wake: Notify,
}

/// Why a bound session's connection must stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stopped {
    /// End the session with this stream error.
    Ended(StreamErrorCondition),
    /// Let go of the connection: another one resumes the session.
    TakenOver,
}

impl Control {
    pub(crate) fn new(id: u64) -> Arc<Self> {
        Arc::new(Self {
            id,
            reason: Mutex::new(None),
            taken: AtomicBool::new(false),
            wake: Notify::new(),
        })
    }

    /// Asks the session to end with `cond`.
    pub(crate) fn end(&self, cond: StreamErrorCondition) {
        *self.reason.lock().unwrap_or_else(|e| e.into_inner()) = Some(cond);
        // notify_one keeps a permit if the session is not waiting right
        // now, so the request is never lost.
        self.wake.notify_one();
    }

    /// Asks the connection to let go of the session (see `Stopped`).
    pub(crate) fn take_over(&self) {
        self.taken.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// The session is on its new connection: a take-over is done.
    pub(crate) fn taken_over(&self) {
        self.taken.store(false, Ordering::Release);
    }

    /// Resolves with the condition once [`Self::end`] was called.
    pub(crate) async fn ended(&self) -> StreamErrorCondition {
        loop {
            if let Some(c) = *self.reason.lock().unwrap_or_else(|e| e.into_inner()) {
                return c;
            }
            self.wake.notified().await;
        }
    }

    /// Resolves once the session must end, or its connection let go.
    pub(crate) async fn stopped(&self) -> Stopped {
        loop {
            if let Some(c) = *self.reason.lock().unwrap_or_else(|e| e.into_inner()) {
                return Stopped::Ended(c);
            }
            if self.taken.load(Ordering::Acquire) {
                return Stopped::TakenOver;
            }
            self.wake.notified().await;
        }
    }
}

/// Ends every session of `account` except `keep`, with `cond`. Returns
/// how many were asked to end.
pub(crate) fn end_sessions(
    shared: &Shared,
    account: &BareJid,
    keep: Option<&FullJid>,
    cond: StreamErrorCondition,
) -> usize {
    let Some(acc) = shared.fanout.registry().find_account(account) else {
        return 0;
    };
    let jids: Vec<FullJid> = acc.sessions().iter().map(|s| s.jid().clone()).collect();
    let mut n = 0;
    for jid in jids.iter().filter(|j| Some(*j) != keep) {
        if let Some(c) = shared.controls.get(jid) {
            c.end(cond);
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_end_asked_before_waiting_is_not_lost() {
        let c = Control::new(1);
        c.end(StreamErrorCondition::Reset);
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), c.ended())
            .await
            .unwrap();
        assert_eq!(got, StreamErrorCondition::Reset);
    }

    /// A take-over stops the connection but does not end the session: the
    /// parked session's `ended` keeps waiting, and once the session is on
    /// its new connection, that one is not stopped by the old request.
    #[tokio::test]
    async fn a_take_over_stops_the_connection_not_the_session() {
        let wait = std::time::Duration::from_millis(200);
        let c = Control::new(1);
        c.take_over();
        let got = tokio::time::timeout(wait, c.stopped()).await.unwrap();
        assert_eq!(got, Stopped::TakenOver);
        assert!(tokio::time::timeout(wait, c.ended()).await.is_err());
        c.taken_over();
        assert!(tokio::time::timeout(wait, c.stopped()).await.is_err());
        c.end(StreamErrorCondition::Reset);
        let got = tokio::time::timeout(wait, c.stopped()).await.unwrap();
        assert_eq!(got, Stopped::Ended(StreamErrorCondition::Reset));
    }
}
