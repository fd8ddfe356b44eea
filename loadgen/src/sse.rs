//! Followers over the Mastodon-compatible streaming API (server-sent
//! events): `GET /api/v1/streaming/user` with the account's token.
//!
//! As for WebSocket, the session's code stays the same: a pump task reads
//! the event stream and writes each `update` into an in-memory pipe as the
//! pubsub event message an XMPP follower would have received (only the
//! item id, which names the post and its schedule), so the live loop
//! records it the same way. What the session writes (its presence) goes
//! nowhere: the stream is one-way. The pump's parsing is loadgen's CPU.
//!
//! Tokens are seeded with the accounts (`loadgen-sse-USER`, stored hashed
//! like any token), so only servers loadgen seeds can be targets.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use sha2::Digest;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream};
use tokio::sync::oneshot;

use crate::session::{ReadHalf, SessionError, WriteHalf};

/// The pipe between a session and its pump.
const PIPE: usize = 64 * 1024;
/// Longest line read from the stream (a status is well under it).
const MAX_LINE: usize = 256 * 1024;

/// The token of `user`'s seeded account.
pub fn token_for(user: &str) -> String {
    format!("loadgen-sse-{user}")
}

/// What the store keeps of [`token_for`].
pub fn token_hash(user: &str) -> [u8; 32] {
    sha2::Sha256::digest(token_for(user).as_bytes()).into()
}

/// Opens `user`'s stream on `addr` (from `source`, if given) and returns
/// the session's ends of a byte stream that carries its updates as XMPP.
pub async fn connect(
    addr: SocketAddr,
    source: Option<IpAddr>,
    user: &str,
) -> Result<(ReadHalf, WriteHalf), SessionError> {
    let socket = crate::session::socket_for(addr, source)?;
    let mut tcp = socket.connect(addr).await.map_err(SessionError::Connect)?;
    let _ = tcp.set_nodelay(true);
    let req = format!(
        "GET /api/v1/streaming/user HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
         Accept: text/event-stream\r\n\r\n",
        token_for(user)
    );
    tcp.write_all(req.as_bytes()).await?;
    let mut rd = BufReader::with_capacity(8 * 1024, tcp);
    let mut line = String::new();
    rd.read_line(&mut line).await?;
    if line.get(9..12) != Some("200") {
        return Err(SessionError::Auth(format!(
            "the stream answered {}",
            line.trim()
        )));
    }
    // The headers; the body is chunked, which the pump reads through.
    loop {
        line.clear();
        if rd.read_line(&mut line).await? == 0 {
            return Err(SessionError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        if line.trim_end().is_empty() {
            break;
        }
    }
    let (mine, mut theirs) = tokio::io::duplex(PIPE);
    // The session's framer expects a stream header first.
    theirs
        .write_all(b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")
        .await?;
    let (hangup, gone) = oneshot::channel();
    tokio::spawn(pump(rd, theirs, gone));
    let (r, w) = tokio::io::split(mine);
    let _ = w; // presence written by the session goes nowhere
    Ok((Box::new(r), Box::new(Hangup(hangup))))
}

/// The session's write end: takes its writes and drops them (the stream is
/// one-way); when the session ends and drops it, the pump closes the
/// connection. Without it an idle stream's pump would read heartbeats
/// for ever, and the next repetition would find the last one's streams
/// still open on the server.
struct Hangup(#[allow(dead_code)] oneshot::Sender<()>);

impl tokio::io::AsyncWrite for Hangup {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The item id in an `update` event's status (`…;item=ID"` in its `uri`;
/// the account has a `uri` too, without an item).
pub fn item_of(data: &str) -> Option<&str> {
    data.match_indices("\"uri\":\"").find_map(|(at, key)| {
        let rest = &data[at + key.len()..];
        let uri = &rest[..rest.find('"')?];
        let item = uri.rsplit_once(";item=")?.1;
        (!item.is_empty()).then_some(item)
    })
}

/// Reads the chunked event stream; each update becomes a pubsub event.
/// Ends when the server closes, or when the session is gone (`gone`).
async fn pump(
    mut rd: BufReader<tokio::net::TcpStream>,
    mut out: DuplexStream,
    mut gone: oneshot::Receiver<()>,
) {
    let mut line = String::new();
    let mut event = String::new();
    loop {
        line.clear();
        let read = tokio::select! {
            r = rd.read_line(&mut line) => r,
            _ = &mut gone => return,
        };
        match read {
            Ok(0) | Err(_) => break,
            Ok(_) if line.len() > MAX_LINE => break,
            Ok(_) => {}
        }
        let l = line.trim_end_matches(['\r', '\n']);
        // Chunk sizes are lines of hex digits; events never look like one
        // (they start with a field name or a colon).
        if let Some(name) = l.strip_prefix("event: ") {
            event = name.to_owned();
        } else if let Some(data) = l.strip_prefix("data: ") {
            if event == "update" {
                if let Some(item) = item_of(data) {
                    let msg = format!(
                        "<message type='headline'><event xmlns='http://jabber.org/protocol/pubsub#event'>\
                         <items node='urn:xmpp:microblog:0'><item id='{item}'/></items></event></message>"
                    );
                    if out.write_all(msg.as_bytes()).await.is_err() {
                        break;
                    }
                }
            }
            event.clear();
        }
    }
    let _ = out.write_all(b"</stream:stream>").await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn a_session_that_ends_closes_its_stream() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let _ = s.read(&mut buf).await.unwrap();
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n:)\n")
                .await
                .unwrap();
            // An idle stream: the server waits for the client to leave.
            tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut buf))
                .await
                .map(|r| r.unwrap())
        });
        let (r, w) = connect(addr, None, "u1").await.unwrap();
        drop((r, w));
        assert_eq!(server.await.unwrap(), Ok(0), "the connection was closed");
    }

    #[test]
    fn the_item_id_comes_from_the_uri() {
        let data = r#"{"account":{"uri":"xmpp:u1@loadgen.localhost"},"id":"1","uri":"xmpp:u1@loadgen.localhost?;node=urn:xmpp:microblog:0;item=p3-1-99","url":"x"}"#;
        assert_eq!(item_of(data), Some("p3-1-99"));
        assert_eq!(item_of(r#"{"uri":"tag:x"}"#), None);
        assert_eq!(item_of("{}"), None);
        assert_eq!(token_hash("u1"), token_hash("u1"));
        assert_ne!(token_hash("u1"), token_hash("u2"));
    }
}
