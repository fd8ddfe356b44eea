//! An incoming server-to-server stream, as a state machine without I/O:
//! the header, STARTTLS, dialback (XEP-0220), and which senders its
//! stanzas may come from (RFC 6120 §13.1: a spoofed `from` is the classic
//! s2s attack).
//!
//! Each input returns the actions to carry out, in order; the transport
//! writes, starts TLS, and asks the originating domain's authoritative
//! server about keys over an outgoing stream, then feeds the verdict back
//! with [`Incoming::on_verified`].

use std::sync::Arc;

use bytes::Bytes;
use stanza::ser::{self, Features};
use stanza::xep::dialback::{self, Dialback, Verdict};
use stanza::{ns, Element, StreamErrorCondition};

/// What the configuration says about incoming s2s streams.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The domains served here.
    pub domains: Arc<[String]>,
    /// Whether a certificate is loaded, so STARTTLS can be offered.
    pub tls_available: bool,
    /// No dialback, hence no stanzas, before TLS (Prosody 0.12's default
    /// too).
    pub require_tls: bool,
    /// The secret dialback keys are made with (XEP-0185).
    pub secret: [u8; 32],
    /// Keys awaiting their authoritative server's verdict, at most.
    pub max_pending: usize,
    /// (originating, receiving) pairs one stream may verify, at most.
    pub max_verified: usize,
}

/// What the transport must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open our side: the header from `from` (the domain asked for), with
    /// this stream's id.
    Open {
        /// One of our domains.
        from: String,
    },
    /// Write these bytes.
    Send(Bytes),
    /// Answer `<proceed/>` and start TLS; the peer then opens anew.
    StartTls,
    /// Ask `originating`'s authoritative server (over an outgoing stream
    /// to it) whether `key` is its key for this stream, with
    /// `<db:verify/>`; give the verdict to [`Incoming::on_verified`].
    Verify {
        /// The domain that claims to send.
        originating: String,
        /// Our domain it wants to send to.
        receiving: String,
        /// The key it gave.
        key: String,
    },
    /// End the stream with this error.
    Close(StreamErrorCondition, Option<&'static str>),
}

/// One incoming s2s stream's negotiation and what it has verified.
#[derive(Debug)]
pub struct Incoming {
    policy: Policy,
    /// Our id for the stream (a new one after STARTTLS): the keys are
    /// bound to it.
    stream_id: String,
    tls: bool,
    /// Which of our domains the header named.
    local: Option<usize>,
    /// Results sent to the authoritative server, not yet answered.
    pending: Vec<(String, usize)>,
    /// (originating domain, our domain) pairs whose stanzas are accepted.
    verified: Vec<(String, usize)>,
}

fn close(cond: StreamErrorCondition, text: Option<&'static str>) -> Vec<Action> {
    vec![Action::Close(cond, text)]
}

impl Incoming {
    /// A stream just accepted (`tls`: on a direct TLS port), with our id
    /// for it.
    pub fn new(policy: Policy, stream_id: String, tls: bool) -> Self {
        Self {
            policy,
            stream_id,
            tls,
            local: None,
            pending: Vec::new(),
            verified: Vec::new(),
        }
    }

    /// This stream's id, which the keys given on it are bound to.
    pub fn stream_id(&self) -> &str {
        &self.stream_id
    }

    fn served(&self, domain: &str) -> Option<usize> {
        crate::stream::domain_index(&self.policy.domains, domain)
    }

    /// The peer's stream header: `to` names one of our domains, the
    /// content namespace is `jabber:server`.
    pub fn on_open(&mut self, to: Option<&str>, content_ns: Option<&str>) -> Vec<Action> {
        if content_ns != Some(ns::SERVER) {
            return close(StreamErrorCondition::InvalidNamespace, None);
        }
        let Some(local) = to.and_then(|t| self.served(t)) else {
            return close(StreamErrorCondition::HostUnknown, None);
        };
        self.local = Some(local);
        let tls_offered = self.policy.tls_available && !self.tls;
        let features = Features {
            starttls: tls_offered.then_some(self.policy.require_tls),
            // Dialback only where it may be used now.
            dialback: self.tls || !self.policy.require_tls,
            ..Features::default()
        };
        vec![
            Action::Open {
                from: self.policy.domains[local].clone(),
            },
            Action::Send(ser::features(&features)),
        ]
    }

