//! Stream negotiation as a state machine without I/O: header, STARTTLS,
//! SASL, restart, bind (RFC 6120 §4–§7).
//!
//! Each input (an opened stream, an element, the answer to a lookup the
//! machine asked for) returns the actions to carry out, in order. The
//! transport does the I/O: it writes, waits out back-offs, reads the
//! store, and feeds results back. Time comes in as a parameter, so every
//! path, timeouts included, is tested here without a socket.

use std::time::Instant;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::Bytes;
use stanza::ser::{self, Features, SaslFailure};
use stanza::{ns, BareJid, Element, StreamErrorCondition};

use stanza::xep::sm;

use crate::sasl::{self, ClientFirst, Hash, ScramKeys, ScramServer};

/// What the configuration says about negotiation.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    /// The domains served: one list for every connection (#11: a copy
    /// per connection cost every idle session two allocations).
    pub domains: std::sync::Arc<[String]>,
    /// Whether this server can do TLS at all (a certificate is loaded).
    pub tls_available: bool,
    /// No SASL and no registration before encryption.
    pub require_encryption: bool,
    /// PLAIN over an unencrypted stream.
    pub allow_plaintext_auth: bool,
    /// XEP-0077 in-band registration.
    pub allow_registration: bool,
    /// Failed attempts before the stream ends.
    pub max_auth_failures: u32,
}

impl Policy {
    pub(crate) fn from_config(
        config: &crate::Config,
        domains: &std::sync::Arc<[String]>,
        tls_available: bool,
    ) -> Self {
        Self {
            domains: domains.clone(),
            tls_available,
            require_encryption: config.require_encryption,
            allow_plaintext_auth: config.allow_plaintext_auth,
            allow_registration: config.allow_registration,
            max_auth_failures: config.limits.max_auth_failures,
        }
    }

    /// Which of our domains `to` names.
    fn served(&self, to: &str) -> Option<usize> {
        super::domain_index(&self.domains, to)
    }
}

/// A stream opened by the peer, as its transport read it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Opening<'a> {
    /// The `to` attribute.
    pub to: Option<&'a str>,
    /// The `version` attribute.
    pub version: Option<&'a str>,
    /// The transport's own checks of the header's name and namespaces.
    pub framing: Result<(), StreamErrorCondition>,
}

/// What the transport must do, in order.
#[derive(Debug)]
pub(crate) enum Action {
    /// Open our side of the stream (the header, or `<open/>`), from `from`.
    Open {
        /// The domain the peer asked for (or our first one).
        from: String,
    },
    /// Write these bytes.
    Send(Bytes),
    /// Answer `<proceed/>` and start TLS (TCP only).
    StartTls,
    /// An XEP-0077 request before authentication.
    Register(Element),
    /// Wait out the back-off for `jid` and the peer's address, then read
    /// the account's keys for `hash` (decoys for an unknown account) and
    /// give them to [`Negotiation::on_keys`].
    LookUp {
        /// The account named.
        jid: BareJid,
        /// Which keys.
        hash: Hash,
    },
    /// Wait out the back-off, check a PLAIN password, and give the answer
    /// to [`Negotiation::on_plain`].
    CheckPlain {
        /// The account named.
        jid: BareJid,
        /// The password given.
        password: String,
    },
    /// A failed attempt: count it against `account` and the peer's
    /// address, and wait its back-off (before the failure that follows).
    Failed {
        /// The account the attempt named, if it got that far.
        account: Option<BareJid>,
    },
    /// Authenticated (the success was sent before this): the stream
    /// restarts, with the post-authentication limits.
    Authenticated(BareJid),
    /// Resume a detached session (XEP-0198 §5) instead of binding; the
    /// transport answers and calls [`Negotiation::bound`].
    Resume {
        /// The id `<enabled/>` gave.
        previd: String,
        /// Our stanzas the client handled.
        h: u32,
    },
    /// Bind a resource; the transport checks limits, answers, and calls
    /// [`Negotiation::bound`] when the session exists.
    Bind {
        /// The resource asked for; `None`: the server picks one.
        resource: Option<String>,
        /// The iq's id.
        id: String,
    },
    /// Send this stream error and close.
    Close(StreamErrorCondition, Option<&'static str>),
}

#[derive(Debug)]
enum Step {
    /// Waiting for the stream that will carry SASL.
    Connected,
    /// `<auth/>` sent; the keys are being read.
    Keys(BareJid, ClientFirst),
    /// PLAIN; the password is being checked.
    Plain(BareJid),
    /// SCRAM after the server-first message.
    Scram(Box<ScramServer>, BareJid),
    /// Authenticated; waiting for the restart and the bind.
    Authenticated(BareJid),
    /// The bind was asked for; the transport is binding.
    Binding(BareJid),
    /// A live session: negotiation is over.
    Bound,
}

/// One stream's negotiation.
#[derive(Debug)]
pub(crate) struct Negotiation {
    policy: Policy,
    step: Step,
    tls: bool,
    /// Which of `policy.domains`.
    domain: Option<usize>,
    /// Whether our side of the current stream is open.
    opened: bool,
    failures: u32,
    deadline: Instant,
}

fn close(cond: StreamErrorCondition) -> Vec<Action> {
    vec![Action::Close(cond, None)]
}

impl Negotiation {
    /// A new connection; `tls` when it is encrypted already, `deadline`
    /// when negotiation must be over.
    pub(crate) fn new(policy: Policy, tls: bool, deadline: Instant) -> Self {
        Self {
            policy,
            step: Step::Connected,
            tls,
            domain: None,
            opened: false,
            failures: 0,
            deadline,
        }
    }

