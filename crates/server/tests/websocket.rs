//! XMPP over WebSocket (RFC 7395) and its discovery (XEP-0156), against
//! the in-process server: a follower on WebSocket gets what a follower on
//! TCP gets.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use common::{stream_ctx, Client, TestServer, DOMAIN};
use futures_util::{SinkExt, StreamExt};
use stanza::{ns, Element};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

const ACCOUNTS: [(&str, &str); 2] = [("jane", "secret"), ("joe", "secret")];
const FRAMING: &str = "urn:ietf:params:xml:ns:xmpp-framing";

/// A server with WebSocket listeners; `trusted`: loopback is a trusted
/// proxy; `require`: encryption is required before authentication.
async fn start(trusted: bool, require: bool) -> (TestServer, SocketAddr) {
    let srv = TestServer::start(&ACCOUNTS, |c| {
        c.allow_plaintext_auth = true;
        c.http_listen = vec!["127.0.0.1:0".parse().unwrap()];
        c.https_listen = vec!["127.0.0.1:0".parse().unwrap()];
        c.require_encryption = require;
        if trusted {
            c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        }
    })
    .await;
    let http = srv.http_addr.expect("an http listener");
    (srv, http)
}

struct Ws<S> {
    ws: WebSocketStream<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Ws<S> {
    async fn send(&mut self, xml: &str) {
        self.ws.send(Message::text(xml)).await.unwrap();
    }

    /// The next text message, as an element; `None` once closed.
    async fn next(&mut self) -> Option<Element> {
        loop {
            let m = tokio::time::timeout(Duration::from_secs(10), self.ws.next())
                .await
                .expect("a message within 10 s");
            match m {
                Some(Ok(Message::Text(t))) => {
                    return Some(Element::parse_in(t.as_str(), &stream_ctx()).unwrap())
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => {}
            }
        }
    }

    async fn expect(&mut self, what: &str, pred: impl Fn(&Element) -> bool) -> Element {
        for _ in 0..16 {
            let e = self
                .next()
                .await
                .unwrap_or_else(|| panic!("closed before {what}"));
            if pred(&e) {
                return e;
            }
        }
        panic!("no {what}");
    }

    async fn open(&mut self) -> Element {
        self.send(&format!(
            "<open xmlns='{FRAMING}' to='{DOMAIN}' version='1.0'/>"
        ))
        .await;
        let open = self.next().await.unwrap();
        assert!(open.is("open", FRAMING), "{open:?}");
        assert_eq!(open.attr("version"), Some("1.0"));
        assert_eq!(open.attr("from"), Some(DOMAIN));
        assert!(open.attr("id").is_some_and(|i| !i.is_empty()));
        let features = self.next().await.unwrap();
        assert!(features.is("features", ns::STREAM), "{features:?}");
        features
    }

    /// The stream error's condition, then the close.
    async fn stream_error(&mut self) -> String {
        let e = self
            .expect("a stream error", |e| e.is("error", ns::STREAM))
            .await;
        let cond = e.first_element().unwrap().name.clone();
        let close = self.next().await;
        assert!(
            close.as_ref().is_none_or(|c| c.is("close", FRAMING)),
            "{close:?}"
        );
        cond
    }

    async fn login(&mut self, user: &str) {
        let f = self.open().await;
        assert!(
            f.child("starttls", ns::TLS).is_none(),
            "no STARTTLS over WebSocket"
        );
        self.login_after_open(user).await;
    }

    async fn login_after_open(&mut self, user: &str) {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0secret"));
        self.send(&format!(
            "<auth xmlns='{}' mechanism='PLAIN'>{auth}</auth>",
            ns::SASL
        ))
        .await;
        let s = self.next().await.unwrap();
        assert!(s.is("success", ns::SASL), "{s:?}");
        let f = self.open().await;
        assert!(f.child("bind", ns::BIND).is_some());
        self.send("<iq type='set' id='b' xmlns='jabber:client'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>web</resource></bind></iq>")
            .await;
        let r = self.expect("the bind", |e| e.attr("id") == Some("b")).await;
        assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    }
}

async fn connect(addr: SocketAddr, protocol: Option<&str>) -> Result<Ws<TcpStream>, u16> {
    let mut req = format!("ws://{addr}/xmpp-websocket")
        .into_client_request()
        .unwrap();
    if let Some(p) = protocol {
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_str(p).unwrap());
    }
    let tcp = TcpStream::connect(addr).await.unwrap();
    match tokio_tungstenite::client_async(req, tcp).await {
        Ok((ws, resp)) => {
            assert_eq!(
                resp.headers()
                    .get("Sec-WebSocket-Protocol")
                    .map(|v| v.to_str().unwrap()),
                Some("xmpp")
            );
            Ok(Ws { ws })
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("{e}"),
    }
}

/// One plain HTTP/1.1 GET; the status and the body.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out.split_once("\r\n\r\n").unwrap().1.to_owned();
    (status, body)
}

#[tokio::test]
async fn the_xmpp_subprotocol_is_required() {
    let (srv, http) = start(true, true).await;
    assert_eq!(connect(http, None).await.err(), Some(400));
    assert_eq!(connect(http, Some("chat")).await.err(), Some(400));
    assert!(connect(http, Some("chat, xmpp")).await.is_ok());
    // A plain GET is not an upgrade: a 400 with a JSON body.
    let (status, body) = get(http, "/xmpp-websocket").await;
    assert_eq!(status, 400);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(v["error"].as_str().unwrap().contains("WebSocket"), "{body}");
    srv.stop().await;
}

#[tokio::test]
async fn discovery_names_the_endpoint() {
    let (srv, http) = start(true, true).await;
    let (status, xml) = get(http, "/.well-known/host-meta").await;
    assert_eq!(status, 200);
    let xrd = Element::parse(&xml).unwrap();
    let link = xrd.first_element().unwrap();
    assert_eq!(link.attr("rel"), Some("urn:xmpp:alt-connections:websocket"));
    assert_eq!(
        link.attr("href"),
        Some(format!("ws://{http}/xmpp-websocket").as_str())
    );
    let (status, json) = get(http, "/.well-known/host-meta.json").await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["links"][0]["href"], format!("ws://{http}/xmpp-websocket"));
    srv.stop().await;
}