    /// A first-level element that is not a stanza: `<starttls/>` or a
    /// dialback element.
    pub fn on_element(&mut self, el: &Element) -> Vec<Action> {
        if el.is("starttls", ns::TLS) {
            if self.tls || !self.policy.tls_available {
                return close(
                    StreamErrorCondition::PolicyViolation,
                    Some("no STARTTLS here"),
                );
            }
            // The peer opens a new stream over TLS, which gets a new id.
            self.tls = true;
            self.stream_id = crate::stream::stream_id();
            self.local = None;
            return vec![Action::StartTls];
        }
        if el.ns != dialback::NS {
            return close(StreamErrorCondition::UnsupportedStanzaType, None);
        }
        if self.policy.require_tls && !self.tls {
            return close(
                StreamErrorCondition::PolicyViolation,
                Some("STARTTLS first"),
            );
        }
        match Dialback::parse(el) {
            Err(cond) => close(cond, None),
            Ok(Dialback::Result { from, to, key }) => self.on_result(from, &to, key),
            Ok(Dialback::Verify { from, to, id, key }) => self.answer_verify(from, &to, id, &key),
            // Verdicts come on our outgoing streams, not here.
            Ok(Dialback::ResultVerdict { .. } | Dialback::VerifyVerdict { .. }) => {
                close(StreamErrorCondition::UnsupportedStanzaType, None)
            }
        }
    }

    /// `<db:result>`: `from` asks to send to our `to`.
    fn on_result(&mut self, from: String, to: &str, key: String) -> Vec<Action> {
        let Some(local) = self.served(to) else {
            return close(StreamErrorCondition::HostUnknown, None);
        };
        if self.is_verified(&from, local) {
            // Already verified: nothing more to ask.
            return vec![Action::Send(verdict(
                &self.policy.domains[local],
                &from,
                Verdict::Valid,
            ))];
        }
        if self.pending.len() >= self.policy.max_pending
            || self.verified.len() >= self.policy.max_verified
        {
            return close(
                StreamErrorCondition::PolicyViolation,
                Some("too many domains"),
            );
        }
        self.pending.push((from.clone(), local));
        vec![Action::Verify {
            originating: from,
            receiving: self.policy.domains[local].clone(),
            key,
        }]
    }

    /// `<db:verify>`: a receiving server asks us, as the authoritative
    /// server of `to`, whether `key` is ours for its stream `id`. No state:
    /// the answer is the key recomputed.
    fn answer_verify(&self, from: String, to: &str, id: String, key: &str) -> Vec<Action> {
        let Some(local) = self.served(to) else {
            return close(StreamErrorCondition::HostUnknown, None);
        };
        let ours = &self.policy.domains[local];
        let expected = dialback::key(&self.policy.secret, &from, ours, &id);
        let v = if crate::sasl::constant_time_eq(expected.as_bytes(), key.as_bytes()) {
            Verdict::Valid
        } else {
            Verdict::Invalid
        };
        let answer = Dialback::VerifyVerdict {
            from: ours.clone(),
            to: from,
            id,
            verdict: v,
        };
        vec![Action::Send(answer.to_element().to_bytes())]
    }

    /// The authoritative server's verdict on a key from [`Action::Verify`].
    /// Valid: the pair's stanzas are accepted from now on. Invalid: the
    /// peer is told, and the stream ends (XEP-0220 §2.4).
    pub fn on_verified(&mut self, originating: &str, receiving: &str, valid: bool) -> Vec<Action> {
        let Some(local) = self.served(receiving) else {
            return Vec::new();
        };
        let Some(at) = self
            .pending
            .iter()
            .position(|(o, l)| o == originating && *l == local)
        else {
            // Not asked on this stream (or asked before STARTTLS).
            return Vec::new();
        };
        self.pending.swap_remove(at);
        let ours = &self.policy.domains[local];
        if valid {
            self.verified.push((originating.to_owned(), local));
            return vec![Action::Send(verdict(ours, originating, Verdict::Valid))];
        }
        vec![
            Action::Send(verdict(ours, originating, Verdict::Invalid)),
            Action::Close(
                StreamErrorCondition::NotAuthorized,
                Some("dialback key invalid"),
            ),
        ]
    }

    fn is_verified(&self, from: &str, local: usize) -> bool {
        self.verified.iter().any(|(o, l)| o == from && *l == local)
    }

    /// Whether a stanza from `from` to `to` may come over this stream: its
    /// from-domain was verified for its to-domain. Anything else ends the
    /// stream: `invalid-from` for an unverified sender (spoofing, or a
    /// stanza before dialback), `host-unknown` for an address not ours.
    pub fn accepts(
        &self,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<(), StreamErrorCondition> {
        let domain = |j: Option<&str>| {
            j.and_then(|j| stanza::Jid::new(j).ok())
                .map(|j| j.domain().to_owned())
        };
        let from = domain(from).ok_or(StreamErrorCondition::InvalidFrom)?;
        let to = domain(to).ok_or(StreamErrorCondition::HostUnknown)?;
        let local = self.served(&to).ok_or(StreamErrorCondition::HostUnknown)?;
        if self.is_verified(&from, local) {
            Ok(())
        } else {
            Err(StreamErrorCondition::InvalidFrom)
        }
    }
}

fn verdict(ours: &str, peer: &str, v: Verdict) -> Bytes {
    Dialback::ResultVerdict {
        from: ours.to_owned(),
        to: peer.to_owned(),
        verdict: v,
    }
    .to_element()
    .to_bytes()
}

#[cfg(test)]
#[path = "incoming_tests.rs"]
mod tests;