    /// The domain the peer asked for, once known.
    pub(crate) fn domain(&self) -> Option<&str> {
        self.domain.map(|i| self.policy.domains[i].as_str())
    }

    /// Which of the policy's domains the stream is for.
    pub(crate) fn domain_index(&self) -> Option<usize> {
        self.domain
    }

    /// Whether our side of the stream is open (a stream error needs a
    /// header first otherwise).
    pub(crate) fn opened(&self) -> bool {
        self.opened
    }

    /// When negotiation must be over.
    pub(crate) fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The peer opened a stream (first, after STARTTLS, or after SASL).
    pub(crate) fn on_open(&mut self, open: Opening<'_>) -> Vec<Action> {
        // The domain first: our answering header names it, error or not.
        if let Some(d) = open.to.and_then(|t| self.policy.served(t)) {
            self.domain = Some(d);
        }
        let from = self
            .domain()
            .or_else(|| self.policy.domains.first().map(String::as_str))
            .unwrap_or_default()
            .to_owned();
        let mut out = vec![Action::Open { from }];
        self.opened = true;
        let known = open.to.and_then(|t| self.policy.served(t)).is_some();
        let error = match open.framing {
            Err(c) => Some(c),
            Ok(()) if !known => Some(StreamErrorCondition::HostUnknown),
            Ok(()) if open.version.is_none_or(|v| !v.starts_with("1.")) => {
                Some(StreamErrorCondition::UnsupportedVersion)
            }
            Ok(()) => None,
        };
        if let Some(c) = error {
            out.push(Action::Close(c, None));
            return out;
        }
        let features = match &self.step {
            Step::Connected => {
                let p = &self.policy;
                let mut mechs = Vec::new();
                if self.tls || !p.require_encryption {
                    mechs.extend([Hash::Sha256.mechanism(), Hash::Sha1.mechanism()]);
                    if self.tls || p.allow_plaintext_auth {
                        mechs.push("PLAIN");
                    }
                }
                ser::features(&Features {
                    starttls: (!self.tls && p.tls_available).then_some(p.require_encryption),
                    mechanisms: &mechs,
                    register: p.allow_registration,
                    ..Features::default()
                })
            }
            Step::Authenticated(jid) => {
                if Some(jid.domain()) != self.domain() {
                    out.push(Action::Close(StreamErrorCondition::HostUnknown, None));
                    return out;
                }
                ser::features(&Features {
                    bind: true,
                    session: true,
                    sm: true,
                    ..Features::default()
                })
            }
            // A header in the middle of SASL or of a session.
            _ => {
                out.push(Action::Close(StreamErrorCondition::BadFormat, None));
                return out;
            }
        };
        out.push(Action::Send(features));
        out
    }

    /// An element before the bind.
    pub(crate) fn on_element(&mut self, el: &Element) -> Vec<Action> {
        match self.step {
            Step::Connected | Step::Scram(..) => self.on_sasl(el),
            Step::Authenticated(_) => self.on_unbound(el),
            // Nothing may come while a lookup or a bind is under way: the
            // transport does not read then.
            Step::Keys(..) | Step::Plain(_) | Step::Binding(_) | Step::Bound => {
                close(StreamErrorCondition::BadFormat)
            }
        }
    }

