//! A minimal XMPP client and an in-process server on port 0, for the
//! integration tests.
#![allow(dead_code)]

pub mod binary;
pub mod http;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use server::sasl::{Hash, ScramClient};
use server::store::hooked::Hooked;
use server::store::prelude::*;
use server::{AccountRecord, Config, Listeners, Redb};
use stanza::element::{Element, NsContext};
use stanza::{ns, BareJid, Event, Framer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const DOMAIN: &str = "example.org";
/// The caps feature that asks for microblog notifications.
pub const NOTIFY: &str = "<feature var='urn:xmpp:microblog:0+notify'/>";
const EXODUS_VER: &str = "QgayPKawpkPSDYmwT/WM94uAlu0=";

/// The SASL mechanisms a `<stream:features/>` offers, in order.
pub fn mechanisms(features: &Element) -> Vec<String> {
    features
        .child("mechanisms", ns::SASL)
        .map(|m| m.elements().map(|e| e.text().into_owned()).collect())
        .unwrap_or_default()
}

/// The element names inside an iq or message error reply: the defined
/// condition first, then any application condition.
pub fn error_conditions(reply: &Element) -> Vec<String> {
    assert_eq!(reply.attr("type"), Some("error"), "{reply:?}");
    reply
        .child("error", ns::CLIENT)
        .expect("an <error/>")
        .elements()
        .map(|e| e.name.clone())
        .collect()
}

pub struct TestServer {
    pub addr: SocketAddr,
    /// The direct-TLS port.
    pub tls_addr: SocketAddr,
    /// The metrics endpoint, when the test configured one.
    pub metrics: Option<SocketAddr>,
    /// The first HTTP (WebSocket) listener, when configured.
    pub http_addr: Option<SocketAddr>,
    /// The first HTTPS listener, when configured.
    pub https_addr: Option<SocketAddr>,
    pub dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), server::ServerError>>>,
}

impl TestServer {
    /// Starts a server with `accounts` (user, password) and `tweak` applied
    /// to the configuration.
    pub async fn start(accounts: &[(&str, &str)], tweak: impl FnOnce(&mut Config)) -> Self {
        Self::start_in(tempfile::tempdir().unwrap(), accounts, tweak).await
    }

    /// Starts on an existing data directory (a restart).
    pub async fn start_in(
        dir: tempfile::TempDir,
        accounts: &[(&str, &str)],
        tweak: impl FnOnce(&mut Config),
    ) -> Self {
        Self::launch(dir, accounts, tweak, |s| s).await
    }

    /// Starts on a [`Hooked`] store, returned for the test to set hooks on.
    pub async fn start_hooked(
        accounts: &[(&str, &str)],
        tweak: impl FnOnce(&mut Config),
    ) -> (Self, Arc<Hooked>) {
        let mut hooked = None;
        let server = Self::launch(tempfile::tempdir().unwrap(), accounts, tweak, |s| {
            let h = Arc::new(Hooked::new(s));
            hooked = Some(h.clone());
            h
        })
        .await;
        (server, hooked.unwrap())
    }

