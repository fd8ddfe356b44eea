//! Server dialback (XEP-0220) with the keys of XEP-0185: how a server
//! proves, over a server-to-server stream, that it speaks for the domain
//! it names (PROTOCOL §9).
//!
//! The originating server sends a key in `<db:result/>`; the receiving
//! server asks the originating domain's authoritative server with
//! `<db:verify/>` whether that key is the one it would make, and answers
//! the originator `valid` or `invalid`. The key binds the secret to the
//! two domains and the receiving stream's id, so it is useless on another
//! stream or for another pair of domains.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::element::Element;
use crate::error::StreamErrorCondition;
use crate::escape::hex;
use crate::jid::BareJid;

/// The dialback namespace, bound to the `db` prefix on s2s stream headers.
pub const NS: &str = "jabber:server:dialback";
/// The stream feature a receiving server offers (XEP-0220 §2.1).
pub const FEATURE_NS: &str = "urn:xmpp:features:dialback";

/// The dialback key (XEP-0185 §2): the hex HMAC-SHA256, keyed with the hex
/// SHA-256 of `secret`, of `receiving`, `originating` and `stream_id`
/// joined by single spaces.
pub fn key(secret: &[u8], receiving: &str, originating: &str, stream_id: &str) -> String {
    let hashed = hex(&Sha256::digest(secret));
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(hashed.as_bytes()).expect("HMAC takes any key");
    for part in [receiving, " ", originating, " ", stream_id] {
        mac.update(part.as_bytes());
    }
    hex(&mac.finalize().into_bytes())
}

/// The answer to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The key is the authoritative server's.
    Valid,
    /// It is not: the originating server does not speak for the domain.
    Invalid,
    /// The receiving side could not check it (XEP-0220 §2.4).
    Error,
}

impl Verdict {
    fn as_str(self) -> &'static str {
        match self {
            Self::Valid => "valid",
            Self::Invalid => "invalid",
            Self::Error => "error",
        }
    }
}

/// What a dialback element says, and between which domains. `from` and
/// `to` are always the sender's and the addressee's domain, normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dialback {
    /// `<db:result>KEY</db:result>`: `from` asks to send to `to`.
    Result {
        /// The originating domain.
        from: String,
        /// The receiving domain.
        to: String,
        /// The key.
        key: String,
    },
    /// `<db:result type/>`: the receiving server's verdict on that.
    ResultVerdict {
        /// The receiving domain.
        from: String,
        /// The originating domain.
        to: String,
        /// Valid, invalid or error.
        verdict: Verdict,
    },
    /// `<db:verify id>KEY</db:verify>`: the receiving server asks the
    /// authoritative one about a key it was given on stream `id`.
    Verify {
        /// The receiving domain.
        from: String,
        /// The originating domain, which the authoritative server serves.
        to: String,
        /// The id of the stream the key was given on.
        id: String,
        /// The key.
        key: String,
    },
    /// `<db:verify id type/>`: the authoritative server's verdict.
    VerifyVerdict {
        /// The authoritative (originating) domain.
        from: String,
        /// The receiving domain.
        to: String,
        /// The stream id the question named.
        id: String,
        /// Valid, invalid or error.
        verdict: Verdict,
    },
}

/// The longest key accepted: XEP-0185 keys are 64 hex digits, and older
/// schemes shorter still.
const MAX_KEY: usize = 256;

fn domain(el: &Element, attr: &str) -> Result<String, StreamErrorCondition> {
    let bad = match attr {
        "from" => StreamErrorCondition::InvalidFrom,
        _ => StreamErrorCondition::HostUnknown,
    };
    let raw = el.attr(attr).ok_or(bad)?;
    let jid = BareJid::new(raw).map_err(|_| bad)?;
    // A domain, not an account.
    if jid.node().is_some() {
        return Err(bad);
    }
    Ok(jid.domain().to_owned())
}

impl Dialback {
    /// Reads an element in [`NS`]. A malformed one is a stream error
    /// (XEP-0220 §2.4): `invalid-from` or `host-unknown` for a bad domain,
    /// `bad-format` for the rest.
    pub fn parse(el: &Element) -> Result<Self, StreamErrorCondition> {
        if el.ns != NS {
            return Err(StreamErrorCondition::InvalidNamespace);
        }
        let verify = match el.name.as_str() {
            "result" => false,
            "verify" => true,
            _ => return Err(StreamErrorCondition::UnsupportedStanzaType),
        };
        let (from, to) = (domain(el, "from")?, domain(el, "to")?);
        let id = if verify {
            let id = el.attr("id").filter(|i| !i.is_empty());
            Some(id.ok_or(StreamErrorCondition::BadFormat)?.to_owned())
        } else {
            None
        };
        let verdict = match el.attr("type") {
            None => None,
            Some("valid") => Some(Verdict::Valid),
            Some("invalid") => Some(Verdict::Invalid),
            Some("error") => Some(Verdict::Error),
            Some(_) => return Err(StreamErrorCondition::BadFormat),
        };
        let key = || {
            let text = el.text();
            let key = text.trim();
            if key.is_empty() || key.len() > MAX_KEY {
                Err(StreamErrorCondition::BadFormat)
            } else {
                Ok(key.to_owned())
            }
        };
        Ok(match (id, verdict) {
            (None, None) => Self::Result {
                from,
                to,
                key: key()?,
            },
            (None, Some(verdict)) => Self::ResultVerdict { from, to, verdict },
            (Some(id), None) => Self::Verify {
                from,
                to,
                id,
                key: key()?,
            },
            (Some(id), Some(verdict)) => Self::VerifyVerdict {
                from,
                to,
                id,
                verdict,
            },
        })
    }