    fn on_sasl(&mut self, el: &Element) -> Vec<Action> {
        if el.is("starttls", ns::TLS)
            && !self.tls
            && self.policy.tls_available
            && matches!(self.step, Step::Connected)
        {
            return vec![Action::StartTls];
        }
        if el.is("iq", ns::CLIENT) && el.child("query", ns::REGISTER).is_some() {
            if !self.tls && self.policy.require_encryption {
                return vec![Action::Close(
                    StreamErrorCondition::PolicyViolation,
                    Some("STARTTLS first"),
                )];
            }
            return vec![Action::Register(el.clone())];
        }
        if el.ns != ns::SASL {
            return close(StreamErrorCondition::NotAuthorized);
        }
        if !self.tls && self.policy.require_encryption {
            return vec![
                Action::Send(ser::sasl_failure(SaslFailure::EncryptionRequired, None)),
                Action::Close(
                    StreamErrorCondition::PolicyViolation,
                    Some("STARTTLS first"),
                ),
            ];
        }
        let payload = || -> Result<Vec<u8>, SaslFailure> {
            let t = el.text();
            let t = t.trim();
            if t == "=" || t.is_empty() {
                return Ok(Vec::new());
            }
            B64.decode(t).map_err(|_| SaslFailure::IncorrectEncoding)
        };
        let step = std::mem::replace(&mut self.step, Step::Connected);
        match (el.name.as_str(), step) {
            ("auth", Step::Connected) => {
                let mechanism = el.attr("mechanism").unwrap_or("");
                match payload().and_then(|data| self.start_auth(mechanism, &data)) {
                    Ok(actions) => actions,
                    Err(f) => self.fail(f, None),
                }
            }
            ("response", Step::Scram(server, jid)) => match payload() {
                Err(f) => self.fail(f, Some(jid)),
                Ok(data) => match server.finish(&data) {
                    Ok(server_final) => self.succeed(jid, Some(&server_final)),
                    Err(e) => self.fail(e.failure(), Some(jid)),
                },
            },
            ("abort", Step::Scram(_, jid)) => self.fail(SaslFailure::Aborted, Some(jid)),
            ("abort", _) => self.fail(SaslFailure::Aborted, None),
            (_, Step::Scram(_, jid)) => self.fail(SaslFailure::MalformedRequest, Some(jid)),
            _ => self.fail(SaslFailure::MalformedRequest, None),
        }
    }

    /// `<auth/>`: what to look up, or why not.
    fn start_auth(&mut self, mechanism: &str, data: &[u8]) -> Result<Vec<Action>, SaslFailure> {
        let domain = self.domain().unwrap_or_default().to_owned();
        match mechanism {
            "PLAIN" if self.tls || self.policy.allow_plaintext_auth => {
                let (authz, user, password) = sasl::parse_plain(data).map_err(|e| e.failure())?;
                let jid = BareJid::from_parts(Some(&user), &domain)
                    .map_err(|_| SaslFailure::NotAuthorized)?;
                if authz.is_some_and(|a| a != jid.as_str()) {
                    return Err(SaslFailure::InvalidAuthzid);
                }
                self.step = Step::Plain(jid.clone());
                Ok(vec![Action::CheckPlain { jid, password }])
            }
            "SCRAM-SHA-1" | "SCRAM-SHA-256" => {
                let hash = if mechanism == "SCRAM-SHA-1" {
                    Hash::Sha1
                } else {
                    Hash::Sha256
                };
                let first = sasl::parse_client_first(data).map_err(|e| e.failure())?;
                let jid = BareJid::from_parts(Some(&first.username), &domain)
                    .map_err(|_| SaslFailure::NotAuthorized)?;
                if first.authzid.as_deref().is_some_and(|a| a != jid.as_str()) {
                    return Err(SaslFailure::InvalidAuthzid);
                }
                self.step = Step::Keys(jid.clone(), first);
                Ok(vec![Action::LookUp { jid, hash }])
            }
            _ => Err(SaslFailure::InvalidMechanism),
        }
    }

