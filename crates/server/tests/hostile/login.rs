//! Before the bind, and logging in.

use crate::common::binary::Binary;
use crate::common::{self, Client};
use crate::{metric_becomes, HEADER};
use stanza::ns;

/// §2.3: a client that asks for answers before logging in and never reads
/// them is disconnected at the handshake deadline all the same.
#[tokio::test]
async fn unread_answers_do_not_extend_the_handshake() {
    use tokio::io::AsyncWriteExt;
    let srv = Binary::start(&[], "[limits]\nhandshake_timeout_secs = 5\n");
    // A small receive window, so the server's answers back up quickly.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut tcp = sock.connect(srv.addr).await.unwrap();
    tcp.write_all(HEADER.as_bytes()).await.unwrap();
    // Registration-form requests: each gets an answer the server must write.
    let ask = "<iq type='get' id='r'><query xmlns='jabber:iq:register'/></iq>".repeat(100);
    // Write until the server stops reading (its answers are stuck), for
    // at most 1.5 s.
    let _ = tokio::time::timeout(std::time::Duration::from_millis(1500), async {
        loop {
            if tcp.write_all(ask.as_bytes()).await.is_err() {
                break;
            }
        }
    })
    .await;
    // Still there, not reading, well before its deadline: what ends it
    // below is the deadline, not something else.
    assert_eq!(
        srv.metric("connections"),
        1.0,
        "connected until the deadline"
    );
    // The deadline was 5 s; 30 s is a generous bound for a loaded machine.
    assert_eq!(metric_becomes(&srv, "connections", 0.0, 30).await, 0.0);
    drop(tcp);
    srv.stop();
}

/// §2.11: before authentication the stanza limit is the small pre-auth one.
#[tokio::test]
async fn pre_auth_stanzas_are_small() {
    let srv = Binary::start(
        &[("jane", "pw")],
        "[limits]\npre_auth_max_stanza_bytes = 2048\n",
    );
    let mut c = Client::connect(srv.addr).await;
    c.open(common::DOMAIN).await;
    let big = format!(
        "<iq type='get' id='r'><query xmlns='jabber:iq:register'><x>{}</x></query></iq>",
        "a".repeat(3000)
    );
    c.send(&big).await;
    assert_eq!(c.stream_error().await, "policy-violation");
    // After authentication the same stanza is fine.
    let (mut jane, _) = Client::login_plain(srv.addr, "jane", "pw", "a").await;
    let r = jane.iq(&big.replace("<iq ", "<iq to='example.org' ")).await;
    assert_eq!(r.attr("id"), Some("r"));
    srv.stop();
}

/// Sends a SCRAM-SHA-1 client-first for `user`; returns the server-first
/// message's salt and iteration count.
async fn scram_first(c: &mut Client, user: &str) -> (String, String) {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let first = b64.encode(format!("n,,n={user},r=hostilenonce"));
    c.send(&format!(
        "<auth xmlns='{}' mechanism='SCRAM-SHA-1'>{first}</auth>",
        ns::SASL
    ))
    .await;
    let ch = c.element().await;
    assert!(ch.is("challenge", ns::SASL), "{ch:?}");
    let server_first = String::from_utf8(b64.decode(ch.text().trim()).unwrap()).unwrap();
    let field = |k: &str| {
        server_first
            .split(',')
            .find_map(|f| f.strip_prefix(k))
            .unwrap()
            .to_owned()
    };
    (field("s="), field("i="))
}

/// §2.4 and §2.7: SCRAM for an unknown user costs no PBKDF2, its abort is
/// a counted failure, and its salt is as stable as a real account's.
#[tokio::test]
async fn scram_probes_are_cheap_counted_and_tell_nothing() {
    let srv = Binary::start(
        &[("jane", "pw")],
        "[limits]\nlogin_backoff_base_ms = 10\nlogin_backoff_max_secs = 1\n",
    );
    let before = srv.metric("pbkdf2_derivations_total");
    let mut c = Client::connect(srv.addr).await;
    c.open(common::DOMAIN).await;
    let mut salts = Vec::new();
    for _ in 0..3 {
        salts.push(scram_first(&mut c, "nobody").await);
        c.send(&format!("<abort xmlns='{}'/>", ns::SASL)).await;
        if salts.len() < 3 {
            let f = c.element().await;
            assert!(f.child("aborted", ns::SASL).is_some(), "{f:?}");
        }
    }
    // Three aborts are three failures: the stream ends like any other
    // connection that failed max_auth_failures (3) times.
    assert_eq!(c.stream_error().await, "policy-violation");
    assert_eq!(srv.metric("auth_failures_total"), 3.0);
    assert_eq!(
        srv.metric("pbkdf2_derivations_total"),
        before,
        "no PBKDF2 for an unknown user"
    );
    // The same name gets the same salt and iteration count every time, on
    // any connection; another name another salt; a real account its own.
    assert!(salts.windows(2).all(|w| w[0] == w[1]), "{salts:?}");
    let mut d = Client::connect(srv.addr).await;
    d.open(common::DOMAIN).await;
    assert_eq!(scram_first(&mut d, "nobody").await, salts[0]);
    d.send(&format!("<abort xmlns='{}'/>", ns::SASL)).await;
    d.element().await;
    let other = scram_first(&mut d, "somebody").await;
    assert_ne!(other.0, salts[0].0);
    assert_eq!(other.1, salts[0].1, "the same iteration count");
    d.send(&format!("<abort xmlns='{}'/>", ns::SASL)).await;
    d.element().await;
    let real = scram_first(&mut d, "jane").await;
    assert_eq!(real.1, salts[0].1);
    assert_eq!(real.0.len(), salts[0].0.len(), "salts of one length");
    srv.stop();
}