    async fn launch(
        dir: tempfile::TempDir,
        accounts: &[(&str, &str)],
        tweak: impl FnOnce(&mut Config),
        wrap: impl FnOnce(Arc<dyn Store>) -> Arc<dyn Store>,
    ) -> Self {
        let mut config = Config {
            domains: vec![DOMAIN.into()],
            c2s_listen: vec!["127.0.0.1:0".parse().unwrap()],
            c2s_tls_listen: vec!["127.0.0.1:0".parse().unwrap()],
            data_dir: dir.path().to_owned(),
            // Most tests speak plaintext; the TLS tests turn this back on.
            require_encryption: false,
            // No federation unless a test asks: tests run side by side.
            s2s: server::s2s::S2sConfig {
                listen: Vec::new(),
                ..Default::default()
            },
            ..Config::default()
        };
        tweak(&mut config);
        let store = Redb::open(&config.data_dir).unwrap();
        for (user, pass) in accounts {
            let jid = BareJid::new(&format!("{user}@{}", config.domains[0])).unwrap();
            store
                .create_account(&jid, &AccountRecord::new(pass, 4096))
                .unwrap();
        }
        let store = wrap(Arc::new(store));
        let listeners = Listeners::bind(&config).await.unwrap();
        let addr = listeners.c2s_addrs()[0];
        let tls_addr = listeners.c2s_tls_addrs()[0];
        let metrics = listeners.metrics_addr();
        let http_addr = listeners.http_addrs().first().copied();
        let https_addr = listeners.https_addrs().first().copied();
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(server::run_on(listeners, config, store, async {
            let _ = rx.await;
        }));
        Self {
            addr,
            tls_addr,
            metrics,
            http_addr,
            https_addr,
            dir,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Signals shutdown and waits for `run` to return.
    pub async fn stop(mut self) -> tempfile::TempDir {
        let _ = self.stop.take().unwrap().send(());
        let r = tokio::time::timeout(Duration::from_secs(10), self.task.take().unwrap())
            .await
            .expect("server stops within 10 s");
        r.unwrap().unwrap();
        self.dir
    }
}

/// Plain TCP, or TLS over it after STARTTLS or on the direct-TLS port.
pub enum Stream {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// Only while STARTTLS swaps one for the other.
    Swapping,
}

impl Stream {
    async fn write_all(&mut self, b: &[u8]) -> std::io::Result<()> {
        match self {
            Stream::Tcp(s) => s.write_all(b).await,
            Stream::Tls(s) => s.write_all(b).await,
            Stream::Swapping => unreachable!("no I/O during the swap"),
        }
    }
    async fn read_buf(&mut self, buf: &mut bytes::BytesMut) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read_buf(buf).await,
            Stream::Tls(s) => s.read_buf(buf).await,
            Stream::Swapping => unreachable!("no I/O during the swap"),
        }
    }
}

/// A TLS client that trusts the test server's generated certificate.
pub fn tls_connector(data_dir: &std::path::Path) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in
        rustls::pki_types::CertificateDer::pem_file_iter(data_dir.join("tls/cert.pem")).unwrap()
    {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
}

pub struct Client {
    pub stream: Stream,
    framer: Framer,
    /// Whether [`Client::element`] returns presence stanzas; off by
    /// default, so tests about other things need not expect the presence
    /// of their own resources and contacts.
    pub keep_presence: bool,
}

