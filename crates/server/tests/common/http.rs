//! HTTP/1.1 by hand for the web tests: one request per connection, the
//! reply's status, head and body.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// One HTTP/1.1 request; `extra` are header lines.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    extra: &[&str],
    body: &[u8],
) -> Reply {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for h in extra {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(req.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let out = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    // Chunked bodies (axum's JSON is not) are not expected here.
    Reply {
        status: head[9..12].parse().unwrap(),
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

/// A token for jane from a new app with `scopes` (password grant).
pub async fn token_with(addr: SocketAddr, scopes: &str) -> String {
    let form = format!("client_name=t&redirect_uris=urn:ietf:wg:oauth:2.0:oob&scopes={scopes}");
    let form_type = "Content-Type: application/x-www-form-urlencoded";
    let app = http(addr, "POST", "/api/v1/apps", &[form_type], form.as_bytes())
        .await
        .json();
    let body = format!(
        "grant_type=password&username=jane&password=secret&scope={scopes}&client_id={}&client_secret={}",
        app["client_id"].as_str().unwrap(),
        app["client_secret"].as_str().unwrap()
    );
    let t = http(addr, "POST", "/oauth/token", &[form_type], body.as_bytes()).await;
    assert_eq!(t.status, 200, "{}", t.body);
    t.json()["access_token"].as_str().unwrap().to_owned()
}

impl Reply {
    /// Every value of a header (`Set-Cookie` comes several times).
    pub fn headers(&self, name: &str) -> Vec<String> {
        self.head
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
            })
            .collect()
    }
}

/// An open server-sent-events response, read as text as it arrives.
pub struct EventStream {
    stream: TcpStream,
    /// Everything read so far (chunk-size lines included).
    pub text: String,
}

impl EventStream {
    /// `GET path` with `extra` header lines; returns once the head is in.
    pub async fn open(addr: SocketAddr, path: &str, extra: &[&str]) -> Self {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n");
        for h in extra {
            req.push_str(h);
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut s = Self {
            stream,
            text: String::new(),
        };
        let head = s.until("\r\n\r\n").await;
        assert!(head.starts_with("HTTP/1.1 200"), "an event stream: {head}");
        assert!(head.contains("text/event-stream"), "{head}");
        s
    }

    /// Reads until `text` has arrived since the last [`Self::until`], for
    /// at most 10 s; returns what came up to and including it.
    pub async fn until(&mut self, want: &str) -> String {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if let Some(at) = self.text.find(want) {
                let rest = self.text.split_off(at + want.len());
                return std::mem::replace(&mut self.text, rest);
            }
            let mut buf = [0u8; 4096];
            let n = tokio::time::timeout_at(deadline, self.stream.read(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("no {want:?} within 10 s; got {:?}", self.text))
                .unwrap();
            assert!(n > 0, "the stream ended before {want:?}: {:?}", self.text);
            self.text.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }
}
