//! Connecting (TCP, STARTTLS, or WebSocket), SASL, and binding.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use server::sasl::{Hash, ScramClient};
use stanza::Framer;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::{
    open_stream, read_element, Conn, Login, Mech, ReadHalf, SessionError, WriteHalf, NEGOTIATION,
};
use crate::scram::KeyCache;

/// The TLS client loadgen uses: it encrypts but does not authenticate the
/// server (a load test on loopback meets self-signed certificates), while
/// still checking the handshake's signatures: the server's own client
/// configuration for server-to-server streams, which does the same.
fn tls_connector() -> tokio_rustls::TlsConnector {
    static CONNECTOR: std::sync::OnceLock<tokio_rustls::TlsConnector> = std::sync::OnceLock::new();
    CONNECTOR
        .get_or_init(|| tokio_rustls::TlsConnector::from(server::tls::unverified_client_config()))
        .clone()
}

/// STARTTLS (RFC 6120 §5) on a fresh connection: the first stream, the
/// `<starttls/>` request, `<proceed/>`, then the TLS handshake.
async fn starttls(
    mut tcp: TcpStream,
    domain: &str,
    framer: &mut Framer,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, SessionError> {
    let (mut rd, mut wr) = tcp.split();
    let features = open_stream(&mut rd, &mut wr, framer, domain).await?;
    if features.child("starttls", stanza::ns::TLS).is_none() {
        return Err(SessionError::Tls(
            "the server does not offer STARTTLS".into(),
        ));
    }
    wr.write_all(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        .await?;
    let answer = read_element(&mut rd, framer, "STARTTLS").await?;
    if answer.name != "proceed" {
        return Err(SessionError::Tls(format!(
            "<{}> instead of <proceed/>",
            answer.name
        )));
    }
    let name = rustls::pki_types::ServerName::try_from(domain.to_owned())
        .map_err(|e| SessionError::Tls(format!("{domain}: {e}")))?;
    tls_connector()
        .connect(name, tcp)
        .await
        .map_err(|e| SessionError::Tls(e.to_string()))
}

fn nonce() -> String {
    let b: [u8; 18] = rand::random();
    B64.encode(b).replace(['+', '/'], "x")
}

/// Opens the TCP connection (from the chosen source address).
pub async fn connect(l: &Login) -> Result<Conn, SessionError> {
    // Deliveries are small; generous limits keep history pages readable.
    let limits = stanza::Limits {
        max_stanza_bytes: 4 << 20,
        max_namespace_decls: 100_000,
        ..stanza::Limits::default()
    };
    if let Some(ws) = l.ws {
        if l.tls {
            return Err(SessionError::Negotiation(
                "STARTTLS does not exist over WebSocket".into(),
            ));
        }
        let (rd, wr) = tokio::time::timeout(NEGOTIATION, crate::ws::connect(ws, l.source, limits))
            .await
            .map_err(|_| SessionError::Timeout("connect"))??;
        return Ok(Conn {
            rd,
            wr,
            framer: Framer::new(limits),
            jid: String::new(),
        });
    }
    let socket = super::socket_for(l.addr, l.source)?;
    let tcp: TcpStream = tokio::time::timeout(NEGOTIATION, socket.connect(l.addr))
        .await
        .map_err(|_| SessionError::Timeout("connect"))?
        .map_err(SessionError::Connect)?;
    let _ = tcp.set_nodelay(true);
    let mut framer = Framer::new(limits);
    let (rd, wr): (ReadHalf, WriteHalf) = if l.tls {
        let tls = starttls(tcp, &l.domain, &mut framer).await?;
        let (rd, wr) = tokio::io::split(tls);
        (Box::new(rd), Box::new(wr))
    } else {
        let (rd, wr) = tcp.into_split();
        (Box::new(rd), Box::new(wr))
    };
    Ok(Conn {
        rd,
        wr,
        framer,
        jid: String::new(),
    })
}

/// Connects, authenticates and binds.
pub async fn login(l: &Login, keys: &KeyCache) -> Result<Conn, SessionError> {
    if let Some(http) = l.sse {
        let (rd, wr) =
            tokio::time::timeout(NEGOTIATION, crate::sse::connect(http, l.source, &l.user))
                .await
                .map_err(|_| SessionError::Timeout("connect"))??;
        return Ok(Conn {
            rd,
            wr,
            framer: Framer::new(stanza::Limits::default()),
            jid: format!("{}@{}/sse", l.user, l.domain),
        });
    }
    let c = authenticate(l, keys).await?;
    finish_bind(c, l).await
}

/// Connects and authenticates; the stream restart and bind (or a
/// resumption) are the caller's.
pub async fn authenticate(l: &Login, keys: &KeyCache) -> Result<Conn, SessionError> {
    let mut c = connect(l).await?;
    let features = c.open(&l.domain).await?;
    let offered: Vec<String> = features
        .child("mechanisms", stanza::ns::SASL)
        .map(|m| m.elements().map(|e| e.text().into_owned()).collect())
        .unwrap_or_default();
    let name = match l.mech {
        Mech::Plain => "PLAIN",
        Mech::ScramSha1 => "SCRAM-SHA-1",
        Mech::ScramSha256 => "SCRAM-SHA-256",
    };
    if !offered.iter().any(|m| m == name) {
        return Err(SessionError::Auth(format!(
            "{name} not offered (offered: {})",
            offered.join(", ")
        )));
    }
    match l.mech {
        Mech::Plain => {
            let msg = format!("\0{}\0{}", l.user, l.password);
            send_auth(&mut c, name, msg.as_bytes()).await?;
        }
        Mech::ScramSha1 | Mech::ScramSha256 => {
            let hash = if l.mech == Mech::ScramSha1 {
                Hash::Sha1
            } else {
                Hash::Sha256
            };
            let (client, first) = ScramClient::new(hash, &l.user, &l.password, &nonce());
            send_auth(&mut c, name, &first).await?;
            let ch = c.element("SASL challenge").await?;
            if ch.name != "challenge" {
                return Err(SessionError::Auth(format!(
                    "<{}> instead of a challenge",
                    ch.name
                )));
            }
            let sf = B64
                .decode(ch.text().trim())
                .map_err(|_| SessionError::Auth("bad base64 challenge".into()))?;
            let (fin, expect) = client
                .respond_with(&sf, |p| keys.get(hash, &l.password, p))
                .map_err(|e| SessionError::Auth(e.to_string()))?;
            c.wr.write_all(
                format!(
                    "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{}</response>",
                    B64.encode(fin)
                )
                .as_bytes(),
            )
            .await?;
            let ok = c.element("SASL success").await?;
            if ok.name != "success" {
                return Err(SessionError::Auth(format!("<{}>", ok.name)));
            }
            let sig = B64.decode(ok.text().trim()).unwrap_or_default();
            if sig != expect {
                return Err(SessionError::Auth(
                    "server signature does not verify".into(),
                ));
            }
            return Ok(c);
        }
    }
    let ok = c.element("SASL success").await?;
    if ok.name != "success" {
        return Err(SessionError::Auth(format!("<{}>", ok.name)));
    }
    Ok(c)
}

async fn send_auth(c: &mut Conn, mech: &str, data: &[u8]) -> Result<(), SessionError> {
    c.wr.write_all(
        format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='{mech}'>{}</auth>",
            B64.encode(data)
        )
        .as_bytes(),
    )
    .await?;
    Ok(())
}

async fn finish_bind(mut c: Conn, l: &Login) -> Result<Conn, SessionError> {
    let features = c.open(&l.domain).await?;
    if features.child("bind", stanza::ns::BIND).is_none() {
        return Err(SessionError::Negotiation("no bind feature".into()));
    }
    c.wr.write_all(
        format!(
            "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
             <resource>{}</resource></bind></iq>",
            l.resource
        )
        .as_bytes(),
    )
    .await?;
    let r = c.element("bind").await?;
    let jid = r
        .child("bind", stanza::ns::BIND)
        .and_then(|b| b.child("jid", stanza::ns::BIND))
        .map(|j| j.text().into_owned())
        .ok_or_else(|| SessionError::Negotiation("bind refused".into()))?;
    // The legacy session iq, for servers that still need it: where it is
    // marked `<optional/>` it is skipped, as current clients do, and a
    // login is one round trip shorter.
    let needed = features
        .child("session", stanza::ns::SESSION)
        .is_some_and(|s| s.child("optional", stanza::ns::SESSION).is_none());
    if needed {
        c.wr.write_all(
            b"<iq type='set' id='sess'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>",
        )
        .await?;
        let _ = c.element("session").await?;
    }
    c.jid = jid;
    Ok(c)
}
