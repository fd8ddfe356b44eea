//! Message routing between local sessions (RFC 6121 §8.5).

mod common;

use common::{error_conditions, Client, TestServer};
use stanza::ns;

async fn online(srv: &TestServer, user: &str, resource: &str, priority: i8) -> Client {
    let (mut c, _) = Client::login_plain(srv.addr, user, "secret", resource).await;
    c.send(&format!(
        "<presence><priority>{priority}</priority></presence>"
    ))
    .await;
    c.ping().await;
    c
}

#[tokio::test]
async fn routing_by_full_and_bare_jid() {
    let accounts = [("jane", "secret"), ("joe", "secret"), ("kim", "secret")];
    let srv = TestServer::start(&accounts, |c| {
        c.allow_plaintext_auth = true;
        // Another domain whose server refuses connections, without DNS.
        c.s2s
            .hosts
            .insert("elsewhere.org".into(), "127.0.0.1:1".into());
    })
    .await;
    let mut phone = online(&srv, "jane", "phone", 5).await;
    let mut laptop = online(&srv, "jane", "laptop", 1).await;
    let mut joe = online(&srv, "joe", "r", 0).await;

    // Bare JID, chat: the highest priority resource only, stamped `from`.
    joe.send("<message to='jane@example.org' type='chat' from='forged@evil.org' id='m1'><body>hi</body></message>")
        .await;
    let m = phone.element().await;
    assert_eq!(m.attr("from"), Some("joe@example.org/r"));
    assert_eq!(m.attr("id"), Some("m1"));
    assert_eq!(m.child("body", ns::CLIENT).unwrap().text(), "hi");
    laptop.ping().await;

    // Full JID: exactly that resource.
    joe.send("<message to='jane@example.org/laptop' type='chat'><body>you</body></message>")
        .await;
    assert_eq!(
        laptop
            .element()
            .await
            .child("body", ns::CLIENT)
            .unwrap()
            .text(),
        "you"
    );
    phone.ping().await;

    // Headline to the bare JID: every available resource.
    joe.send("<message to='jane@example.org' type='headline'><body>news</body></message>")
        .await;
    assert_eq!(phone.element().await.attr("type"), Some("headline"));
    assert_eq!(laptop.element().await.attr("type"), Some("headline"));

    // Nobody there: offline account, unknown account, another domain's
    // unreachable server.
    joe.send("<message to='kim@example.org' id='x1'><body>?</body></message>")
        .await;
    assert_eq!(
        error_conditions(&joe.element().await),
        ["service-unavailable"]
    );
    joe.send("<message to='nobody@example.org' id='x2'><body>?</body></message>")
        .await;
    assert_eq!(
        error_conditions(&joe.element().await),
        ["service-unavailable"]
    );
    joe.send("<message to='someone@elsewhere.org' id='x3'><body>?</body></message>")
        .await;
    assert_eq!(
        error_conditions(&joe.element().await),
        ["remote-server-not-found"]
    );
    // Errors are never answered with errors.
    joe.send("<message to='nobody@example.org' type='error'/>")
        .await;
    joe.ping().await;
    let _ = srv.stop().await;
}
