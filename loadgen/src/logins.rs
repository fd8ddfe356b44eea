//! The login phase of a run: every session this part holds logs in, paced
//! by the ramp with a bounded number in flight, and becomes available.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use hdrhistogram::Histogram;
use tokio::sync::Semaphore;

use crate::run::{Plan, Progress, Target};
use crate::scram::KeyCache;
use crate::session::{self, Login};
use crate::stats;

/// A session up: its connection, its resumption id (`--sm`), and the
/// server's stanzas it handled so far.
pub type Up = (session::Conn, Option<String>, u32);

/// What the login phase leaves.
#[allow(missing_debug_implementations)] // holds connections
pub struct Phase {
    /// By user: the sessions up (this part's only).
    pub conns: Vec<Option<Up>>,
    /// Each login, from its scheduled start to its presence handled, µs.
    pub connect: Histogram<u64>,
    /// Sessions up.
    pub up: usize,
    /// From the first login's start to the last one's end, seconds.
    pub login_secs: f64,
}

/// Logs in the users in `held`; failures are counted in `errors`.
pub(crate) async fn log_in_all(
    plan: &Plan,
    target: &Target,
    keys: &Arc<KeyCache>,
    held: Range<usize>,
    progress: &Progress,
    errors: &mut BTreeMap<String, u64>,
) -> Result<Phase> {
    let n = plan.sessions;
    let in_flight = Arc::new(Semaphore::new(512));
    let t0 = Instant::now() + Duration::from_millis(50);
    let mut logins = tokio::task::JoinSet::new();
    // Parts share the ramp: each starts its share of the logins per second.
    let ramp = plan.ramp.max(1.0) * held.len() as f64 / n as f64;
    for (k, i) in held.clone().enumerate() {
        let login = login_of(plan, target, i);
        let (keys, in_flight) = (keys.clone(), in_flight.clone());
        let at = t0 + Duration::from_secs_f64(k as f64 / ramp.max(1.0));
        let sm = plan.sm;
        logins.spawn(async move {
            tokio::time::sleep_until(at.into()).await;
            let _permit = in_flight.acquire_owned().await;
            let r = match session::login(&login, &keys).await {
                Ok(mut c) if sm => crate::sm::enable(&mut c).await.map(|id| (c, Some(id))),
                Ok(c) => Ok((c, None)),
                Err(e) => Err(e),
            };
            // Up only once the server has processed its presence.
            let r = match r {
                Ok((mut c, id)) => session::available(&mut c)
                    .await
                    .map(|handled| (c, id, handled)),
                Err(e) => Err(e),
            };
            (i, r, at.elapsed(), Instant::now())
        });
    }
    let mut conns: Vec<Option<(session::Conn, Option<String>, u32)>> =
        (0..n).map(|_| None).collect();
    let mut connect = stats::histogram();
    let mut last_login = t0;
    let mut up = 0usize;
    while let Some(j) = logins.join_next().await {
        let (i, r, took, done) = j?;
        match r {
            Ok(c) => {
                stats::record(&mut connect, took.as_micros() as u64);
                conns[i] = Some(c);
                up += 1;
                last_login = last_login.max(done);
            }
            Err(e) => *errors.entry(format!("login:{}", e.kind())).or_default() += 1,
        }
        if up % 250 == 0 {
            progress.set(format!("logged in {up}/{}", held.len()));
        }
    }
    let login_secs = last_login.duration_since(t0).as_secs_f64().max(1e-6);
    Ok(Phase {
        conns,
        connect,
        up,
        login_secs,
    })
}

/// How user `i` logs in.
pub fn login_of(plan: &Plan, target: &Target, i: usize) -> Login {
    let target = target.for_user(i);
    Login {
        addr: target.addr,
        source: source(i, plan.sources, &target.addr),
        domain: target.domain.clone(),
        user: (target.user)(i as u32),
        password: (target.password)(i as u32),
        mech: plan.mech,
        resource: "lg".into(),
        tls: target.tls,
        ws: (plan.transport == crate::session::Transport::Websocket && i >= plan.celebrities)
            .then_some(target.ws)
            .flatten(),
        sse: (plan.transport == crate::session::Transport::Sse && i >= plan.celebrities)
            .then_some(target.ws)
            .flatten(),
    }
}

/// The loopback source address for connection `i`.
pub fn source(i: usize, sources: u8, target: &SocketAddr) -> Option<IpAddr> {
    // Spread over 127.0.0.1..=127.0.0.N so ephemeral ports never run out;
    // only when the target itself is on loopback.
    if sources <= 1 || !target.ip().is_loopback() || !target.is_ipv4() {
        return None;
    }
    Some(IpAddr::V4(Ipv4Addr::new(
        127,
        0,
        0,
        1 + (i % sources as usize) as u8,
    )))
}
