//! The incoming s2s stream's negotiation, input by input.

use super::*;

const SECRET: [u8; 32] = [7; 32];

fn policy(tls_available: bool, require_tls: bool) -> Policy {
    Policy {
        domains: Arc::from(vec!["b.example".to_owned()]),
        tls_available,
        require_tls,
        secret: SECRET,
        max_pending: 2,
        max_verified: 3,
    }
}

fn el(xml: &str) -> Element {
    Element::parse(xml).unwrap()
}

fn result(from: &str, to: &str, key: &str) -> Element {
    el(&format!(
        "<db:result xmlns:db='jabber:server:dialback' from='{from}' to='{to}'>{key}</db:result>"
    ))
}

fn sent(actions: &[Action]) -> String {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(b) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        })
        .collect()
}

/// A plain stream with dialback allowed: opened, then one domain verified.
fn verified_stream() -> Incoming {
    let mut s = Incoming::new(policy(false, false), "s1".into(), false);
    s.on_open(Some("b.example"), Some(ns::SERVER));
    let a = s.on_element(&result("a.example", "b.example", "k"));
    assert_eq!(
        a,
        vec![Action::Verify {
            originating: "a.example".into(),
            receiving: "b.example".into(),
            key: "k".into()
        }]
    );
    let a = s.on_verified("a.example", "b.example", true);
    assert!(sent(&a).contains("type='valid'"), "{a:?}");
    s
}

#[test]
fn the_header_must_name_our_domain_in_the_server_namespace() {
    let mut s = Incoming::new(policy(true, true), "s1".into(), false);
    assert_eq!(
        s.on_open(Some("c.example"), Some(ns::SERVER)),
        vec![Action::Close(StreamErrorCondition::HostUnknown, None)]
    );
    assert_eq!(
        s.on_open(Some("b.example"), Some(ns::CLIENT)),
        vec![Action::Close(StreamErrorCondition::InvalidNamespace, None)]
    );
    let a = s.on_open(Some("B.Example"), Some(ns::SERVER));
    assert_eq!(
        a[0],
        Action::Open {
            from: "b.example".into()
        }
    );
    // TLS required: STARTTLS offered as required, no dialback yet.
    let f = sent(&a);
    assert!(f.contains("<required/>") && !f.contains("dialback"), "{f}");
}

#[test]
fn tls_first_when_required_then_dialback_on_a_new_stream_id() {
    let mut s = Incoming::new(policy(true, true), "s1".into(), false);
    s.on_open(Some("b.example"), Some(ns::SERVER));
    // Dialback before TLS is refused.
    assert_eq!(
        s.on_element(&result("a.example", "b.example", "k")),
        vec![Action::Close(
            StreamErrorCondition::PolicyViolation,
            Some("STARTTLS first")
        )]
    );
    let mut s = Incoming::new(policy(true, true), "s1".into(), false);
    s.on_open(Some("b.example"), Some(ns::SERVER));
    let a = s.on_element(&el("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"));
    assert_eq!(a, vec![Action::StartTls]);
    assert_ne!(s.stream_id(), "s1", "keys are bound to the new stream's id");
    let a = s.on_open(Some("b.example"), Some(ns::SERVER));
    let f = sent(&a);
    assert!(
        f.contains("urn:xmpp:features:dialback") && !f.contains("starttls"),
        "{f}"
    );
    assert!(matches!(
        s.on_element(&result("a.example", "b.example", "k"))[..],
        [Action::Verify { .. }]
    ));
    // A second STARTTLS is refused.
    assert!(matches!(
        s.on_element(&el("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"))[..],
        [Action::Close(StreamErrorCondition::PolicyViolation, _)]
    ));
}