    /// The keys [`Action::LookUp`] asked for (decoys for an unknown
    /// account; `None` when the store failed), and a fresh server nonce.
    pub(crate) fn on_keys(&mut self, keys: Option<ScramKeys>, nonce: &str) -> Vec<Action> {
        let Step::Keys(jid, first) = std::mem::replace(&mut self.step, Step::Connected) else {
            return close(StreamErrorCondition::InternalServerError);
        };
        let Some(keys) = keys else {
            return self.fail(SaslFailure::TemporaryAuthFailure, Some(jid));
        };
        let (server, server_first) = ScramServer::start(keys, first, nonce);
        self.step = Step::Scram(Box::new(server), jid);
        vec![Action::Send(ser::sasl_challenge(&server_first))]
    }

    /// The answer to [`Action::CheckPlain`]: `None` when the store failed.
    pub(crate) fn on_plain(&mut self, ok: Option<bool>) -> Vec<Action> {
        let Step::Plain(jid) = std::mem::replace(&mut self.step, Step::Connected) else {
            return close(StreamErrorCondition::InternalServerError);
        };
        match ok {
            Some(true) => self.succeed(jid, None),
            Some(false) => self.fail(SaslFailure::NotAuthorized, Some(jid)),
            None => self.fail(SaslFailure::TemporaryAuthFailure, Some(jid)),
        }
    }

    fn succeed(&mut self, jid: BareJid, data: Option<&[u8]>) -> Vec<Action> {
        self.step = Step::Authenticated(jid.clone());
        self.opened = false;
        vec![
            Action::Send(ser::sasl_success(data)),
            Action::Authenticated(jid),
        ]
    }

    /// Every failure counts, an abort too: an abort after the server's
    /// first message is a probe that cost a lookup and a challenge.
    fn fail(&mut self, f: SaslFailure, account: Option<BareJid>) -> Vec<Action> {
        self.step = Step::Connected;
        self.failures += 1;
        let mut out = vec![
            Action::Failed { account },
            Action::Send(ser::sasl_failure(f, None)),
        ];
        if self.failures >= self.policy.max_auth_failures {
            out.push(Action::Close(
                StreamErrorCondition::PolicyViolation,
                Some("too many failed logins"),
            ));
        }
        out
    }

    fn on_unbound(&mut self, el: &Element) -> Vec<Action> {
        let Step::Authenticated(jid) = &self.step else {
            return close(StreamErrorCondition::InternalServerError);
        };
        if el.ns == sm::NS {
            return match sm::Nonza::parse(el) {
                Ok(sm::Nonza::Resume { previd, h }) => {
                    self.step = Step::Binding(jid.clone());
                    vec![Action::Resume { previd, h }]
                }
                // Before a session exists there is nothing to enable or
                // acknowledge (XEP-0198 §3: `unexpected-request`).
                Ok(_) => vec![Action::Send(sm::failed("unexpected-request", None))],
                Err(cond) => close(cond),
            };
        }
        if !el.is("iq", ns::CLIENT) {
            return close(StreamErrorCondition::NotAuthorized);
        }
        let id = el.attr("id").unwrap_or("").to_owned();
        if let Some(bind) = el
            .child("bind", ns::BIND)
            .filter(|_| el.attr("type") == Some("set"))
        {
            let resource = bind
                .child("resource", ns::BIND)
                .map(|r| r.text().trim().to_owned())
                .filter(|r| !r.is_empty());
            self.step = Step::Binding(jid.clone());
            return vec![Action::Bind { resource, id }];
        }
        if el.child("session", ns::SESSION).is_some() {
            return vec![Action::Send(ser::iq_result(&id, None, None, None))];
        }
        close(StreamErrorCondition::NotAuthorized)
    }

    /// The account being bound, while [`Action::Bind`] is carried out.
    pub(crate) fn binding(&self) -> Option<&BareJid> {
        match &self.step {
            Step::Binding(j) => Some(j),
            _ => None,
        }
    }

    /// The bind succeeded (`true`) or was refused with an answer the
    /// transport sent (`false`: another bind may follow).
    pub(crate) fn bound(&mut self, ok: bool) {
        if let Step::Binding(jid) = &self.step {
            self.step = if ok {
                Step::Bound
            } else {
                Step::Authenticated(jid.clone())
            };
        }
    }
}

#[cfg(test)]
#[path = "negotiate_tests.rs"]
mod tests;
