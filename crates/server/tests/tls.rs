//! TLS: STARTTLS, direct TLS (XEP-0368), the injection check, and
//! authentication only after encryption when the server requires it.

mod common;

use common::{mechanisms, Client, TestServer, DOMAIN};
use server::sasl::Hash;
use stanza::ns;

#[tokio::test]
async fn starttls_then_scram_sha1_then_bind() {
    let srv = TestServer::start(&[("jane", "secret")], |c| c.require_encryption = true).await;
    let mut c = Client::connect(srv.addr).await;
    let f = c.open(DOMAIN).await;
    let starttls = f.child("starttls", ns::TLS).expect("STARTTLS offered");
    assert!(starttls.child("required", ns::TLS).is_some());
    assert!(
        mechanisms(&f).is_empty(),
        "no SASL before TLS when it is required"
    );
    let f = c.starttls(srv.dir.path()).await;
    assert!(f.child("starttls", ns::TLS).is_none(), "not offered twice");
    // After TLS, PLAIN too.
    assert_eq!(mechanisms(&f), ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]);
    let s = c.scram(Hash::Sha1, "jane", "secret").await;
    assert!(s.is("success", ns::SASL), "{s:?}");
    let jid = c.bind(Some("tls")).await;
    assert_eq!(jid, "jane@example.org/tls");
    c.ping().await;
    let _ = srv.stop().await;
}

#[tokio::test]
async fn direct_tls_port() {
    let srv = TestServer::start(&[("jane", "secret")], |c| c.require_encryption = true).await;
    let mut c = Client::connect_tls(srv.tls_addr, srv.dir.path()).await;
    let f = c.open(DOMAIN).await;
    assert!(f.child("starttls", ns::TLS).is_none());
    let s = c.plain("jane", "secret").await;
    assert!(s.is("success", ns::SASL), "{s:?}");
    c.bind(None).await;
    let _ = srv.stop().await;
}

#[tokio::test]
async fn bytes_after_starttls_are_refused() {
    let srv = TestServer::start(&[("jane", "secret")], |c| c.require_encryption = true).await;
    let mut c = Client::connect(srv.addr).await;
    c.open(DOMAIN).await;
    // The injection: plaintext that would be read as if it came over TLS.
    c.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><iq type='set' id='x'/>")
        .await;
    let f = c.element().await;
    assert!(f.is("failure", ns::TLS), "{f:?}");
    assert!(matches!(
        c.next().await,
        Some(stanza::Event::StreamClose) | None
    ));
    let _ = srv.stop().await;
}

#[tokio::test]
async fn auth_before_required_tls_is_refused() {
    let srv = TestServer::start(&[("jane", "secret")], |c| c.require_encryption = true).await;
    let mut c = Client::connect(srv.addr).await;
    c.open(DOMAIN).await;
    let f = c.plain("jane", "secret").await;
    assert!(f.child("encryption-required", ns::SASL).is_some(), "{f:?}");
    assert_eq!(c.stream_error().await, "policy-violation");
    let _ = srv.stop().await;
}