pub fn stream_ctx() -> NsContext {
    NsContext {
        bindings: vec![
            (None, ns::CLIENT.to_owned()),
            (Some("stream".to_owned()), ns::STREAM.to_owned()),
        ],
    }
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Self {
        Self::from_tcp(TcpStream::connect(addr).await.unwrap())
    }

    /// A client on an open connection.
    pub fn from_tcp(tcp: TcpStream) -> Self {
        Self {
            stream: Stream::Tcp(tcp),
            framer: Framer::default(),
            keep_presence: false,
        }
    }

    /// Connects to the direct-TLS port.
    pub async fn connect_tls(addr: SocketAddr, data_dir: &std::path::Path) -> Self {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from(DOMAIN).unwrap();
        let tls = tls_connector(data_dir).connect(name, tcp).await.unwrap();
        Self {
            stream: Stream::Tls(Box::new(tls)),
            framer: Framer::default(),
            keep_presence: false,
        }
    }

    /// `<starttls/>`, `<proceed/>`, the handshake (verifying the server's
    /// certificate), then a new stream; returns the features.
    pub async fn starttls(&mut self, data_dir: &std::path::Path) -> Element {
        self.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            .await;
        let p = self.element().await;
        assert!(p.is("proceed", ns::TLS), "{p:?}");
        let Stream::Tcp(tcp) = std::mem::replace(&mut self.stream, Stream::Swapping) else {
            panic!("TLS already on");
        };
        let name = rustls::pki_types::ServerName::try_from(DOMAIN).unwrap();
        let tls = tls_connector(data_dir).connect(name, tcp).await.unwrap();
        self.stream = Stream::Tls(Box::new(tls));
        self.framer = Framer::default();
        self.open(DOMAIN).await
    }

    pub async fn send(&mut self, xml: &str) {
        self.try_send(xml).await.unwrap();
    }

    /// Sends, reporting a failed write instead of panicking.
    pub async fn try_send(&mut self, xml: &str) -> std::io::Result<()> {
        self.stream.write_all(xml.as_bytes()).await
    }

    /// The next event, or `None` when the server closed the connection.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            match self.framer.next() {
                Ok(Some(ev)) => return Some(ev),
                Ok(None) => {}
                Err(e) => panic!("server sent bad XML: {e}"),
            }
            self.framer.buffer_mut().reserve(4096);
            let n = tokio::time::timeout(
                Duration::from_secs(10),
                self.stream.read_buf(self.framer.buffer_mut()),
            )
            .await
            .expect("server answers within 10 s")
            .unwrap_or(0);
            if n == 0 {
                return None;
            }
        }
    }

    /// The next stanza as an element (stream-level ones included).
    pub async fn element(&mut self) -> Element {
        loop {
            match self.next().await.expect("connection open") {
                Event::Stanza(b) => {
                    let e =
                        Element::parse_in(std::str::from_utf8(&b).unwrap(), &stream_ctx()).unwrap();
                    if e.name == "presence" && !self.keep_presence {
                        continue;
                    }
                    return e;
                }
                Event::StreamOpen(_) => continue,
                Event::StreamClose => panic!("stream closed"),
            }
        }
    }

    /// Opens a stream to `to`; returns the features.
    pub async fn open(&mut self, to: &str) -> Element {
        self.framer.reset();
        self.send(&format!(
            "<?xml version='1.0'?><stream:stream to='{to}' version='1.0' xmlns='jabber:client' \
             xmlns:stream='http://etherx.jabber.org/streams'>"
        ))
        .await;
        match self.next().await {
            Some(Event::StreamOpen(h)) => assert_eq!(h.attr("from"), Some(to)),
            other => panic!("expected a stream header, got {other:?}"),
        }
        let f = self.element().await;
        assert!(f.is("features", ns::STREAM), "{f:?}");
        f
    }

    pub async fn plain(&mut self, user: &str, pass: &str) -> Element {
        let msg = B64.encode(format!("\0{user}\0{pass}"));
        self.send(&format!(
            "<auth xmlns='{}' mechanism='PLAIN'>{msg}</auth>",
            ns::SASL
        ))
        .await;
        self.element().await
    }

    /// A SCRAM exchange; returns the final element (success or failure).
    pub async fn scram(&mut self, hash: Hash, user: &str, pass: &str) -> Element {
        let (client, first) = ScramClient::new(hash, user, pass, "clientnonce123");
        self.send(&format!(
            "<auth xmlns='{}' mechanism='{}'>{}</auth>",
            ns::SASL,
            hash.mechanism(),
            B64.encode(first)
        ))
        .await;
        let challenge = self.element().await;
        assert!(challenge.is("challenge", ns::SASL), "{challenge:?}");
        let server_first = B64.decode(challenge.text().trim()).unwrap();
        let (fin, expect) = client.respond(&server_first).unwrap();
        self.send(&format!(
            "<response xmlns='{}'>{}</response>",
            ns::SASL,
            B64.encode(fin)
        ))
        .await;
        let out = self.element().await;
        if out.is("success", ns::SASL) {
            assert_eq!(
                B64.decode(out.text().trim()).unwrap(),
                expect,
                "server signature"
            );
        }
        out
    }

    /// Restarts the stream and binds; returns the full JID.
    pub async fn bind(&mut self, resource: Option<&str>) -> String {
        self.bind_at(DOMAIN, resource).await
    }

    /// [`Self::bind`] on a server for `domain`.
    pub async fn bind_at(&mut self, domain: &str, resource: Option<&str>) -> String {
        let f = self.open(domain).await;
        assert!(f.child("bind", ns::BIND).is_some(), "{f:?}");
        let res = resource.map_or(String::new(), |r| format!("<resource>{r}</resource>"));
        self.send(&format!(
            "<iq type='set' id='b1'><bind xmlns='{}'>{res}</bind></iq>",
            ns::BIND
        ))
        .await;
        let r = self.element().await;
        assert_eq!(r.attr("type"), Some("result"), "{r:?}");
        r.child("bind", ns::BIND)
            .unwrap()
            .child("jid", ns::BIND)
            .unwrap()
            .text()
            .into_owned()
    }

    /// A full login with PLAIN: open, auth, bind.
    pub async fn login_plain(
        addr: SocketAddr,
        user: &str,
        pass: &str,
        resource: &str,
    ) -> (Self, String) {
        let mut c = Self::connect(addr).await;
        c.open(DOMAIN).await;
        let s = c.plain(user, pass).await;
        assert!(s.is("success", ns::SASL), "{s:?}");
        let jid = c.bind(Some(resource)).await;
        (c, jid)
    }

    /// [`Self::login_plain`] on a server for `domain`.
    pub async fn login_at(
        addr: SocketAddr,
        domain: &str,
        user: &str,
        pass: &str,
        resource: &str,
    ) -> (Self, String) {
        let mut c = Self::connect(addr).await;
        c.open(domain).await;
        let s = c.plain(user, pass).await;
        assert!(s.is("success", ns::SASL), "{s:?}");
        let jid = c.bind_at(domain, Some(resource)).await;
        (c, jid)
    }

    /// A ping round trip: everything the server sent before the answer is
    /// read first, so a test can assert that nothing else arrived.
    pub async fn ping(&mut self) {
        self.send("<iq type='get' id='ping'><ping xmlns='urn:xmpp:ping'/></iq>")
            .await;
        let r = self.element().await;
        assert_eq!(
            (r.attr("type"), r.attr("id")),
            (Some("result"), Some("ping")),
            "unexpected {r:?}"
        );
    }

    /// Sends available presence with caps for `features` (claiming another
    /// client's `ver` when `claim_other_ver`), answers the server's
    /// disco#info query, expects the replay of item `replay` if given, and
    /// waits until the server has processed it all.
    pub async fn announce(&mut self, features: &str, claim_other_ver: bool, replay: Option<&str>) {
        let query = format!(
            "<query xmlns='http://jabber.org/protocol/disco#info'>\
             <identity category='client' type='pc' name='starling-test'/>\
             <feature var='http://jabber.org/protocol/caps'/>{features}</query>"
        );
        let real = server::caps::verification_string_hash(&Element::parse(&query).unwrap());
        let ver = if claim_other_ver {
            EXODUS_VER.to_owned()
        } else {
            real
        };
        self.send(&format!(
            "<presence><priority>1</priority><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' \
             node='https://starling.test' ver='{ver}'/></presence>"
        ))
        .await;
        let iq = self.element().await;
        assert_eq!(iq.attr("type"), Some("get"), "{iq:?}");
        let q = iq
            .child("query", ns::DISCO_INFO)
            .expect("a disco#info query");
        assert_eq!(
            q.attr("node"),
            Some(format!("https://starling.test#{ver}").as_str())
        );
        let id = iq.attr("id").unwrap().to_owned();
        let from = iq.attr("from").unwrap().to_owned();
        self.send(&format!(
            "<iq type='result' id='{id}' to='{from}'>{query}</iq>"
        ))
        .await;
        if let Some(want) = replay {
            let m = self.element().await;
            let item = m
                .child("event", ns::PUBSUB_EVENT)
                .and_then(|e| e.child("items", ns::PUBSUB_EVENT))
                .and_then(|i| i.child("item", ns::PUBSUB_EVENT))
                .unwrap_or_else(|| panic!("expected a replay, got {m:?}"));
            assert_eq!(item.attr("id"), Some(want));
            assert!(
                m.child("delay", ns::DELAY).is_some(),
                "a replay carries <delay/>"
            );
        }
        self.ping().await;
    }

    /// Reads stanzas until one matches `pred`, failing on anything else
    /// except the echo of our own presence.
    pub async fn expect(&mut self, what: &str, pred: impl Fn(&Element) -> bool) -> Element {
        for _ in 0..16 {
            let e = self.element().await;
            if pred(&e) {
                return e;
            }
            let echo = e.name == "presence" && e.attr("from") == e.attr("to");
            assert!(echo, "waiting for {what}, got {e:?}");
        }
        panic!("no {what}");
    }

    /// Sends an iq and returns its answer (matched by id).
    pub async fn iq(&mut self, xml: &str) -> Element {
        let id = Element::parse_in(xml, &stream_ctx())
            .ok()
            .and_then(|e| e.attr("id").map(str::to_owned))
            .expect("an iq with an id");
        self.send(xml).await;
        self.expect(&format!("the answer to {id}"), |e| {
            e.name == "iq" && e.attr("id") == Some(id.as_str())
        })
        .await
    }

    /// Discards whatever the server sent until now (a ping round trip).
    pub async fn drain(&mut self) {
        self.send("<iq type='get' id='drain'><ping xmlns='urn:xmpp:ping'/></iq>")
            .await;
        while self.element().await.attr("id") != Some("drain") {}
    }

    /// Makes `a` and `b` (bare JIDs `a_jid`, `b_jid`) subscribed to each
    /// other's presence, and drains both.
    pub async fn befriend(a: &mut Client, a_jid: &str, b: &mut Client, b_jid: &str) {
        async fn one_way(x: &mut Client, x_jid: &str, y: &mut Client, y_jid: &str) {
            x.send(&format!("<presence to='{y_jid}' type='subscribe'/>"))
                .await;
            x.drain().await;
            y.send(&format!("<presence to='{x_jid}' type='subscribed'/>"))
                .await;
            y.drain().await;
        }
        one_way(a, a_jid, b, b_jid).await;
        one_way(b, b_jid, a, a_jid).await;
        a.drain().await;
        b.drain().await;
    }

    /// A ping round trip in which only our own presence echo may arrive.
    pub async fn quiet(&mut self) {
        self.iq("<iq type='get' id='quiet'><ping xmlns='urn:xmpp:ping'/></iq>")
            .await;
    }

    /// A full login with SCRAM-SHA-1 and a generated resource.
    pub async fn login_plain_scram(addr: SocketAddr, user: &str, pass: &str) -> (Self, String) {
        let mut c = Self::connect(addr).await;
        c.open(DOMAIN).await;
        let s = c.scram(Hash::Sha1, user, pass).await;
        assert!(s.is("success", ns::SASL), "{s:?}");
        let jid = c.bind(None).await;
        (c, jid)
    }

    /// Reads until the stream error, then expects the close; returns the
    /// condition's element name.
    pub async fn stream_error(&mut self) -> String {
        loop {
            match self.next().await {
                Some(Event::Stanza(b)) => {
                    let e =
                        Element::parse_in(std::str::from_utf8(&b).unwrap(), &stream_ctx()).unwrap();
                    if e.is("error", ns::STREAM) {
                        let cond = e.first_element().unwrap();
                        assert_eq!(cond.ns, ns::STREAM_ERRORS);
                        let name = cond.name.clone();
                        assert!(
                            matches!(self.next().await, Some(Event::StreamClose) | None),
                            "stream must close after an error"
                        );
                        return name;
                    }
                }
                Some(_) => {}
                None => panic!("closed without a stream error"),
            }
        }
    }
}