#[tokio::test]
async fn a_websocket_follower_gets_what_a_tcp_follower_gets() {
    // TCP logs in without TLS here; the WebSocket side is trusted anyway.
    let (srv, http) = start(true, false).await;
    let (mut jane, _) = Client::login_plain(srv.addr, "jane", "secret", "phone").await;
    // An open node, so anyone may follow explicitly.
    let r = jane
        .iq("<iq type='set' id='p0'><pubsub xmlns='http://jabber.org/protocol/pubsub'>\
             <publish node='urn:xmpp:microblog:0'><item id='first'><entry xmlns='http://www.w3.org/2005/Atom'><title>first</title></entry></item></publish>\
             <publish-options><x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>\
             <field var='pubsub#access_model'><value>open</value></field></x></publish-options></pubsub></iq>")
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");

    let mut joe = connect(http, Some("xmpp")).await.unwrap();
    joe.login("joe").await;
    joe.send("<presence xmlns='jabber:client'/>").await;
    joe.send("<iq type='set' id='s1' to='jane@example.org' xmlns='jabber:client'><pubsub xmlns='http://jabber.org/protocol/pubsub'>\
              <subscribe node='urn:xmpp:microblog:0' jid='joe@example.org'/></pubsub></iq>")
        .await;
    let r = joe
        .expect("the subscribe result", |e| e.attr("id") == Some("s1"))
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");

    let r = jane
        .iq("<iq type='set' id='p1'><pubsub xmlns='http://jabber.org/protocol/pubsub'>\
             <publish node='urn:xmpp:microblog:0'><item id='second'><entry xmlns='http://www.w3.org/2005/Atom'><title>second</title></entry></item></publish></pubsub></iq>")
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    let m = joe
        .expect("the live post", |e| {
            e.name == "message"
                && e.child("delay", ns::DELAY).is_none()
                && e.child("event", ns::PUBSUB_EVENT).is_some()
        })
        .await;
    assert_eq!(m.attr("to"), Some("joe@example.org/web"));
    assert_eq!(m.attr("type"), Some("headline"));
    let item = m
        .child("event", ns::PUBSUB_EVENT)
        .and_then(|e| e.child("items", ns::PUBSUB_EVENT))
        .and_then(|i| i.child("item", ns::PUBSUB_EVENT))
        .unwrap();
    assert_eq!(item.attr("id"), Some("second"));

    // A clean close is answered with a close.
    joe.send(&format!("<close xmlns='{FRAMING}'/>")).await;
    let c = joe.expect("the close", |e| e.name == "close").await;
    assert!(c.is("close", FRAMING));
    srv.stop().await;
}

