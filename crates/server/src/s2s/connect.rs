//! Finding and reaching a remote domain's server: the static host map,
//! else SRV `_xmpp-server._tcp` records, else the domain on 5269
//! ([`super::resolve`]), each host's A/AAAA records, and the first address
//! that accepts. DNS is hickory-resolver reading the system's resolver
//! configuration (`/etc/resolv.conf`).

use std::net::{IpAddr, SocketAddr};

use hickory_resolver::TokioResolver;
use rand::Rng;
use stanza::StanzaErrorCondition as C;
use tokio::net::TcpStream;
use tracing::debug;

use super::resolve::{self, Lookup, Plan, Srv};
use super::wire::Conn;
use crate::Shared;

/// The system's resolver, made on first use; `None` when the system has
/// no usable configuration (then only the host map and literal addresses
/// work).
pub(crate) fn resolver(shared: &Shared) -> Option<&TokioResolver> {
    shared
        .s2s
        .resolver
        .get_or_init(|| match TokioResolver::builder_tokio() {
            Ok(b) => Some(b.build()),
            Err(e) => {
                tracing::warn!(error = %e, "s2s: no DNS resolver; only [s2s.hosts] domains are reachable");
                None
            }
        })
        .as_ref()
}

/// Connects to `remote`'s server: a framed connection and the address it
/// reached. Errors are the condition to bounce with.
pub(crate) async fn connect(shared: &Shared, remote: &str) -> Result<(Conn, SocketAddr), C> {
    let s2s = &shared.config.s2s;
    let static_host = s2s.static_host(remote);
    let lookup = if static_host.is_some() {
        Lookup::NoRecords
    } else {
        srv(shared, remote).await
    };
    let plan = {
        // Not held across an await: the thread's generator is not Send.
        let mut rng = rand::thread_rng();
        resolve::plan(remote, static_host, lookup, &mut |n| rng.gen_range(0..=n))
    };
    let Plan::Connect(hosts) = plan else {
        return Err(C::RemoteServerNotFound);
    };
    for (host, port) in hosts {
        for ip in addresses(shared, &host).await {
            let addr = SocketAddr::new(ip, port);
            match TcpStream::connect(addr).await {
                Ok(tcp) => {
                    let _ = tcp.set_nodelay(true);
                    let conn = Conn::new(Box::new(tcp), shared.config.limits.framer());
                    return Ok((conn, addr));
                }
                Err(e) => debug!(%remote, %addr, error = %e, "s2s: connect failed"),
            }
        }
    }
    Err(C::RemoteServerNotFound)
}

/// The SRV records of `_xmpp-server._tcp.DOMAIN`.
async fn srv(shared: &Shared, domain: &str) -> Lookup {
    let Some(r) = resolver(shared) else {
        return Lookup::NoRecords;
    };
    match r.srv_lookup(format!("_xmpp-server._tcp.{domain}.")).await {
        Ok(found) => Lookup::Records(
            found
                .iter()
                .map(|s| Srv {
                    priority: s.priority(),
                    weight: s.weight(),
                    port: s.port(),
                    target: s.target().to_utf8().trim_end_matches('.').to_owned(),
                })
                .collect(),
        ),
        Err(e) => {
            debug!(%domain, error = %e, "s2s: no SRV records");
            Lookup::NoRecords
        }
    }
}

/// A host's addresses: a literal as is, else its A and AAAA records.
async fn addresses(shared: &Shared, host: &str) -> Vec<IpAddr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return vec![ip];
    }
    let Some(r) = resolver(shared) else {
        return Vec::new();
    };
    match r.lookup_ip(format!("{host}.")).await {
        Ok(ips) => ips.iter().collect(),
        Err(e) => {
            debug!(%host, error = %e, "s2s: no addresses");
            Vec::new()
        }
    }
}
