//! Client-to-server negotiation against `server::run` on port 0: login with
//! every mechanism, binding, and the stream errors for bad input.

mod common;

use std::time::{Duration, Instant};

use common::{mechanisms, Client, TestServer, DOMAIN};
use server::sasl::Hash;
use stanza::ns;

#[tokio::test]
async fn plain_login_bind_session_and_ping() {
    let srv = TestServer::start(&[("jane", "secret")], |c| c.allow_plaintext_auth = true).await;
    let mut c = Client::connect(srv.addr).await;
    let f = c.open(DOMAIN).await;
    assert_eq!(mechanisms(&f), ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]);
    let s = c.plain("jane", "secret").await;
    assert!(s.is("success", ns::SASL), "{s:?}");
    let jid = c.bind(Some("phone")).await;
    assert_eq!(jid, "jane@example.org/phone");
    c.send("<iq type='set' id='s1'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>")
        .await;
    let r = c.element().await;
    assert_eq!((r.attr("type"), r.attr("id")), (Some("result"), Some("s1")));
    c.send("<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let r = c.element().await;
    assert_eq!((r.attr("type"), r.attr("id")), (Some("result"), Some("p1")));
    // An iq the server does not implement gets an error, not silence.
    c.send("<iq type='get' id='q1'><query xmlns='urn:example:nope'/></iq>")
        .await;
    let r = c.element().await;
    assert_eq!(r.attr("type"), Some("error"));
    assert!(r
        .child("error", ns::CLIENT)
        .unwrap()
        .child("service-unavailable", ns::STANZA_ERRORS)
        .is_some());
    // A clean close is answered with a close.
    c.send("</stream:stream>").await;
    assert!(matches!(
        c.next().await,
        Some(stanza::Event::StreamClose) | None
    ));
    let _ = srv.stop().await;
}

#[tokio::test]
async fn scram_sha1_and_sha256_with_a_generated_resource() {
    let srv = TestServer::start(&[("joe", "pencil")], |_| {}).await;
    for hash in [Hash::Sha1, Hash::Sha256] {
        let mut c = Client::connect(srv.addr).await;
        let f = c.open(DOMAIN).await;
        assert_eq!(
            mechanisms(&f),
            ["SCRAM-SHA-256", "SCRAM-SHA-1"],
            "no PLAIN without the setting"
        );
        let s = c.scram(hash, "joe", "pencil").await;
        assert!(s.is("success", ns::SASL), "{hash:?}: {s:?}");
        let jid = c.bind(None).await;
        assert!(jid.starts_with("joe@example.org/"), "{jid}");
        assert!(jid.len() > "joe@example.org/".len());
    }
    let _ = srv.stop().await;
}

#[tokio::test]
async fn wrong_passwords_fail_slower_and_then_end_the_stream() {
    let srv = TestServer::start(&[("jane", "secret")], |c| c.allow_plaintext_auth = true).await;
    let mut c = Client::connect(srv.addr).await;
    c.open(DOMAIN).await;
    let t0 = Instant::now();
    let f = c.scram(Hash::Sha1, "jane", "guess").await;
    assert!(f.child("not-authorized", ns::SASL).is_some(), "{f:?}");
    // An unknown user looks the same as a wrong password.
    let f = c.scram(Hash::Sha1, "nobody", "guess").await;
    assert!(f.child("not-authorized", ns::SASL).is_some(), "{f:?}");
    let f = c.plain("jane", "guess").await;
    assert!(f.child("not-authorized", ns::SASL).is_some(), "{f:?}");
    // 250 + 500 + 1000 ms of back-off.
    assert!(
        t0.elapsed() >= Duration::from_millis(1750),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(c.stream_error().await, "policy-violation");
    let _ = srv.stop().await;
}

#[tokio::test]
async fn stream_errors_for_bad_headers_and_input() {
    let srv = TestServer::start(&[("jane", "secret")], |_| {}).await;
    let cases: [(&str, &str); 5] = [
        (
            "<stream:stream to='elsewhere.org' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>",
            "host-unknown",
        ),
        (
            "<stream:stream to='example.org' version='1.0' xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'>",
            "invalid-namespace",
        ),
        (
            "<stream:stream to='example.org' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'><message/>",
            "not-authorized",
        ),
        ("\x16\x03\x01garbage", "not-well-formed"),
        (
            "<stream:stream to='example.org' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'><!-- hi -->",
            "restricted-xml",
        ),
    ];
    for (input, want) in cases {
        let mut c = Client::connect(srv.addr).await;
        c.send(input).await;
        assert_eq!(c.stream_error().await, want, "{input}");
    }
    // The server keeps serving everyone else.
    let (_c, jid) = Client::login_plain_scram(srv.addr, "jane", "secret").await;
    assert!(jid.starts_with("jane@"));
    let _ = srv.stop().await;
}

#[tokio::test]
async fn oversized_stanza_is_a_policy_violation() {
    let srv = TestServer::start(&[], |c| c.limits.max_stanza_bytes = 4096).await;
    let mut c = Client::connect(srv.addr).await;
    c.open(DOMAIN).await;
    c.send(&format!(
        "<auth xmlns='{}' mechanism='PLAIN'>{}</auth>",
        ns::SASL,
        "A".repeat(10_000)
    ))
    .await;
    assert_eq!(c.stream_error().await, "policy-violation");
    let _ = srv.stop().await;
}

#[tokio::test]
async fn binding_the_same_resource_replaces_the_old_session() {
    let srv = TestServer::start(&[("jane", "secret")], |c| c.allow_plaintext_auth = true).await;
    let (mut old, _) = Client::login_plain(srv.addr, "jane", "secret", "phone").await;
    let (mut new, jid) = Client::login_plain(srv.addr, "jane", "secret", "phone").await;
    assert_eq!(jid, "jane@example.org/phone");
    assert_eq!(old.stream_error().await, "conflict");
    // The new session works.
    new.send("<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    assert_eq!(new.element().await.attr("type"), Some("result"));
    let _ = srv.stop().await;
}

#[tokio::test]
async fn idle_connections_time_out() {
    let srv = TestServer::start(&[], |c| {
        c.limits.handshake_timeout_secs = 1;
        c.limits.idle_timeout_secs = 1;
    })
    .await;
    let mut c = Client::connect(srv.addr).await;
    c.open(DOMAIN).await;
    assert_eq!(c.stream_error().await, "connection-timeout");
    let _ = srv.stop().await;
}

#[tokio::test]
async fn shutdown_tells_every_session() {
    let srv = TestServer::start(&[("jane", "secret")], |c| c.allow_plaintext_auth = true).await;
    let (mut bound, _) = Client::login_plain(srv.addr, "jane", "secret", "a").await;
    let mut fresh = Client::connect(srv.addr).await;
    fresh.open(DOMAIN).await;
    let stop = tokio::spawn(srv.stop());
    assert_eq!(bound.stream_error().await, "system-shutdown");
    assert_eq!(fresh.stream_error().await, "system-shutdown");
    stop.await.unwrap();
}
