//! Rate limits and the metrics endpoint.

mod common;

use common::{error_conditions, Client, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn scrape(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

fn value(text: &str, metric: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(metric)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_count_logins_sessions_publishes_and_limits() {
    let srv = TestServer::start(&[("jane", "secret")], |c| {
        c.allow_plaintext_auth = true;
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        c.limits.publish_burst = 2;
        c.limits.publishes_per_sec = 1;
        c.limits.stanza_burst = 5;
        // 35 pings over the burst at 20/s take 1.75 s: far longer than
        // reading them, however loaded the machine, so some must wait.
        c.limits.stanzas_per_sec = 20;
    })
    .await;
    let addr = srv.metrics.expect("a metrics address");
    let (mut jane, _) = Client::login_plain(srv.addr, "jane", "secret", "a").await;
    // Publishes past the burst get resource-constraint, and nothing is kept.
    let mut refused = 0;
    for i in 0..4 {
        let r = jane
            .iq(&format!(
                "<iq type='set' id='p{i}'><pubsub xmlns='http://jabber.org/protocol/pubsub'>\
                 <publish node='n'><item id='i{i}'><x xmlns='urn:test'/></item></publish></pubsub></iq>"
            ))
            .await;
        if r.attr("type") == Some("error") {
            assert_eq!(error_conditions(&r)[0], "resource-constraint");
            refused += 1;
        }
    }
    assert!(refused >= 1, "a burst of 2 at 1/s refuses some of 4");
    // A flood of pings is slowed down, not refused: every one is answered.
    for i in 0..40 {
        jane.send(&format!(
            "<iq type='get' id='f{i}'><ping xmlns='urn:xmpp:ping'/></iq>"
        ))
        .await;
    }
    for i in 0..40 {
        let r = jane.element().await;
        assert_eq!(r.attr("id"), Some(format!("f{i}").as_str()));
    }
    let text = scrape(addr, "/metrics").await;
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert_eq!(value(&text, "starling_logins_total"), 1.0);
    assert_eq!(value(&text, "starling_sessions"), 1.0);
    assert_eq!(
        value(&text, "starling_publishes_total"),
        f64::from(4 - refused)
    );
    assert!(value(&text, "starling_rate_limited_total{kind=\"publish\"}") >= 1.0);
    assert!(value(&text, "starling_rate_limited_total{kind=\"stanza\"}") >= 1.0);
    assert!(value(&text, "starling_stanzas_in_total") >= 44.0);
    assert!(value(&text, "starling_store_commit_seconds_count") >= 1.0);
    assert!(scrape(addr, "/other").await.starts_with("HTTP/1.1 404"));
    let _ = srv.stop().await;
}

#[tokio::test]
async fn connections_over_the_per_ip_rate_get_policy_violation() {
    let srv = TestServer::start(&[("jane", "secret")], |c| {
        c.allow_plaintext_auth = true;
        c.limits.limit_loopback = true;
        c.limits.connection_burst = 3;
        c.limits.connections_per_ip_per_sec = 1;
    })
    .await;
    let mut kept = Vec::new();
    for _ in 0..3 {
        kept.push(tokio::net::TcpStream::connect(srv.addr).await.unwrap());
    }
    let mut c = Client::connect(srv.addr).await;
    assert_eq!(c.stream_error().await, "policy-violation");
    // The connections admitted before are served as usual.
    let mut first = Client::from_tcp(kept.remove(0));
    first.open(common::DOMAIN).await;
    let _ = srv.stop().await;
}