#[test]
fn only_verified_senders_are_accepted() {
    let s = verified_stream();
    assert_eq!(
        s.accepts(Some("jane@a.example/web"), Some("joe@b.example")),
        Ok(())
    );
    assert_eq!(s.accepts(Some("a.example"), Some("b.example")), Ok(()));
    // A from-domain that was not verified: spoofing.
    assert_eq!(
        s.accepts(Some("eve@c.example"), Some("joe@b.example")),
        Err(StreamErrorCondition::InvalidFrom)
    );
    assert_eq!(
        s.accepts(None, Some("joe@b.example")),
        Err(StreamErrorCondition::InvalidFrom)
    );
    assert_eq!(
        s.accepts(Some("jane@a.example"), Some("joe@elsewhere.example")),
        Err(StreamErrorCondition::HostUnknown)
    );
    // Before dialback nothing is accepted.
    let mut fresh = Incoming::new(policy(false, false), "s2".into(), false);
    fresh.on_open(Some("b.example"), Some(ns::SERVER));
    assert_eq!(
        fresh.accepts(Some("jane@a.example"), Some("joe@b.example")),
        Err(StreamErrorCondition::InvalidFrom)
    );
}

#[test]
fn an_invalid_key_is_refused_and_ends_the_stream() {
    let mut s = Incoming::new(policy(false, false), "s1".into(), false);
    s.on_open(Some("b.example"), Some(ns::SERVER));
    s.on_element(&result("a.example", "b.example", "wrong"));
    let a = s.on_verified("a.example", "b.example", false);
    assert!(sent(&a).contains("type='invalid'"), "{a:?}");
    assert_eq!(
        a.last(),
        Some(&Action::Close(
            StreamErrorCondition::NotAuthorized,
            Some("dialback key invalid")
        ))
    );
    assert_eq!(
        s.accepts(Some("jane@a.example"), Some("joe@b.example")),
        Err(StreamErrorCondition::InvalidFrom)
    );
    // A verdict nobody asked for changes nothing.
    assert!(s.on_verified("c.example", "b.example", true).is_empty());
    assert_eq!(
        s.accepts(Some("x@c.example"), Some("joe@b.example")),
        Err(StreamErrorCondition::InvalidFrom)
    );
}

#[test]
fn we_answer_verify_as_the_authoritative_server() {
    let mut s = Incoming::new(policy(false, false), "s9".into(), false);
    s.on_open(Some("b.example"), Some(ns::SERVER));
    // c.example was given a key by our outgoing stream's peer-side id 'x1'.
    let good = dialback::key(&SECRET, "c.example", "b.example", "x1");
    let ask = |key: &str| {
        el(&format!(
            "<db:verify xmlns:db='jabber:server:dialback' from='c.example' to='b.example' id='x1'>{key}</db:verify>"
        ))
    };
    let a = s.on_element(&ask(&good));
    let answer = Dialback::parse(&Element::from_stanza(sent(&a).as_bytes()).unwrap()).unwrap();
    assert_eq!(
        answer,
        Dialback::VerifyVerdict {
            from: "b.example".into(),
            to: "c.example".into(),
            id: "x1".into(),
            verdict: Verdict::Valid
        }
    );
    let a = s.on_element(&ask("0000"));
    assert!(sent(&a).contains("type='invalid'"), "{a:?}");
}

#[test]
fn pending_and_verified_domains_are_bounded() {
    let mut s = Incoming::new(policy(false, false), "s1".into(), false);
    s.on_open(Some("b.example"), Some(ns::SERVER));
    s.on_element(&result("a1.example", "b.example", "k"));
    s.on_element(&result("a2.example", "b.example", "k"));
    assert_eq!(
        s.on_element(&result("a3.example", "b.example", "k")),
        vec![Action::Close(
            StreamErrorCondition::PolicyViolation,
            Some("too many domains")
        )]
    );
}

#[test]
fn malformed_dialback_ends_the_stream_with_its_condition() {
    let mut s = Incoming::new(policy(false, false), "s1".into(), false);
    s.on_open(Some("b.example"), Some(ns::SERVER));
    assert_eq!(
        s.on_element(&result("joe@a.example", "b.example", "k")),
        vec![Action::Close(StreamErrorCondition::InvalidFrom, None)]
    );
    assert_eq!(
        s.on_element(&result("a.example", "c.example", "k")),
        vec![Action::Close(StreamErrorCondition::HostUnknown, None)]
    );
    assert_eq!(
        s.on_element(&el("<query xmlns='jabber:iq:roster'/>")),
        vec![Action::Close(
            StreamErrorCondition::UnsupportedStanzaType,
            None
        )]
    );
}
