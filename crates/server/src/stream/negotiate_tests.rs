use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use stanza::{ns, Element, StreamErrorCondition as Cond};

use super::*;
use crate::sasl::{Hash, ScramClient, ScramKeys};

fn policy() -> Policy {
    Policy {
        domains: vec!["example.org".to_owned()].into(),
        tls_available: true,
        require_encryption: false,
        allow_plaintext_auth: true,
        allow_registration: true,
        max_auth_failures: 3,
    }
}

fn open(n: &mut Negotiation) -> Vec<Action> {
    n.on_open(Opening {
        to: Some("example.org"),
        version: Some("1.0"),
        framing: Ok(()),
    })
}

fn el(xml: &str) -> Element {
    Element::from_stanza(xml.as_bytes()).unwrap()
}

/// The element a `Send` carries, read as inside a client stream.
fn sent(a: &Action) -> Element {
    let ctx = stanza::element::NsContext {
        bindings: vec![
            (None, ns::CLIENT.to_owned()),
            (Some("stream".to_owned()), ns::STREAM.to_owned()),
        ],
    };
    match a {
        Action::Send(b) => Element::parse_in(std::str::from_utf8(b).unwrap(), &ctx).unwrap(),
        other => panic!("expected a Send, got {other:?}"),
    }
}

fn mechanisms(features: &Element) -> Vec<String> {
    features
        .child("mechanisms", ns::SASL)
        .map(|m| m.elements().map(|e| e.text().into_owned()).collect())
        .unwrap_or_default()
}

fn auth(mechanism: &str, data: &[u8]) -> Element {
    el(&format!(
        "<auth xmlns='{}' mechanism='{mechanism}'>{}</auth>",
        ns::SASL,
        B64.encode(data)
    ))
}

fn failure(a: &[Action]) -> String {
    let f = sent(&a[1]);
    assert!(f.is("failure", ns::SASL), "{f:?}");
    f.first_element().unwrap().name.clone()
}

fn now() -> Instant {
    Instant::now()
}

#[test]
fn scram_then_restart_then_bind() {
    let mut n = Negotiation::new(policy(), false, now() + Duration::from_secs(30));
    let a = open(&mut n);
    assert!(matches!(&a[0], Action::Open { from } if from == "example.org"));
    let f = sent(&a[1]);
    assert_eq!(
        mechanisms(&f),
        ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"],
        "{f:?}"
    );
    assert!(f.child("starttls", ns::TLS).is_some());
    assert!(f.child("register", ns::REGISTER_FEATURE).is_some());

    let (client, first) = ScramClient::new(Hash::Sha1, "jane", "secret", "cnonce");
    let a = n.on_element(&auth("SCRAM-SHA-1", &first));
    let [Action::LookUp { jid, hash }] = &a[..] else {
        panic!("{a:?}")
    };
    assert_eq!((jid.as_str(), *hash), ("jane@example.org", Hash::Sha1));
    // Nothing else is taken while the keys are read.
    assert!(matches!(
        &n.on_element(&auth("PLAIN", b"\0jane\0x"))[..],
        [Action::Close(Cond::BadFormat, None)]
    ));
    let mut n = Negotiation::new(policy(), false, now() + Duration::from_secs(30));
    open(&mut n);
    n.on_element(&auth("SCRAM-SHA-1", &first));
    let keys = ScramKeys::generate(Hash::Sha1, "secret", 4096);
    let a = n.on_keys(Some(keys), "snonce");
    let challenge = sent(&a[0]);
    assert!(challenge.is("challenge", ns::SASL));
    let server_first = B64.decode(challenge.text().trim()).unwrap();
    let (fin, _) = client.respond(&server_first).unwrap();
    let a = n.on_element(&el(&format!(
        "<response xmlns='{}'>{}</response>",
        ns::SASL,
        B64.encode(fin)
    )));
    assert!(sent(&a[0]).is("success", ns::SASL));
    assert!(matches!(&a[1], Action::Authenticated(j) if j.as_str() == "jane@example.org"));
    assert!(!n.opened());

    // The restarted stream offers the bind, and the bind is asked for.
    let a = open(&mut n);
    let f = sent(&a[1]);
    assert!(f.child("bind", ns::BIND).is_some() && mechanisms(&f).is_empty());
    assert!(f.child("sm", "urn:xmpp:sm:3").is_some(), "{f:?}");
    let a = n.on_element(&el(
        "<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource> phone </resource></bind></iq>",
    ));
    assert!(
        matches!(&a[..], [Action::Bind { resource: Some(r), id }] if r == "phone" && id == "b")
    );
    assert_eq!(n.binding().map(|j| j.as_str()), Some("jane@example.org"));
    n.bound(true);
    assert!(n.binding().is_none());
    // Bound: negotiation takes nothing more.
    assert!(matches!(
        &n.on_element(&auth("PLAIN", b"\0jane\0secret"))[..],
        [Action::Close(Cond::BadFormat, None)]
    ));
}

