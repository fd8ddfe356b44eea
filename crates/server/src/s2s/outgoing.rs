//! An outgoing server-to-server stream, as a state machine without I/O:
//! our header, STARTTLS when the peer offers it, then dialback for our
//! domain (XEP-0220), after which stanzas from our domain to the peer's
//! may be sent. The same stream carries our `<db:verify/>` questions when
//! the peer's domain is the authoritative server for a key we were given.

use bytes::Bytes;
use stanza::xep::dialback::{self, Dialback, Verdict};
use stanza::{ns, Element, StreamErrorCondition};

/// Where the negotiation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Our header is sent; the peer's header and features are awaited.
    Opening,
    /// `<starttls/>` sent, `<proceed/>` awaited.
    StartingTls,
    /// `<db:result/>` sent, the verdict awaited.
    Dialback,
    /// Verified: stanzas from our domain may go.
    Ready,
    /// Ended.
    Failed,
}

/// What the transport must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open our side: a `jabber:server` header with `xmlns:db`, from our
    /// domain to the peer's.
    Open {
        /// Our domain.
        from: String,
        /// The peer's.
        to: String,
    },
    /// Write these bytes.
    Send(Bytes),
    /// Start TLS as the client, then call [`Outgoing::start`] again.
    StartTls,
    /// The stream is verified: send what was queued for the peer's domain.
    Ready,
    /// The peer's authoritative answer to a question asked with
    /// [`Outgoing::verify`].
    Verified {
        /// The domain that claimed to send to us.
        originating: String,
        /// Our domain it wanted to send to.
        receiving: String,
        /// Whether the key was its.
        valid: bool,
    },
    /// The stream failed: bounce what was queued
    /// (`remote-server-not-found`) and close.
    Fail(StreamErrorCondition, &'static str),
}

/// One outgoing stream from `local` to `remote`.
#[derive(Debug)]
pub struct Outgoing {
    local: String,
    remote: String,
    secret: [u8; 32],
    /// We can start TLS as a client.
    tls_available: bool,
    /// Refuse a peer that does not offer TLS.
    require_tls: bool,
    tls: bool,
    state: State,
    /// Questions asked and not answered: (originating, receiving, id).
    asked: Vec<(String, String, String)>,
}

impl Outgoing {
    /// A stream about to connect from `local` to `remote`.
    pub fn new(
        local: String,
        remote: String,
        secret: [u8; 32],
        tls_available: bool,
        require_tls: bool,
    ) -> Self {
        Self {
            local,
            remote,
            secret,
            tls_available,
            require_tls,
            tls: false,
            state: State::Opening,
            asked: Vec::new(),
        }
    }

    /// Where the negotiation is.
    pub fn state(&self) -> State {
        self.state
    }

    /// Connected (or TLS started): open our side.
    pub fn start(&mut self) -> Vec<Action> {
        self.state = State::Opening;
        vec![Action::Open {
            from: self.local.clone(),
            to: self.remote.clone(),
        }]
    }

    fn fail(&mut self, cond: StreamErrorCondition, why: &'static str) -> Vec<Action> {
        self.state = State::Failed;
        vec![Action::Fail(cond, why)]
    }

    /// The peer's `<stream:features/>`, after its header gave `stream_id`.
    /// The key is bound to the peer's id for this stream.
    pub fn on_features(&mut self, stream_id: Option<&str>, features: &Element) -> Vec<Action> {
        if self.state != State::Opening {
            return self.fail(StreamErrorCondition::BadFormat, "features out of place");
        }
        let offers_tls = features.child("starttls", ns::TLS).is_some();
        if !self.tls && offers_tls && self.tls_available {
            self.state = State::StartingTls;
            return vec![Action::Send(Bytes::from_static(
                b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
            ))];
        }
        if !self.tls && self.require_tls {
            return self.fail(
                StreamErrorCondition::PolicyViolation,
                "the peer offers no TLS",
            );
        }
        let Some(id) = stream_id.filter(|i| !i.is_empty()) else {
            return self.fail(
                StreamErrorCondition::BadFormat,
                "no stream id to bind a key to",
            );
        };
        // Dialback needs no advertisement (older servers send none).
        self.state = State::Dialback;
        let key = dialback::key(&self.secret, &self.remote, &self.local, id);
        let result = Dialback::Result {
            from: self.local.clone(),
            to: self.remote.clone(),
            key,
        };
        vec![Action::Send(result.to_element().to_bytes())]
    }