#[tokio::test]
async fn plain_websocket_counts_as_encrypted_only_from_trusted_proxies() {
    for trusted in [false, true] {
        let (srv, http) = start(trusted, true).await;
        let mut ws = connect(http, Some("xmpp")).await.unwrap();
        let f = ws.open().await;
        assert_eq!(
            f.child("mechanisms", ns::SASL).is_some(),
            trusted,
            "trusted {trusted}: {f:?}"
        );
        assert!(f.child("starttls", ns::TLS).is_none(), "{f:?}");
        if trusted {
            ws.login_after_open("joe").await;
        }
        srv.stop().await;
    }
}

#[tokio::test]
async fn bad_frames_get_stream_errors() {
    let (srv, http) = start(true, true).await;
    let cases: [(&str, &str); 4] = [
        ("not xml at all <", "not-well-formed"),
        (
            "<open xmlns='jabber:client' to='example.org' version='1.0'/>",
            "invalid-namespace",
        ),
        (
            "<stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:client' to='example.org' version='1.0'>",
            "invalid-namespace",
        ),
        (
            "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='example.org'/>",
            "unsupported-version",
        ),
    ];
    for (first, want) in cases {
        let mut ws = connect(http, Some("xmpp")).await.unwrap();
        ws.send(first).await;
        // Our side opens first, whatever came: a stream error needs one.
        let open = ws.next().await.unwrap();
        assert!(open.is("open", FRAMING), "{first}: {open:?}");
        assert_eq!(ws.stream_error().await, want, "{first}");
    }
    // A binary frame.
    let mut ws = connect(http, Some("xmpp")).await.unwrap();
    ws.open().await;
    ws.ws
        .send(Message::binary(b"<presence/>".to_vec()))
        .await
        .unwrap();
    assert_eq!(ws.stream_error().await, "bad-format");
    srv.stop().await;
}

#[tokio::test]
async fn wss_uses_the_c2s_certificate() {
    let (srv, _) = start(false, true).await;
    let https = srv.https_addr.expect("an https listener");
    // The certificate exists once the server answers.
    Client::connect(srv.addr).await.open(DOMAIN).await;
    let connector = common::tls_connector(srv.dir.path());
    let tcp = TcpStream::connect(https).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(DOMAIN).unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    let mut req = format!("wss://{DOMAIN}/xmpp-websocket")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("xmpp"));
    let (ws, _) = tokio_tungstenite::client_async(req, tls).await.unwrap();
    let mut ws = Ws { ws };
    // Encrypted: the mechanisms are offered, PLAIN included.
    let f = ws.open().await;
    let mechs: Vec<_> = f
        .child("mechanisms", ns::SASL)
        .unwrap()
        .elements()
        .map(|m| m.text().into_owned())
        .collect();
    assert!(mechs.contains(&"PLAIN".to_owned()), "{mechs:?}");
    srv.stop().await;
}
