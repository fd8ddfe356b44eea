//! The HTTP API's edges against the in-process server: rate limits, CORS,
//! bad bodies, and what an XMPP republish does to a status (an edit).
//! The client flows themselves are tested with Mastodon.py
//! (`tests/interop/mastodon_py.py`).

mod common;

use std::net::SocketAddr;

use common::binary::Binary;
use common::http::{http, token_with};
use common::{Client, TestServer};

const ACCOUNTS: [(&str, &str); 1] = [("jane", "secret")];

async fn token(addr: SocketAddr) -> String {
    token_with(addr, "read+write").await
}

#[tokio::test]
async fn requests_over_the_budget_get_429_per_address_and_per_token() {
    let srv = TestServer::start(&ACCOUNTS, |c| {
        c.http_listen = vec!["127.0.0.1:0".parse().unwrap()];
        c.web.requests_per_window = 4;
        c.limits.limit_loopback = true;
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let addr = srv.http_addr.unwrap();
    for _ in 0..4 {
        assert_eq!(
            http(addr, "GET", "/api/v1/instance", &[], b"").await.status,
            200
        );
    }
    let r = http(addr, "GET", "/api/v1/instance", &[], b"").await;
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["error"], "Too many requests");
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=300).contains(&wait), "{wait}");
    // The feeds and the page spend the same address budget: a poller
    // cannot read the store without bound either.
    let feed = http(addr, "GET", "/users/jane/feed.atom", &[], b"").await;
    assert_eq!(feed.status, 429);
    assert_eq!(feed.json()["error"], "Too many requests");
    assert!(feed.header("retry-after").is_some());
    assert!(feed.header("access-control-allow-origin").is_none());
    let page = http(addr, "GET", "/users/jane", &[], b"").await;
    assert_eq!(page.status, 429);
    assert!(page.body.contains("Too many requests"), "{}", page.body);
    assert!(page.header("content-security-policy").is_some());
    assert!(page.header("retry-after").is_some());
    let metrics = http(srv.metrics.unwrap(), "GET", "/metrics", &[], b"").await;
    for line in [
        r#"starling_http_requests_total{route="/api/v1/instance",status="200"} 4"#,
        r#"starling_http_requests_total{route="/users/{localpart}/feed.atom",status="429"} 1"#,
        r#"starling_http_requests_total{route="/users/{localpart}",status="429"} 1"#,
    ] {
        assert!(metrics.body.contains(line), "{line} in {}", metrics.body);
    }
}

#[tokio::test]
async fn the_api_allows_any_origin_and_the_login_form_none() {
    let srv = TestServer::start(&ACCOUNTS, |c| {
        c.http_listen = vec!["127.0.0.1:0".parse().unwrap()];
    })
    .await;
    let addr = srv.http_addr.unwrap();
    let pre = http(
        addr,
        "OPTIONS",
        "/api/v1/statuses",
        &[
            "Origin: https://app.example",
            "Access-Control-Request-Method: POST",
        ],
        b"",
    )
    .await;
    assert_eq!(pre.status, 204);
    assert_eq!(
        pre.header("access-control-allow-origin").as_deref(),
        Some("*")
    );
    assert!(pre
        .header("access-control-allow-headers")
        .unwrap()
        .contains("Authorization"));
    assert_eq!(pre.header("access-control-allow-credentials"), None);
    let get = http(
        addr,
        "GET",
        "/api/v1/instance",
        &["Origin: https://app.example"],
        b"",
    )
    .await;
    assert_eq!(
        get.header("access-control-allow-origin").as_deref(),
        Some("*")
    );
    let app = http(
        addr,
        "POST",
        "/api/v1/apps",
        &["Content-Type: application/json"],
        br#"{"client_name":"t","redirect_uris":"urn:ietf:wg:oauth:2.0:oob"}"#,
    )
    .await
    .json();
    let form = http(addr, "GET", &format!("/oauth/authorize?client_id={}&redirect_uri=urn:ietf:wg:oauth:2.0:oob&response_type=code", app["client_id"].as_str().unwrap()), &["Origin: https://evil.example"], b"").await;
    assert_eq!(form.status, 200);
    assert_eq!(
        form.header("access-control-allow-origin"),
        None,
        "the cookie-protected form is same-origin only"
    );
    assert!(form.header("set-cookie").unwrap().contains("HttpOnly"));
}