    /// A first-level element from the peer: `<proceed/>`, `<failure/>`, or
    /// a dialback verdict.
    pub fn on_element(&mut self, el: &Element) -> Vec<Action> {
        if el.ns == ns::TLS {
            if self.state != State::StartingTls {
                return self.fail(StreamErrorCondition::BadFormat, "TLS answer out of place");
            }
            if el.name != "proceed" {
                return self.fail(StreamErrorCondition::UndefinedCondition, "STARTTLS refused");
            }
            self.tls = true;
            return vec![Action::StartTls];
        }
        match Dialback::parse(el) {
            Ok(Dialback::ResultVerdict { from, to, verdict })
                if self.state == State::Dialback && from == self.remote && to == self.local =>
            {
                if verdict == Verdict::Valid {
                    self.state = State::Ready;
                    vec![Action::Ready]
                } else {
                    self.fail(
                        StreamErrorCondition::NotAuthorized,
                        "our dialback key was refused",
                    )
                }
            }
            Ok(Dialback::VerifyVerdict {
                from,
                to,
                id,
                verdict,
            }) => {
                let Some(at) = self
                    .asked
                    .iter()
                    .position(|(o, r, i)| *o == from && *r == to && *i == id)
                else {
                    return self.fail(StreamErrorCondition::InvalidFrom, "an answer not asked for");
                };
                let (originating, receiving, _) = self.asked.swap_remove(at);
                vec![Action::Verified {
                    originating,
                    receiving,
                    valid: verdict == Verdict::Valid,
                }]
            }
            Ok(_) => self.fail(
                StreamErrorCondition::UnsupportedStanzaType,
                "unexpected dialback",
            ),
            Err(cond) => self.fail(cond, "malformed dialback"),
        }
    }

