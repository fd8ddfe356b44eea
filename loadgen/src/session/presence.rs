//! Becoming available (initial presence, and waiting for the server to
//! have processed it), and answering what a server asks a session: caps
//! disco#info, roster pushes, anything else refused. Every value that came
//! from the server goes out escaped, through `stanza::ser`.

use stanza::{Element, Event, Kind, Stanza};
use tokio::io::AsyncWriteExt;

use super::{Conn, SessionError};

/// The disco#info this client answers with: a client identity, caps, and
/// `+notify` for the microblog node.
pub fn caps_query() -> String {
    format!(
        "<query xmlns='http://jabber.org/protocol/disco#info'>\
         <identity category='client' type='bot' name='loadgen'/>\
         <feature var='http://jabber.org/protocol/caps'/>\
         <feature var='http://jabber.org/protocol/disco#info'/>\
         <feature var='{}+notify'/></query>",
        stanza::ns::MICROBLOG
    )
}

/// Available presence with our caps.
pub(super) fn initial_presence() -> String {
    format!(
        "<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' \
         node='https://starling.example/loadgen' ver='{}'/></presence>",
        caps_ver()
    )
}

/// Sends initial presence and waits until the server has processed it:
/// its copy comes back to this resource (RFC 6121 §4.2.2). Until then a
/// server may not count the session available, and a post to the bare JID
/// would rightly not reach it, so a run expects deliveries only from
/// sessions past this point. Requests meanwhile (caps disco) are
/// answered. Returns the server's stanzas handled, for XEP-0198.
pub async fn available(c: &mut Conn) -> Result<u32, SessionError> {
    if c.jid.ends_with("/sse") {
        // A streaming-API follower: its stream is available from the
        // moment the server answered the request (crate::sse).
        return Ok(0);
    }
    c.wr.write_all(initial_presence().as_bytes()).await?;
    let mut handled = 0u32;
    loop {
        let Event::Stanza(b) = c.read_event("own presence").await? else {
            continue;
        };
        let st = Stanza::from_framed(b).map_err(|e| SessionError::Xml(e.to_string()))?;
        if st.kind() == Kind::Other {
            if st.bytes().starts_with(b"<stream:error") {
                return Err(SessionError::Stream("error".into()));
            }
            continue;
        }
        handled = handled.wrapping_add(1);
        match (st.kind(), st.type_().as_deref()) {
            (Kind::Presence, None) if st.from().as_deref() == Some(c.jid.as_str()) => {
                return Ok(handled);
            }
            (Kind::Iq, Some("get" | "set")) => {
                if let Some(answer) = answer_request(&st) {
                    c.wr.write_all(&answer).await?;
                }
            }
            _ => {}
        }
    }
}

/// An empty iq result, `id` and `to` escaped (they come from the server).
pub fn iq_result(id: &str, to: Option<&str>) -> bytes::Bytes {
    stanza::ser::iq_result(id, None, to, None)
}

/// Our disco#info as the result of request `id` (for `node`, if asked).
pub fn disco_result(id: &str, to: Option<&str>, node: Option<&str>) -> bytes::Bytes {
    let mut q = stanza::ser::XmlWriter::with_capacity(512);
    q.open("query")
        .attr("xmlns", "http://jabber.org/protocol/disco#info")
        .attr_opt("node", node)
        .close_start();
    let inner = caps_query();
    let body = inner
        .split_once('>')
        .map(|(_, rest)| rest.trim_end_matches("</query>"))
        .unwrap_or_default();
    q.raw(body.as_bytes()).end("query");
    stanza::ser::iq_result(id, None, to, Some(q.as_bytes()))
}

/// The XEP-0115 `ver` of [`caps_query`].
pub fn caps_ver() -> String {
    server::caps::verification_string_hash(
        &Element::parse(&caps_query()).expect("the caps query is well-formed"),
    )
}

/// The answer to an iq get or set from the server: our disco#info (for
/// the node asked, if any), an empty result to a set (roster pushes and
/// the like), `service-unavailable` to any other get.
pub(super) fn answer_request(st: &Stanza) -> Option<bytes::Bytes> {
    let id = st.id().unwrap_or_default().into_owned();
    let to = st.from().map(|f| f.into_owned());
    match st.type_().as_deref() {
        Some("set") => Some(iq_result(&id, None)),
        Some("get") => {
            let node = Element::from_stanza(st.bytes()).ok().and_then(|e| {
                e.first_element()
                    .filter(|q| q.ns == "http://jabber.org/protocol/disco#info")
                    .map(|q| q.attr("node").map(str::to_owned))
            });
            Some(match node {
                Some(node) => disco_result(&id, to.as_deref(), node.as_deref()),
                None => stanza::ser::stanza_error(
                    "iq",
                    Some(&id),
                    None,
                    to.as_deref(),
                    &stanza::ser::StanzaError::new(
                        stanza::StanzaErrorCondition::ServiceUnavailable,
                    ),
                ),
            })
        }
        _ => None,
    }
}