#[tokio::test]
async fn bad_bodies_and_tokens_get_json_errors() {
    let srv = TestServer::start(&ACCOUNTS, |c| {
        c.http_listen = vec!["127.0.0.1:0".parse().unwrap()];
        c.web.max_body_bytes = 1024;
    })
    .await;
    let addr = srv.http_addr.unwrap();
    let t = token(addr).await;
    let auth = format!("Authorization: Bearer {t}");
    let r = http(
        addr,
        "POST",
        "/api/v1/statuses",
        &[&auth, "Content-Type: application/json"],
        b"{\"status\": ",
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .contains("malformed JSON"));
    let big = format!("status={}", "x".repeat(2000));
    let r = http(
        addr,
        "POST",
        "/api/v1/statuses",
        &[&auth, "Content-Type: application/x-www-form-urlencoded"],
        big.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 413);
    assert!(r.json()["error"].is_string());
    let r = http(
        addr,
        "GET",
        "/api/v1/accounts/verify_credentials",
        &["Authorization: Bearer nope"],
        b"",
    )
    .await;
    assert_eq!(r.status, 401);
    assert!(r.json()["error"].is_string());
    let r = http(
        addr,
        "GET",
        "/api/v1/timelines/home?limit=ten",
        &[&auth],
        b"",
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.json()["error"].as_str().unwrap().contains("limit"));
    let r = http(
        addr,
        "POST",
        "/oauth/token",
        &["Content-Type: application/x-www-form-urlencoded"],
        b"grant_type=password&client_id=x&client_secret=y",
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], "invalid_client");
    // A token without the write scope cannot post.
    let read_only = token_with(addr, "read").await;
    let ro = format!("Authorization: Bearer {read_only}");
    let r = http(
        addr,
        "POST",
        "/api/v1/statuses",
        &[&ro, "Content-Type: application/x-www-form-urlencoded"],
        b"status=hi",
    )
    .await;
    assert_eq!(r.status, 403);
}

#[tokio::test]
async fn an_xmpp_republish_is_an_edit_of_the_same_status() {
    let srv = TestServer::start(&ACCOUNTS, |c| {
        c.allow_plaintext_auth = true;
        c.http_listen = vec!["127.0.0.1:0".parse().unwrap()];
    })
    .await;
    let addr = srv.http_addr.unwrap();
    let t = token(addr).await;
    let auth = format!("Authorization: Bearer {t}");
    let (mut jane, _) = Client::login_plain(srv.addr, "jane", "secret", "r").await;
    let publish = |id: &str, title: &str| {
        format!(
            "<iq type='set' id='p-{title}'><pubsub xmlns='http://jabber.org/protocol/pubsub'>\
             <publish node='urn:xmpp:microblog:0'><item id='{id}'>\
             <entry xmlns='http://www.w3.org/2005/Atom'><title>{title}</title></entry>\
             </item></publish></pubsub></iq>"
        )
    };
    for (id, title) in [("a", "first"), ("b", "second")] {
        let r = jane.iq(&publish(id, title)).await;
        assert_eq!(r.attr("type"), Some("result"));
    }
    let before = http(
        addr,
        "GET",
        "/api/v1/accounts/jane@example.org/statuses",
        &[&auth],
        b"",
    )
    .await
    .json();
    let ids: Vec<&str> = before
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    let a_id = ids[1].to_owned();
    assert!(before[1]["edited_at"].is_null());
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let r = jane.iq(&publish("a", "first, edited")).await;
    assert_eq!(r.attr("type"), Some("result"));
    let after = http(
        addr,
        "GET",
        "/api/v1/accounts/jane@example.org/statuses",
        &[&auth],
        b"",
    )
    .await
    .json();
    let after = after.as_array().unwrap();
    assert_eq!(
        after[1]["id"],
        a_id.as_str(),
        "the edit keeps its id and its place (first-publish order)"
    );
    assert_eq!(after[1]["content"], "<p>first, edited</p>");
    assert!(after[1]["edited_at"].is_string());
    let one = http(addr, "GET", &format!("/api/v1/statuses/{a_id}"), &[], b"").await;
    assert_eq!(one.status, 404, "a presence-model post is not public");
    let one = http(
        addr,
        "GET",
        &format!("/api/v1/statuses/{a_id}"),
        &[&auth],
        b"",
    )
    .await;
    assert_eq!(one.json()["content"], "<p>first, edited</p>");
}

