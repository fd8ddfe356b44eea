//! Accepting a client connection: the connection's task, direct TLS
//! and STARTTLS hand-offs, and refusals. Each path builds its `Conn`
//! before the task's future exists, so an idle session's task holds it
//! once (#11; `size_tests` in the parent asserts the sizes).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::Either;
use stanza::ser;
use stanza::StreamErrorCondition;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tracing::debug;

use super::Conn;
use crate::stream::tcp::{Io, Tcp};
use crate::stream::{Stop, Transport};
use crate::Shared;
use stanza::ns;

/// Serves one client connection until it ends. `direct_tls`: the
/// connection came to the XEP-0368 port, and TLS starts at once. `permit`
/// is its place under `max_connections`, held until it ends.
///
/// Not an async fn: the connection is built before the future exists, so
/// the task holds it once, not beside the stream, the address and the
/// `Arc` it was made from (#11: an idle session's task is most of what it
/// costs).
pub(crate) fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    direct_tls: bool,
    permit: OwnedSemaphorePermit,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let _ = stream.set_nodelay(true);
    let deadline = Instant::now() + shared.config.limits.handshake_timeout();
    let counted = Counted::new(shared.clone(), permit);
    // The rarer paths are boxed: the task of a plain session holds room
    // only for what it is (see `size_tests`).
    if direct_tls {
        return Either::Left(Box::pin(async move {
            serve_direct_tls(stream, peer, shared, deadline).await;
            drop(counted);
        }));
    }
    let mut conn = Conn::new(tcp(stream, &shared), peer, shared, false, deadline);
    Either::Right(async move {
        // `counted` is dropped at the end, not moved into a binding: a
        // binding would be a second copy in the task.
        let stop = conn.run().await;
        if matches!(stop, Stop::StartTls) {
            Box::pin(upgrade(conn)).await;
        } else {
            Box::pin(conn.finish(stop)).await;
        }
        drop(counted);
    })
}

/// STARTTLS on a plain connection: the handshake and the TLS session are
/// boxed apart from the plain stream, whose state is gone before the
/// encrypted one is served (#11: 1.7 KB per idle TLS session held both).
/// Its own function, so the plain session's task keeps no room for it.
async fn upgrade(conn: Conn<Tcp<TcpStream>>) {
    let (peer, shared, deadline) = (conn.peer, conn.shared.clone(), conn.deadline());
    let Some(tls) = Box::pin(start_tls(conn, peer, &shared, deadline)).await else {
        return;
    };
    Box::pin(serve_on(tls, peer, shared, true, deadline)).await;
}

/// An open connection, counted in the metrics and under
/// `max_connections` for as long as it lives (also when its task is
/// aborted at shutdown).
struct Counted {
    shared: Arc<Shared>,
    _permit: OwnedSemaphorePermit,
}

impl Counted {
    fn new(shared: Arc<Shared>, permit: OwnedSemaphorePermit) -> Self {
        shared.metrics.connections.inc();
        Self {
            shared,
            _permit: permit,
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.shared.metrics.connections.dec();
    }
}

/// A connection to the XEP-0368 port: TLS from the first byte.
async fn serve_direct_tls(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    deadline: Instant,
) {
    let Some(acceptor) = shared.tls.clone() else {
        return;
    };
    let handshake = tokio::time::timeout_at(deadline, acceptor.accept(stream));
    if let Ok(Ok(tls)) = handshake.await {
        serve_on(tls, peer, shared, true, deadline).await;
    }
}

/// Answers `<starttls/>` and makes the TLS handshake; the encrypted
/// stream, or `None` when the connection ends here.
// Boxed by the caller: a plain session's task need not hold room for a
// TLS handshake it never makes.
async fn start_tls(
    mut conn: Conn<Tcp<TcpStream>>,
    peer: SocketAddr,
    shared: &Shared,
    deadline: Instant,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    // RFC 6120 §5.4.3.3: nothing may follow <starttls/> until the handshake.
    // Bytes already buffered were sent in the clear and would be read as if
    // encrypted: the STARTTLS injection attack. Refuse, don't process.
    if conn.t.framer().buffered() > 0 {
        debug!(%peer, bytes = conn.t.framer().buffered(), "data after <starttls/>: refused");
        let failure = b"<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:stream>";
        let _ = tokio::time::timeout_at(deadline, async {
            let _ = conn.t.write(failure).await;
            conn.t.shutdown().await;
        })
        .await;
        return None;
    }
    let acceptor = shared.tls.clone()?;
    match tokio::time::timeout_at(deadline, conn.t.write(&ser::tls_proceed())).await {
        Ok(Ok(())) => {}
        _ => return None,
    }
    let tcp = conn.t.into_inner()?;
    let handshake = tokio::time::timeout_at(deadline, acceptor.accept(tcp));
    match handshake.await {
        Ok(Ok(tls)) => Some(tls),
        _ => {
            debug!(%peer, "TLS handshake failed or timed out");
            None
        }
    }
}

/// Before authentication only SASL and registration are spoken: the much
/// smaller pre-auth stanza limit applies.
fn tcp<S: Io>(stream: S, shared: &Shared) -> Tcp<S> {
    Tcp::new(stream, shared.config.limits.pre_auth_framer())
}

/// Answers a connection over its address's rate with `policy-violation`
/// and closes it.
pub(crate) async fn refuse(mut stream: TcpStream, shared: Arc<Shared>) {
    let mut out =
        ser::stream_header(ns::CLIENT, &shared.config.domains[0], None, "refused").to_vec();
    out.extend_from_slice(&ser::stream_error(
        StreamErrorCondition::PolicyViolation,
        Some("too many connections from your address"),
    ));
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = stream.write_all(&out).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// Serves a stream over `stream`. Not an async fn: the stream goes into
/// the connection before the future exists, so the future holds the
/// connection once, not the stream beside it too (a TLS stream is 1 KB).
pub(super) fn serve_on<S: Io>(
    stream: S,
    peer: SocketAddr,
    shared: Arc<Shared>,
    tls: bool,
    deadline: Instant,
) -> impl std::future::Future<Output = ()> {
    let conn = Conn::new(tcp(stream, &shared), peer, shared, tls, deadline);
    serve_conn(conn)
}

/// Runs a connection until its stream ends, then ends it. (An async
/// block, not an async fn: an async fn's future keeps its argument and
/// the variable it moves into apart, the connection twice.)
#[allow(clippy::manual_async_fn)] // the size is the point; see above
fn serve_conn<T: Transport>(mut conn: Conn<T>) -> impl std::future::Future<Output = ()> {
    async move {
        let stop = conn.run().await;
        Box::pin(conn.finish(stop)).await;
    }
}

/// Serves a stream on an established transport (a WebSocket, say) until it
/// ends. `encrypted`: the transport counts as encrypted.
pub(crate) async fn serve_transport<T: Transport>(
    t: T,
    peer: SocketAddr,
    shared: Arc<Shared>,
    encrypted: bool,
) {
    let deadline = Instant::now() + shared.config.limits.handshake_timeout();
    serve_conn(Conn::new(t, peer, shared, encrypted, deadline)).await;
}