#[test]
fn a_refused_bind_can_be_retried() {
    let mut n = Negotiation::new(policy(), true, now() + Duration::from_secs(30));
    open(&mut n);
    n.on_element(&auth("PLAIN", b"\0jane\0secret"));
    let a = n.on_plain(Some(true));
    assert!(matches!(&a[1], Action::Authenticated(_)));
    open(&mut n);
    let bind = el("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>");
    assert!(matches!(
        &n.on_element(&bind)[..],
        [Action::Bind { resource: None, .. }]
    ));
    n.bound(false);
    assert!(n.binding().is_none());
    assert!(matches!(&n.on_element(&bind)[..], [Action::Bind { .. }]));
    // A resumption is asked for instead of a bind; an enable is too early.
    n.bound(false);
    let a = n.on_element(&el("<resume xmlns='urn:xmpp:sm:3' previd='abc' h='4'/>"));
    assert!(matches!(&a[..], [Action::Resume { previd, h: 4 }] if previd == "abc"));
    n.bound(false);
    let a = n.on_element(&el("<enable xmlns='urn:xmpp:sm:3' resume='true'/>"));
    assert_eq!(
        sent(&a[0]).first_element().unwrap().name,
        "unexpected-request"
    );
    let a = n.on_element(&el("<resume xmlns='urn:xmpp:sm:3' h='4'/>"));
    assert!(matches!(&a[..], [Action::Close(Cond::BadFormat, None)]));
    let mut n = Negotiation::new(policy(), true, now() + Duration::from_secs(30));
    open(&mut n);
    n.on_element(&auth("PLAIN", b"\0jane\0secret"));
    n.on_plain(Some(true));
    open(&mut n);
    // Outside a bind, `bound` changes nothing.
    n.bound(true);
    // The legacy session iq is answered; any other stanza is refused.
    let a = n.on_element(&el(
        "<iq type='set' id='s'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>",
    ));
    assert_eq!(sent(&a[0]).attr("type"), Some("result"));
    let a = n.on_element(&el(
        "<message to='joe@example.org'><body>x</body></message>",
    ));
    assert!(matches!(&a[..], [Action::Close(Cond::NotAuthorized, None)]));
}

#[test]
fn encryption_first_when_required() {
    let p = Policy {
        require_encryption: true,
        allow_plaintext_auth: false,
        ..policy()
    };
    let mut n = Negotiation::new(p.clone(), false, now() + Duration::from_secs(30));
    let f = sent(&open(&mut n)[1]);
    assert!(mechanisms(&f).is_empty());
    let tls = f.child("starttls", ns::TLS).unwrap();
    assert!(tls.child("required", ns::TLS).is_some());
    let a = n.on_element(&auth("PLAIN", b"\0jane\0secret"));
    assert_eq!(
        sent(&a[0]).first_element().unwrap().name,
        "encryption-required"
    );
    assert!(matches!(
        &a[1],
        Action::Close(Cond::PolicyViolation, Some("STARTTLS first"))
    ));
    let reg = el("<iq type='get' id='r'><query xmlns='jabber:iq:register'/></iq>");
    assert!(matches!(
        &n.on_element(&reg)[..],
        [Action::Close(Cond::PolicyViolation, _)]
    ));
    let a = n.on_element(&el("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"));
    assert!(matches!(&a[..], [Action::StartTls]));
    // TLS is up: a new stream on the encrypted connection.
    let mut n = Negotiation::new(p, true, now() + Duration::from_secs(30));
    let f = sent(&open(&mut n)[1]);
    assert_eq!(mechanisms(&f), ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]);
    assert!(f.child("starttls", ns::TLS).is_none());
    assert!(matches!(&n.on_element(&reg)[..], [Action::Register(_)]));
}

#[test]
fn plain_needs_tls_or_permission() {
    let p = Policy {
        allow_plaintext_auth: false,
        ..policy()
    };
    let mut n = Negotiation::new(p, false, now() + Duration::from_secs(30));
    assert_eq!(
        mechanisms(&sent(&open(&mut n)[1])),
        ["SCRAM-SHA-256", "SCRAM-SHA-1"]
    );
    let a = n.on_element(&auth("PLAIN", b"\0jane\0secret"));
    assert!(matches!(&a[0], Action::Failed { account: None }));
    assert_eq!(failure(&a), "invalid-mechanism");
}