/// `starling token` on a running server (through its control socket)
/// prints a token the API takes; deleting the account revokes it.
#[tokio::test]
async fn personal_tokens_from_the_running_binary() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let srv = Binary::start(
        &[("jane", "secret")],
        &format!("http_listen = ['127.0.0.1:{port}']"),
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let (ok, out, err) = srv.cli_output(&["token", "jane@example.org"]);
    assert!(ok, "{err}");
    let token = out.trim();
    assert!(token.len() >= 40, "{out:?}");
    let auth = format!("Authorization: Bearer {token}");
    let me = http(
        addr,
        "GET",
        "/api/v1/accounts/verify_credentials",
        &[&auth],
        b"",
    )
    .await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.json()["acct"], "jane");
    let (ok, _, err) = srv.cli_output(&["token", "nobody@example.org"]);
    assert!(!ok && err.contains("no account"), "{err}");
    let (ok, err) = srv.cli(&["deluser", "jane@example.org"]);
    assert!(ok, "{err}");
    let gone = http(
        addr,
        "GET",
        "/api/v1/accounts/verify_credentials",
        &[&auth],
        b"",
    )
    .await;
    assert_eq!(gone.status, 401, "a deleted account's tokens go with it");
    srv.stop();
}

/// The gauge `starling_api_streams`, read from the metrics endpoint.
async fn open_streams(metrics: SocketAddr) -> f64 {
    let r = http(metrics, "GET", "/metrics", &[], b"").await;
    r.body
        .lines()
        .find_map(|l| l.strip_prefix("starling_api_streams "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no starling_api_streams in {}", r.body))
}

#[tokio::test]
async fn user_streams_share_one_posts_events_and_end_with_their_client() {
    let srv = TestServer::start(&ACCOUNTS, |c| {
        c.http_listen = vec!["127.0.0.1:0".parse().unwrap()];
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let (addr, metrics) = (srv.http_addr.unwrap(), srv.metrics.unwrap());
    let auth = format!("Authorization: Bearer {}", token(addr).await);
    // Two streams of the account: one post reaches both (its events are
    // made once and shared), as do deletes.
    let mut streams = Vec::new();
    for _ in 0..2 {
        let mut s = common::http::EventStream::open(addr, "/api/v1/streaming/user", &[&auth]).await;
        s.until(":)\n").await;
        streams.push(s);
    }
    assert_eq!(open_streams(metrics).await, 2.0);
    let form = "Content-Type: application/x-www-form-urlencoded";
    let posted = http(
        addr,
        "POST",
        "/api/v1/statuses",
        &[&auth, form],
        b"status=shared+once",
    )
    .await;
    assert_eq!(posted.status, 200, "{}", posted.body);
    let id = posted.json()["id"].as_str().unwrap().to_owned();
    for s in &mut streams {
        s.until("event: update\n").await;
        let data = s.until("\n\n").await;
        let status: serde_json::Value =
            serde_json::from_str(data.strip_prefix("data: ").unwrap().trim_end()).unwrap();
        assert_eq!(status["id"], id.as_str());
        assert!(status["content"].as_str().unwrap().contains("shared once"));
    }
    let path = format!("/api/v1/statuses/{id}");
    assert_eq!(http(addr, "DELETE", &path, &[&auth], b"").await.status, 200);
    for s in &mut streams {
        s.until("event: delete\n").await;
        assert_eq!(s.until("\n\n").await, format!("data: {id}\n\n"));
    }
    // A client that goes ends its stream: the fan-out session is detached.
    drop(streams.pop());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while open_streams(metrics).await != 1.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the stream outlived its client"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
