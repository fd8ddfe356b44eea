//! The HTTP side (axum on hyper): XMPP over WebSocket at
//! `/xmpp-websocket` (RFC 7395) and its discovery (XEP-0156), per-user
//! Atom feeds ([`feed`]), the Mastodon-compatible client API ([`api`]),
//! and the web page ([`pages`]: profiles, login, the live home page).
//!
//! One accept loop per listener: TLS first when the listener is `https`,
//! then hyper with upgrades, so a WebSocket session runs on the same task
//! as its connection, through the same stream layer as a TCP client.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Extension, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, warn};

pub(crate) mod api;
pub(crate) mod feed;
mod pages;
mod settings;

pub use settings::WebConfig;

use crate::stream::ws::Ws;
use crate::Shared;

/// The WebSocket path (RFC 7395 §3.1 leaves it to the server; this is the
/// one XEP-0156 announces and clients default to).
pub(crate) const WS_PATH: &str = "/xmpp-websocket";

/// A WebSocket's read buffer (tungstenite allocates it at the upgrade).
const WS_READ_BUFFER: usize = 4 * 1024;
/// Bytes a WebSocket buffers before writing to the socket; a batch flush
/// writes what is below it.
const WS_WRITE_BUFFER: usize = 32 * 1024;

/// Where a request came from, for policy; the connection's permit rides
/// along, so an upgraded session holds it until it ends.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    addr: SocketAddr,
    tls: bool,
    permit: Arc<OwnedSemaphorePermit>,
}

fn router(shared: Arc<Shared>) -> Router {
    // The WebSocket endpoint is an XMPP connection: c2s's connection and
    // stanza limits apply to it, not the HTTP request budget.
    let public = Router::new()
        .route("/.well-known/host-meta", get(host_meta))
        .route("/.well-known/host-meta.json", get(host_meta_json))
        .route("/users/{localpart}/feed.atom", get(feed::feed))
        .route("/avatar.svg", get(avatar))
        .route_layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            api::guard::public,
        ));
    Router::new()
        .route(WS_PATH, get(websocket))
        .merge(public)
        .merge(api::routes(&shared))
        .merge(pages::routes(&shared))
        .layer(axum::extract::DefaultBodyLimit::max(
            shared.config.web.max_body_bytes,
        ))
        .with_state(shared)
}

/// `/api/v1/instance/` is `/api/v1/instance`: clients add trailing
/// slashes (Mastodon's router ignores them), and axum routes exactly. Done
/// before routing, so every route takes both.
fn trim_slash<B>(mut req: axum::http::Request<B>) -> axum::http::Request<B> {
    let path = req.uri().path();
    if path.len() > 1 && path.ends_with('/') {
        let trimmed = path.trim_end_matches('/');
        let new = match req.uri().query() {
            Some(q) => format!("{}?{q}", if trimmed.is_empty() { "/" } else { trimmed }),
            None => {
                if trimmed.is_empty() {
                    "/".to_owned()
                } else {
                    trimmed.to_owned()
                }
            }
        };
        if let Ok(uri) = new.parse() {
            *req.uri_mut() = uri;
        }
    }
    req
}

/// The picture every account shows: Starling keeps no avatars.
async fn avatar() -> Response {
    (
        [(header::CONTENT_TYPE, "image/svg+xml"), (header::CACHE_CONTROL, "max-age=86400")],
        "<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 4 4'><rect width='4' height='4' fill='#6a5acd'/></svg>",
    )
        .into_response()
}

/// A JSON error body with its status.
fn refuse(status: StatusCode, error: &str) -> Response {
    (status, Json(serde_json::json!({ "error": error }))).into_response()
}

async fn websocket(
    State(shared): State<Arc<Shared>>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let Ok(ws) = ws else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "this endpoint speaks XMPP over WebSocket (RFC 7395) only",
        );
    };
    // axum upgrades even when no offered protocol matches: the `xmpp`
    // subprotocol is checked here (RFC 7395 §3.1).
    let offered = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == "xmpp");
    if !offered {
        return refuse(
            StatusCode::BAD_REQUEST,
            "the xmpp WebSocket subprotocol is required (RFC 7395)",
        );
    }
    // The stanza limit bounds one message; headroom for the framing.
    let max = shared.config.limits.max_stanza_bytes + 1024;
    let encrypted = peer.tls || shared.config.trusted_proxies.contains(&peer.addr.ip());
    // tungstenite's defaults (128 KiB read buffer, allocated up front, and
    // a 128 KiB write threshold) would cost each idle session far more than
    // its TCP equivalent; one flush per batch does the coalescing anyway.
    ws.protocols(["xmpp"])
        .read_buffer_size(WS_READ_BUFFER)
        .write_buffer_size(WS_WRITE_BUFFER)
        .max_write_buffer_size(shared.config.limits.outbound_queue_bytes.max(max * 2))
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| async move {
            let t = Ws::new(socket, shared.config.limits.pre_auth_framer());
            shared.metrics.connections.inc();
            crate::c2s::serve_transport(t, peer.addr, shared.clone(), encrypted).await;
            shared.metrics.connections.dec();
            drop(peer.permit);
        })
}