#[test]
fn headers_are_checked() {
    let check = |to: Option<&str>, version: Option<&str>, framing: Result<(), Cond>| {
        let mut n = Negotiation::new(policy(), false, now() + Duration::from_secs(30));
        let a = n.on_open(Opening {
            to,
            version,
            framing,
        });
        assert!(matches!(&a[0], Action::Open { .. }), "{a:?}");
        assert!(n.opened());
        match a.last() {
            Some(Action::Close(c, _)) => Some(*c),
            _ => None,
        }
    };
    assert_eq!(check(Some("example.org"), Some("1.0"), Ok(())), None);
    assert_eq!(check(Some("example.org"), Some("1.1"), Ok(())), None);
    assert_eq!(
        check(Some("other.org"), Some("1.0"), Ok(())),
        Some(Cond::HostUnknown)
    );
    assert_eq!(check(None, Some("1.0"), Ok(())), Some(Cond::HostUnknown));
    assert_eq!(
        check(Some("example.org"), None, Ok(())),
        Some(Cond::UnsupportedVersion)
    );
    assert_eq!(
        check(Some("example.org"), Some("2.0"), Ok(())),
        Some(Cond::UnsupportedVersion)
    );
    // The transport's own checks come first.
    assert_eq!(
        check(Some("other.org"), None, Err(Cond::InvalidNamespace)),
        Some(Cond::InvalidNamespace)
    );
}

#[test]
fn a_header_in_the_middle_of_sasl_is_bad_format() {
    let mut n = Negotiation::new(policy(), false, now() + Duration::from_secs(30));
    open(&mut n);
    let (_, first) = ScramClient::new(Hash::Sha256, "jane", "secret", "c");
    n.on_element(&auth("SCRAM-SHA-256", &first));
    n.on_keys(Some(ScramKeys::generate(Hash::Sha256, "x", 4096)), "s");
    assert!(matches!(
        open(&mut n).last(),
        Some(Action::Close(Cond::BadFormat, None))
    ));
}

#[test]
fn failures_count_against_the_account_and_end_the_stream() {
    let mut n = Negotiation::new(policy(), false, now() + Duration::from_secs(30));
    open(&mut n);
    // A wrong PLAIN password names the account.
    n.on_element(&auth("PLAIN", b"\0jane\0wrong"));
    let a = n.on_plain(Some(false));
    assert!(
        matches!(&a[0], Action::Failed { account: Some(j) } if j.as_str() == "jane@example.org")
    );
    assert_eq!(failure(&a), "not-authorized");
    assert_eq!(a.len(), 2);
    // An abort after the server's first message counts too, as the account's.
    let (_, first) = ScramClient::new(Hash::Sha1, "joe", "secret", "c");
    n.on_element(&auth("SCRAM-SHA-1", &first));
    n.on_keys(Some(ScramKeys::generate(Hash::Sha1, "x", 4096)), "s");
    let a = n.on_element(&el(&format!("<abort xmlns='{}'/>", ns::SASL)));
    assert!(
        matches!(&a[0], Action::Failed { account: Some(j) } if j.as_str() == "joe@example.org")
    );
    assert_eq!(failure(&a), "aborted");
    // A store that fails is a temporary failure, and the third failure
    // ends the stream.
    n.on_element(&auth("SCRAM-SHA-1", &first));
    let a = n.on_keys(None, "s");
    assert_eq!(failure(&a), "temporary-auth-failure");
    assert!(matches!(
        a.last(),
        Some(Action::Close(Cond::PolicyViolation, Some(_)))
    ));
}

#[test]
fn bad_payloads_and_mechanisms_fail_without_an_account() {
    let mut n = Negotiation::new(policy(), false, now() + Duration::from_secs(30));
    open(&mut n);
    let a = n.on_element(&el(&format!(
        "<auth xmlns='{}' mechanism='PLAIN'>!!!</auth>",
        ns::SASL
    )));
    assert!(matches!(&a[0], Action::Failed { account: None }));
    assert_eq!(failure(&a), "incorrect-encoding");
    let a = n.on_element(&auth("DIGEST-MD5", b"x"));
    assert_eq!(failure(&a), "invalid-mechanism");
    // Not SASL at all before authentication.
    let mut n = Negotiation::new(policy(), false, now() + Duration::from_secs(30));
    open(&mut n);
    let a = n.on_element(&el("<message><body>x</body></message>"));
    assert!(matches!(&a[..], [Action::Close(Cond::NotAuthorized, None)]));
}
