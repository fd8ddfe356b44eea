//! What both directions of a server stream share on the wire: the framed
//! connection (plain or TLS, boxed so STARTTLS keeps one type), reading
//! the next event, and the header checks.

use bytes::Bytes;
use stanza::{Event, StreamErrorCondition};

use crate::stream::tcp::{Io, Tcp};
use crate::stream::Transport;

/// A server stream's connection, before or after STARTTLS.
pub(crate) type Conn = Tcp<Box<dyn Io>>;

/// Why reading stopped.
#[derive(Debug)]
pub(crate) enum ReadEnd {
    /// The input broke a rule: answer with this stream error.
    Error(StreamErrorCondition),
    /// The peer closed the stream or the connection.
    Closed,
}

/// The next event, reading as needed.
pub(crate) async fn next_event(conn: &mut Conn) -> Result<Event, ReadEnd> {
    loop {
        match conn.next_event() {
            Ok(Some(e)) => return Ok(e),
            Ok(None) => {}
            Err(cond) => return Err(ReadEnd::Error(cond)),
        }
        match conn.fill().await {
            Ok(true) => {}
            Ok(false) | Err(_) => return Err(ReadEnd::Closed),
        }
    }
}

/// The header's name and stream namespace (RFC 6120 §4.8). The content
/// namespace is checked by the negotiation, which names its own error.
pub(crate) use crate::stream::tcp::check_stream_name as check_header;

/// A stanza from a client stream as it goes on a server stream: an
/// explicit `jabber:client` namespace (WebSocket clients write one on every
/// stanza) becomes `jabber:server` (RFC 6120 §4.8.3); and back the other
/// way for a stanza from a server stream to a client.
pub(crate) fn renamespace(bytes: &Bytes, from_ns: &str, to_ns: &str) -> Bytes {
    let end = memchr_gt(bytes);
    let head = &bytes[..end];
    for quote in [b'\'', b'"'] {
        let decl = format!("xmlns={q}{from_ns}{q}", q = quote as char);
        if let Some(at) = find(head, decl.as_bytes()) {
            let mut out = Vec::with_capacity(bytes.len() + to_ns.len());
            out.extend_from_slice(&bytes[..at]);
            out.extend_from_slice(format!("xmlns={q}{to_ns}{q}", q = quote as char).as_bytes());
            out.extend_from_slice(&bytes[at + decl.len()..]);
            return Bytes::from(out);
        }
    }
    bytes.clone()
}

/// The end of the start tag (or the whole input).
fn memchr_gt(b: &[u8]) -> usize {
    b.iter().position(|&c| c == b'>').unwrap_or(b.len())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use stanza::ns;

    #[test]
    fn only_the_start_tags_client_namespace_is_renamed() {
        let b = Bytes::from_static(
            b"<message xmlns='jabber:client' to='a@b'><body>xmlns='jabber:client'</body></message>",
        );
        let out = renamespace(&b, ns::CLIENT, ns::SERVER);
        assert_eq!(
            &out[..],
            b"<message xmlns='jabber:server' to='a@b'><body>xmlns='jabber:client'</body></message>"
        );
        let plain = Bytes::from_static(b"<message to='a@b'/>");
        assert_eq!(renamespace(&plain, ns::CLIENT, ns::SERVER), plain);
    }
}