/// The URL discovery announces.
fn ws_url(shared: &Shared, headers: &HeaderMap, peer: &Peer) -> Option<String> {
    if let Some(u) = &shared.config.websocket_url {
        return Some(u.clone());
    }
    let host = headers.get(header::HOST)?.to_str().ok()?;
    // A host and port only: nothing that could break out of the document.
    let ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
    let scheme = if peer.tls { "wss" } else { "ws" };
    ok.then(|| format!("{scheme}://{host}{WS_PATH}"))
}

/// XEP-0156 in XRD.
async fn host_meta(
    State(shared): State<Arc<Shared>>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
) -> Response {
    discovery(&shared, &headers, &peer, |url| {
        let xml = format!(
            "<?xml version='1.0' encoding='utf-8'?>\n\
             <XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>\n  \
             <Link rel='urn:xmpp:alt-connections:websocket' href='{}'/>\n</XRD>\n",
            stanza::escape::escape_attr(&url)
        );
        (
            [(header::CONTENT_TYPE, "application/xrd+xml; charset=utf-8")],
            xml,
        )
            .into_response()
    })
}

/// XEP-0156 in JSON (JRD).
async fn host_meta_json(
    State(shared): State<Arc<Shared>>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
) -> Response {
    discovery(&shared, &headers, &peer, |url| {
        Json(serde_json::json!({
            "links": [{ "rel": "urn:xmpp:alt-connections:websocket", "href": url }]
        }))
        .into_response()
    })
}

/// The WebSocket URL in a discovery document, or why there is none.
fn discovery(
    shared: &Shared,
    headers: &HeaderMap,
    peer: &Peer,
    document: impl FnOnce(String) -> Response,
) -> Response {
    match ws_url(shared, headers, peer) {
        Some(url) => document(url),
        None => refuse(StatusCode::BAD_REQUEST, "a valid Host header is required"),
    }
}

/// Serves HTTP on `listener` until shutdown; `tls`: the listener is
/// `https`. Connections share the c2s limits (rate per address, and
/// `max_connections` through `permits`).
pub(crate) async fn serve(
    listener: TcpListener,
    tls: bool,
    shared: Arc<Shared>,
    permits: Arc<Semaphore>,
) {
    let app = router(shared.clone());
    let mut stop = shared.shutdown.clone();
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let (stream, addr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = crate::stopped(&mut stop) => break,
        };
        while conns.try_join_next().is_some() {}
        if !shared.limiters.connection(addr.ip()) {
            shared.metrics.limited("connection");
            continue;
        }
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            warn!(%addr, "max_connections reached, refusing");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let peer = Peer {
            addr,
            tls,
            permit: Arc::new(permit),
        };
        // The router is shared (a clone is a reference count); the peer
        // goes into each request. Layering the router per connection
        // instead would rebuild every route for every connection, which an
        // idle streaming client would then hold for its lifetime.
        let app = app.clone();
        let shared = shared.clone();
        conns.spawn(async move {
            let service = TowerToHyperService::new(tower::util::MapRequest::new(
                app,
                move |mut req: axum::http::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(peer.clone());
                    trim_slash(req)
                },
            ));
            let http = hyper::server::conn::http1::Builder::new();
            if tls {
                let Some(acceptor) = shared.tls.clone() else {
                    return;
                };
                let handshake = shared.config.limits.handshake_timeout();
                match tokio::time::timeout(handshake, acceptor.accept(stream)).await {
                    Ok(Ok(s)) => {
                        let conn = http.serve_connection(TokioIo::new(s), service);
                        let _ = conn.with_upgrades().await;
                    }
                    _ => debug!(%addr, "TLS handshake failed or timed out"),
                }
            } else {
                let conn = http.serve_connection(TokioIo::new(stream), service);
                let _ = conn.with_upgrades().await;
            }
        });
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while conns.join_next().await.is_some() {}
    })
    .await;
}