    /// Asks the peer, the authoritative server of `originating`, whether
    /// `key` is its key for our incoming stream `id` to `receiving`.
    pub fn verify(
        &mut self,
        originating: &str,
        receiving: &str,
        id: &str,
        key: &str,
    ) -> Vec<Action> {
        self.asked
            .push((originating.to_owned(), receiving.to_owned(), id.to_owned()));
        let q = Dialback::Verify {
            from: receiving.to_owned(),
            to: originating.to_owned(),
            id: id.to_owned(),
            key: key.to_owned(),
        };
        vec![Action::Send(q.to_element().to_bytes())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s2s::incoming::{self, Incoming};
    use std::sync::Arc;

    fn el(xml: &str) -> Element {
        Element::parse(xml).unwrap()
    }

    fn sent(actions: &[Action]) -> Element {
        match actions {
            [Action::Send(b)] => Element::from_stanza(b).unwrap(),
            a => panic!("expected one send, got {a:?}"),
        }
    }

    fn receiving(secret: [u8; 32]) -> Incoming {
        Incoming::new(
            incoming::Policy {
                domains: Arc::from(vec!["b.example".to_owned()]),
                tls_available: false,
                require_tls: false,
                secret,
                max_pending: 4,
                max_verified: 4,
            },
            "in-1".into(),
            false,
        )
    }

    /// a.example's outgoing stream to b.example, against b.example's
    /// incoming side; b.example asks a.example's authoritative side (an
    /// incoming stream at a.example) over its own outgoing stream.
    #[test]
    fn two_servers_verify_each_other_end_to_end() {
        let a_secret = [1; 32];
        let mut out = Outgoing::new(
            "a.example".into(),
            "b.example".into(),
            a_secret,
            false,
            false,
        );
        assert_eq!(
            out.start(),
            vec![Action::Open {
                from: "a.example".into(),
                to: "b.example".into()
            }]
        );
        let mut b_in = receiving([2; 32]);
        b_in.on_open(Some("b.example"), Some(ns::SERVER));
        let features = el(
            "<stream:features xmlns:stream='http://etherx.jabber.org/streams'>\
             <dialback xmlns='urn:xmpp:features:dialback'/></stream:features>",
        );
        let result = sent(&out.on_features(Some(b_in.stream_id()), &features));
        assert_eq!(out.state(), State::Dialback);

        // b.example is asked to verify; it asks a.example's authoritative side.
        let ask = b_in.on_element(&result);
        let [incoming::Action::Verify {
            originating,
            receiving: recv,
            key,
        }] = &ask[..]
        else {
            panic!("{ask:?}")
        };
        let mut b_out = Outgoing::new(
            "b.example".into(),
            "a.example".into(),
            [2; 32],
            false,
            false,
        );
        let question = sent(&b_out.verify(originating, recv, b_in.stream_id(), key));
        let mut a_in = Incoming::new(
            incoming::Policy {
                domains: Arc::from(vec!["a.example".to_owned()]),
                tls_available: false,
                require_tls: false,
                secret: a_secret,
                max_pending: 4,
                max_verified: 4,
            },
            "in-2".into(),
            false,
        );
        a_in.on_open(Some("a.example"), Some(ns::SERVER));
        let answer = match &a_in.on_element(&question)[..] {
            [incoming::Action::Send(b)] => Element::from_stanza(b).unwrap(),
            a => panic!("{a:?}"),
        };
        let verdict = b_out.on_element(&answer);
        assert_eq!(
            verdict,
            vec![Action::Verified {
                originating: "a.example".into(),
                receiving: "b.example".into(),
                valid: true
            }]
        );
        // b.example accepts a.example now, and tells the originator.
        let told = b_in.on_verified("a.example", "b.example", true);
        let valid = match &told[..] {
            [incoming::Action::Send(b)] => Element::from_stanza(b).unwrap(),
            a => panic!("{a:?}"),
        };
        assert_eq!(out.on_element(&valid), vec![Action::Ready]);
        assert_eq!(
            b_in.accepts(Some("jane@a.example"), Some("joe@b.example")),
            Ok(())
        );
    }

    /// A key made with another secret (someone who is not a.example's
    /// server) is refused by the authoritative side.
    #[test]
    fn a_forged_key_is_invalid() {
        let mut forger = Outgoing::new(
            "a.example".into(),
            "b.example".into(),
            [9; 32],
            false,
            false,
        );
        forger.start();
        let features = el("<stream:features xmlns:stream='http://etherx.jabber.org/streams'/>");
        let result = sent(&forger.on_features(Some("in-1"), &features));
        let Ok(Dialback::Result { key, .. }) = Dialback::parse(&result) else {
            panic!()
        };
        let mut a_in = Incoming::new(
            incoming::Policy {
                domains: Arc::from(vec!["a.example".to_owned()]),
                tls_available: false,
                require_tls: false,
                secret: [1; 32],
                max_pending: 4,
                max_verified: 4,
            },
            "x".into(),
            false,
        );
        a_in.on_open(Some("a.example"), Some(ns::SERVER));
        let q = el(&format!(
            "<db:verify xmlns:db='jabber:server:dialback' from='b.example' to='a.example' id='in-1'>{key}</db:verify>"
        ));
        let a = a_in.on_element(&q);
        let [incoming::Action::Send(b)] = &a[..] else {
            panic!("{a:?}")
        };
        assert!(String::from_utf8_lossy(b).contains("type='invalid'"));
        // And the forger, told so, fails.
        let invalid = el("<db:result xmlns:db='jabber:server:dialback' from='b.example' to='a.example' type='invalid'/>");
        assert!(matches!(
            forger.on_element(&invalid)[..],
            [Action::Fail(StreamErrorCondition::NotAuthorized, _)]
        ));
    }

    #[test]
    fn tls_when_offered_and_required_when_configured() {
        let offer = el(
            "<stream:features xmlns:stream='http://etherx.jabber.org/streams'>\
             <starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:features>",
        );
        let mut o = Outgoing::new("a.example".into(), "b.example".into(), [1; 32], true, true);
        o.start();
        let s = sent(&o.on_features(Some("i"), &offer));
        assert!(s.is("starttls", ns::TLS));
        assert_eq!(
            o.on_element(&el("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")),
            vec![Action::StartTls]
        );
        o.start();
        // Over TLS the peer offers dialback; no second STARTTLS.
        let s = sent(&o.on_features(
            Some("i2"),
            &el("<stream:features xmlns:stream='http://etherx.jabber.org/streams'/>"),
        ));
        assert!(s.is("result", dialback::NS));

        let mut strict = Outgoing::new("a.example".into(), "b.example".into(), [1; 32], true, true);
        strict.start();
        let none = el("<stream:features xmlns:stream='http://etherx.jabber.org/streams'/>");
        assert!(matches!(
            strict.on_features(Some("i"), &none)[..],
            [Action::Fail(StreamErrorCondition::PolicyViolation, _)]
        ));
        // An answer to a question never asked is refused.
        let mut o = Outgoing::new(
            "a.example".into(),
            "b.example".into(),
            [1; 32],
            false,
            false,
        );
        let stray = el("<db:verify xmlns:db='jabber:server:dialback' from='b.example' to='a.example' id='z' type='valid'/>");
        assert!(matches!(
            o.on_element(&stray)[..],
            [Action::Fail(StreamErrorCondition::InvalidFrom, _)]
        ));
    }
}