    /// The element, as a server sends it.
    pub fn to_element(&self) -> Element {
        let el = |name: &str, from: &str, to: &str| {
            Element::new(name, NS)
                .with_attr("from", from)
                .with_attr("to", to)
        };
        match self {
            Self::Result { from, to, key } => el("result", from, to).with_text(key.clone()),
            Self::ResultVerdict { from, to, verdict } => {
                el("result", from, to).with_attr("type", verdict.as_str())
            }
            Self::Verify { from, to, id, key } => el("verify", from, to)
                .with_attr("id", id.clone())
                .with_text(key.clone()),
            Self::VerifyVerdict {
                from,
                to,
                id,
                verdict,
            } => el("verify", from, to)
                .with_attr("id", id.clone())
                .with_attr("type", verdict.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// XEP-0185 §3's worked example.
    #[test]
    fn the_key_is_xep_0185s() {
        assert_eq!(
            key(
                b"s3cr3tf0rd14lb4ck",
                "xmpp.example.com",
                "example.org",
                "D60000229F"
            ),
            "37c69b1cf07a3f67c04a5ef5902fa5114f2c76fe4a2686482ba5b89323075643"
        );
        // Another stream, or the domains the other way round, is another key.
        let k = key(b"s", "b.example", "a.example", "1");
        assert_ne!(k, key(b"s", "b.example", "a.example", "2"));
        assert_ne!(k, key(b"s", "a.example", "b.example", "1"));
    }

    fn parse(xml: &str) -> Result<Dialback, StreamErrorCondition> {
        Dialback::parse(&Element::parse(xml).unwrap())
    }

    #[test]
    fn each_form_parses_and_round_trips() {
        let forms = [
            "<db:result xmlns:db='jabber:server:dialback' from='A.example' to='b.example'> k3y </db:result>",
            "<result xmlns='jabber:server:dialback' from='b.example' to='a.example' type='valid'/>",
            "<db:verify xmlns:db='jabber:server:dialback' from='b.example' to='a.example' id='s1'>k3y</db:verify>",
            "<db:verify xmlns:db='jabber:server:dialback' from='a.example' to='b.example' id='s1' type='invalid'/>",
        ];
        let parsed: Vec<_> = forms.iter().map(|f| parse(f).unwrap()).collect();
        assert_eq!(
            parsed[0],
            Dialback::Result {
                from: "a.example".into(),
                to: "b.example".into(),
                key: "k3y".into()
            }
        );
        assert!(matches!(
            parsed[1],
            Dialback::ResultVerdict {
                verdict: Verdict::Valid,
                ..
            }
        ));
        assert!(
            matches!(&parsed[2], Dialback::Verify { id, key, .. } if id == "s1" && key == "k3y")
        );
        assert!(matches!(
            parsed[3],
            Dialback::VerifyVerdict {
                verdict: Verdict::Invalid,
                ..
            }
        ));
        for d in parsed {
            assert_eq!(Dialback::parse(&d.to_element()).unwrap(), d);
        }
    }

    #[test]
    fn malformed_dialback_is_refused_with_the_right_condition() {
        use StreamErrorCondition as E;
        let cases = [
            // An account is not a domain; the originator's is `invalid-from`.
            ("<result xmlns='jabber:server:dialback' from='joe@a.example' to='b.example'>k</result>", E::InvalidFrom),
            ("<result xmlns='jabber:server:dialback' to='b.example'>k</result>", E::InvalidFrom),
            ("<result xmlns='jabber:server:dialback' from='a.example'>k</result>", E::HostUnknown),
            ("<result xmlns='jabber:server:dialback' from='a.example' to='b.example'/>", E::BadFormat),
            ("<result xmlns='jabber:server:dialback' from='a.example' to='b.example' type='maybe'/>", E::BadFormat),
            ("<verify xmlns='jabber:server:dialback' from='a.example' to='b.example'>k</verify>", E::BadFormat),
            ("<other xmlns='jabber:server:dialback' from='a.example' to='b.example'/>", E::UnsupportedStanzaType),
            ("<result xmlns='jabber:client' from='a.example' to='b.example'>k</result>", E::InvalidNamespace),
        ];
        for (xml, cond) in cases {
            assert_eq!(parse(xml), Err(cond), "{xml}");
        }
        let long = format!(
            "<result xmlns='jabber:server:dialback' from='a.example' to='b.example'>{}</result>",
            "a".repeat(MAX_KEY + 1)
        );
        assert_eq!(parse(&long), Err(E::BadFormat));
    }
}
