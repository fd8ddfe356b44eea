//! XMPP over WebSocket (RFC 7395) for loadgen's sessions.
//!
//! A session speaks the same byte stream whatever carries it: a pump task
//! sits between the session's end of an in-memory pipe and the WebSocket.
//! Outgoing bytes are cut into elements by a framer, one message each (the
//! stream header becomes `<open/>`, its end `<close/>`); incoming messages
//! become stream bytes again (`<open/>` a stream header). The pump costs
//! loadgen a copy per stanza, which is counted in loadgen's own CPU, not
//! the server's.

use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use stanza::{Event, Framer};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

use crate::session::{ReadHalf, SessionError, WriteHalf};

const FRAMING: &str = "urn:ietf:params:xml:ns:xmpp-framing";
/// The pipe between a session and its pump.
const PIPE: usize = 64 * 1024;

/// Connects to `ws://addr/xmpp-websocket` (from `source`, if given) and
/// returns the session's ends of the byte stream.
pub async fn connect(
    addr: SocketAddr,
    source: Option<std::net::IpAddr>,
    limits: stanza::Limits,
) -> Result<(ReadHalf, WriteHalf), SessionError> {
    let socket = crate::session::socket_for(addr, source)?;
    let tcp = socket.connect(addr).await.map_err(SessionError::Connect)?;
    let _ = tcp.set_nodelay(true);
    let mut req = format!("ws://{addr}/xmpp-websocket")
        .into_client_request()
        .map_err(|e| SessionError::Negotiation(e.to_string()))?;
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("xmpp"));
    // Small buffers: thousands of sessions share one process.
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0);
    let (ws, _) = tokio_tungstenite::client_async_with_config(req, tcp, Some(config))
        .await
        .map_err(|e| SessionError::Negotiation(format!("WebSocket upgrade: {e}")))?;
    let (mine, theirs) = tokio::io::duplex(PIPE);
    tokio::spawn(pump(ws, theirs, limits));
    let (rd, wr) = tokio::io::split(mine);
    Ok((Box::new(rd), Box::new(wr)))
}

/// `<open/>` read back as the stream header the session expects.
fn header_for(open: &str) -> String {
    let attr = |name: &str| {
        let pat = format!("{name}='");
        let alt = format!("{name}=\"");
        open.find(&pat)
            .map(|i| i + pat.len())
            .or_else(|| open.find(&alt).map(|i| i + alt.len()))
            .and_then(|s| {
                open[s..]
                    .find(['\'', '"'])
                    .map(|e| open[s..s + e].to_owned())
            })
    };
    format!(
        "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' \
         from='{}' id='{}' version='1.0'>",
        attr("from").unwrap_or_default(),
        attr("id").unwrap_or_default()
    )
}

async fn pump<S>(
    ws: tokio_tungstenite::WebSocketStream<S>,
    mut pipe: DuplexStream,
    limits: stanza::Limits,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut tx, mut rx) = ws.split();
    let mut out = Framer::new(limits);
    let mut buf = bytes::BytesMut::with_capacity(8192);
    loop {
        tokio::select! {
            m = rx.next() => {
                let text = match m {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                    _ => break,
                };
                let t = text.as_str();
                let bytes = if t.starts_with("<open") {
                    header_for(t)
                } else if t.starts_with("<close") {
                    "</stream:stream>".to_owned()
                } else {
                    t.to_owned()
                };
                if pipe.write_all(bytes.as_bytes()).await.is_err() {
                    break;
                }
            }
            n = pipe.read_buf(&mut buf) => {
                match n {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                // A new stream header starts a new document.
                if buf.starts_with(b"<?xml") || buf.starts_with(b"<stream:stream") {
                    out.reset();
                }
                out.feed(&buf);
                buf.clear();
                let mut ok = true;
                while let Ok(Some(ev)) = out.next() {
                    let msg = match ev {
                        Event::StreamOpen(h) => {
                            let mut w = stanza::ser::XmlWriter::with_capacity(128);
                            w.open("open")
                                .attr("xmlns", FRAMING)
                                .attr("to", h.attr("to").unwrap_or_default())
                                .attr("version", "1.0")
                                .close_empty();
                            String::from_utf8_lossy(w.as_bytes()).into_owned()
                        }
                        Event::StreamClose => format!("<close xmlns='{FRAMING}'/>"),
                        Event::Stanza(b) => match String::from_utf8(b.to_vec()) {
                            Ok(s) => s,
                            Err(_) => continue,
                        },
                    };
                    if tx.feed(Message::text(msg)).await.is_err() {
                        ok = false;
                        break;
                    }
                }
                if !ok || tx.flush().await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = tx.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_becomes_a_stream_header() {
        let h = header_for(
            "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' from='example.org' id='ab12' version='1.0'/>",
        );
        let mut f = Framer::new(stanza::Limits::default());
        f.feed(h.as_bytes());
        let Ok(Some(Event::StreamOpen(hdr))) = f.next() else {
            panic!("{h}")
        };
        assert_eq!(hdr.attr("from"), Some("example.org"));
        assert_eq!(hdr.attr("id"), Some("ab12"));
    }
}