/// §2.4: in-band registration is limited per address (and overall).
#[tokio::test]
async fn registrations_are_rate_limited() {
    let srv = Binary::start(
        &[],
        "allow_registration = true\n[limits]\nlimit_loopback = true\n\
         registration_period_per_ip_secs = 3600\nregistration_burst_per_ip = 2\n",
    );
    let mut c = Client::connect(srv.addr).await;
    c.open(common::DOMAIN).await;
    let mut answers = Vec::new();
    for i in 0..5 {
        let r = c
            .iq(&format!(
                "<iq type='set' id='reg{i}'><query xmlns='jabber:iq:register'>\
                 <username>user{i}</username><password>pw</password></query></iq>"
            ))
            .await;
        answers.push(if r.attr("type") == Some("result") {
            "ok".to_owned()
        } else {
            common::error_conditions(&r)[0].clone()
        });
    }
    assert_eq!(
        answers,
        [
            "ok",
            "ok",
            "resource-constraint",
            "resource-constraint",
            "resource-constraint"
        ]
    );
    assert_eq!(srv.metric("registrations_total"), 2.0);
    srv.stop();
}

/// §2.8: failures are remembered per account across connections: a
/// second connection does not get a fresh guess while the first one's
/// back-off runs, yet the right password still works (no lock-out).
#[tokio::test]
async fn login_back_off_spans_connections_without_locking_out() {
    use base64::Engine as _;
    let srv = Binary::start(
        &[("jane", "pw")],
        "[limits]\nlogin_backoff_base_ms = 1500\nlogin_backoff_max_secs = 3\n",
    );
    let mut first = Client::connect(srv.addr).await;
    first.open(common::DOMAIN).await;
    let mut second = Client::connect(srv.addr).await;
    second.open(common::DOMAIN).await;
    let plain = |pass: &str| {
        let b = base64::engine::general_purpose::STANDARD.encode(format!("\0jane\0{pass}"));
        format!("<auth xmlns='{}' mechanism='PLAIN'>{b}</auth>", ns::SASL)
    };
    first.send(&plain("wrong")).await;
    // The failure is recorded before its answer is held back by the delay.
    assert_eq!(
        metric_becomes(&srv, "auth_failures_total", 1.0, 20).await,
        1.0
    );
    second.send(&plain("pw")).await;
    let ok = second.element().await;
    assert!(ok.is("success", ns::SASL), "{ok:?}");
    assert_eq!(
        srv.metric("rate_limited_total"),
        1.0,
        "the second attempt waited"
    );
    let f = first.element().await;
    assert!(f.child("not-authorized", ns::SASL).is_some(), "{f:?}");
    assert_eq!(srv.metric("auth_failures_total"), 1.0);
    srv.stop();
}

/// `starling adduser` and `passwd` work while the server runs (it holds
/// the store), through its control socket: the new account logs in at
/// once, and a password change ends the account's sessions and makes the
/// old password useless.
#[tokio::test]
async fn adduser_and_passwd_on_a_running_server() {
    let srv = Binary::start(&[("jane", "pw")], "");
    let (ok, _, err) = srv.cli_input(&["adduser", "zed@example.org"], "zed pass\n");
    assert!(ok && err.contains("running server"), "{err}");
    let (ok, _, err) = srv.cli_input(&["adduser", "zed@example.org"], "again\n");
    assert!(!ok && err.contains("exists"), "{err}");
    let mut zed = Client::connect(srv.addr).await;
    zed.open(common::DOMAIN).await;
    // The password is the whole line, spaces and all.
    assert!(zed.plain("zed", "zed pass").await.is("success", ns::SASL));
    zed.bind(Some("r")).await;

    let (ok, _, err) = srv.cli_input(&["passwd", "zed@example.org"], "fresh\n");
    assert!(ok && err.contains("password changed"), "{err}");
    assert_eq!(zed.stream_error().await, "reset");
    for (pass, works) in [("zed pass", false), ("fresh", true)] {
        let mut c = Client::connect(srv.addr).await;
        c.open(common::DOMAIN).await;
        let r = c.plain("zed", pass).await;
        assert_eq!(r.is("success", ns::SASL), works, "{pass}: {r:?}");
    }
    // The running server names what is wrong, as the offline command does.
    let (ok, _, err) = srv.cli_input(&["passwd", "nobody@example.org"], "x\n");
    assert!(!ok && err.contains("no account"), "{err}");
    let (ok, _, err) = srv.cli_input(&["adduser", "bob@elsewhere.org"], "x\n");
    assert!(!ok && err.contains("elsewhere.org"), "{err}");
    srv.stop();
}
