//! XEP-0077 in-band registration and password change.

mod common;

use common::{error_conditions, Client, TestServer, DOMAIN};
use stanza::{ns, Element};

async fn register(c: &mut Client, user: &str, pass: &str) -> Element {
    c.send(&format!(
        "<iq type='set' id='r1'><query xmlns='jabber:iq:register'>\
         <username>{user}</username><password>{pass}</password></query></iq>"
    ))
    .await;
    c.element().await
}

#[tokio::test]
async fn register_login_and_change_password() {
    let srv = TestServer::start(&[("taken", "x")], |c| {
        c.allow_registration = true;
        c.allow_plaintext_auth = true;
    })
    .await;
    let mut c = Client::connect(srv.addr).await;
    let f = c.open(DOMAIN).await;
    assert!(f.child("register", ns::REGISTER_FEATURE).is_some());
    c.send("<iq type='get' id='g'><query xmlns='jabber:iq:register'/></iq>")
        .await;
    let form = c.element().await;
    let q = form.child("query", ns::REGISTER).unwrap();
    assert!(
        q.child("username", ns::REGISTER).is_some() && q.child("password", ns::REGISTER).is_some()
    );
    assert_eq!(
        register(&mut c, "newbie", "pw1").await.attr("type"),
        Some("result")
    );
    assert_eq!(
        error_conditions(&register(&mut c, "taken", "pw").await),
        ["conflict"]
    );
    assert_eq!(
        error_conditions(&register(&mut c, "", "pw").await),
        ["jid-malformed"]
    );
    // The new account logs in, then changes its password.
    let s = c.plain("newbie", "pw1").await;
    assert!(s.is("success", ns::SASL), "{s:?}");
    c.bind(Some("r")).await;
    assert_eq!(
        register(&mut c, "newbie", "pw2").await.attr("type"),
        Some("result")
    );
    assert_eq!(
        error_conditions(&register(&mut c, "taken", "pw2").await),
        ["not-allowed"]
    );
    let (_c2, jid) = Client::login_plain(srv.addr, "newbie", "pw2", "again").await;
    assert_eq!(jid, "newbie@example.org/again");
    let _ = srv.stop().await;
}

#[tokio::test]
async fn registration_closed_by_default() {
    let srv = TestServer::start(&[], |_| {}).await;
    let mut c = Client::connect(srv.addr).await;
    let f = c.open(DOMAIN).await;
    assert!(f.child("register", ns::REGISTER_FEATURE).is_none());
    assert_eq!(
        error_conditions(&register(&mut c, "someone", "pw").await),
        ["not-allowed"]
    );
    let _ = srv.stop().await;
}
