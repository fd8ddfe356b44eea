//! Where to connect for a remote domain (RFC 6120 §3.2.1 with RFC 2782's
//! SRV ordering), without I/O: the transport looks up
//! `_xmpp-server._tcp.DOMAIN` and gives the answer here.
//!
//! A static host map entry (`[s2s.hosts]`, for tests and private
//! deployments) wins over DNS. Without SRV records the domain itself is
//! tried on 5269. A single record whose target is `.` says the domain
//! offers no XMPP service: nothing is tried.

/// The default s2s port (RFC 6120 §14.7).
pub const PORT: u16 = 5269;

/// One SRV record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Srv {
    /// Lower is tried first.
    pub priority: u16,
    /// Within a priority, the share of first attempts.
    pub weight: u16,
    /// The port.
    pub port: u16,
    /// The host, without its trailing dot.
    pub target: String,
}

/// What the SRV lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Records (possibly the single `.` record).
    Records(Vec<Srv>),
    /// No records (no such name, or no SRV data).
    NoRecords,
}

/// What to try, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Hosts and ports, tried in this order.
    Connect(Vec<(String, u16)>),
    /// The domain says it has no XMPP service (`.` target): bounce with
    /// `remote-server-not-found` without trying.
    Unavailable,
}

/// The connection plan for `domain`. `pick(n)` returns a uniform random
/// number in `0..=n` (a parameter, so the order is testable).
pub fn plan(
    domain: &str,
    static_host: Option<(&str, u16)>,
    lookup: Lookup,
    pick: &mut impl FnMut(u32) -> u32,
) -> Plan {
    if let Some((host, port)) = static_host {
        return Plan::Connect(vec![(host.to_owned(), port)]);
    }
    let mut records = match lookup {
        Lookup::NoRecords => return Plan::Connect(vec![(domain.to_owned(), PORT)]),
        Lookup::Records(r) if r.is_empty() => {
            return Plan::Connect(vec![(domain.to_owned(), PORT)]);
        }
        Lookup::Records(r) => r,
    };
    let dot = |t: &str| t.is_empty() || t == ".";
    if records.len() == 1 && dot(&records[0].target) {
        return Plan::Unavailable;
    }
    records.retain(|r| !dot(&r.target));
    records.sort_by_key(|r| r.priority);
    let mut out = Vec::with_capacity(records.len());
    let mut rest = records.as_slice();
    while let Some(first) = rest.first() {
        let same = rest
            .iter()
            .take_while(|r| r.priority == first.priority)
            .count();
        let (group, tail) = rest.split_at(same);
        weighted(group, pick, &mut out);
        rest = tail;
    }
    Plan::Connect(out)
}

/// RFC 2782's order within one priority: repeatedly draw a record with
/// probability proportional to its weight, zero-weight records first
/// among equals.
fn weighted(group: &[Srv], pick: &mut impl FnMut(u32) -> u32, out: &mut Vec<(String, u16)>) {
    let mut left: Vec<&Srv> = group.iter().collect();
    // Zero weights first, as RFC 2782 arranges them before the draw.
    left.sort_by_key(|r| r.weight != 0);
    while !left.is_empty() {
        let total: u32 = left.iter().map(|r| u32::from(r.weight)).sum();
        let r = pick(total);
        let mut running = 0;
        let at = left
            .iter()
            .position(|s| {
                running += u32::from(s.weight);
                running >= r
            })
            .unwrap_or(left.len() - 1);
        let chosen = left.remove(at);
        out.push((chosen.target.clone(), chosen.port));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn srv(priority: u16, weight: u16, target: &str) -> Srv {
        Srv {
            priority,
            weight,
            port: 5270 + priority,
            target: target.into(),
        }
    }

    fn hosts(p: Plan) -> Vec<String> {
        match p {
            Plan::Connect(v) => v.into_iter().map(|(h, _)| h).collect(),
            Plan::Unavailable => vec!["<unavailable>".into()],
        }
    }

    #[test]
    fn the_static_map_wins_and_no_records_mean_the_domain_on_5269() {
        let mut never = |_| unreachable!("no draw");
        let records = Lookup::Records(vec![srv(0, 0, "x.example")]);
        assert_eq!(
            plan("b.example", Some(("127.0.0.3", 5300)), records, &mut never),
            Plan::Connect(vec![("127.0.0.3".into(), 5300)])
        );
        assert_eq!(
            plan("b.example", None, Lookup::NoRecords, &mut never),
            Plan::Connect(vec![("b.example".into(), PORT)])
        );
    }

    #[test]
    fn a_lone_dot_record_means_no_service() {
        let mut never = |_| unreachable!("no draw");
        let dot = Lookup::Records(vec![srv(0, 0, ".")]);
        assert_eq!(plan("b.example", None, dot, &mut never), Plan::Unavailable);
    }

    #[test]
    fn priorities_in_order_and_weights_decide_within_one() {
        let records = || {
            Lookup::Records(vec![
                srv(20, 0, "backup.example"),
                srv(10, 1, "light.example"),
                srv(10, 9, "heavy.example"),
            ])
        };
        // The draw lands in the first unit of ten: the light one first.
        let mut low = |_total| 1;
        assert_eq!(
            hosts(plan("b.example", None, records(), &mut low)),
            ["light.example", "heavy.example", "backup.example"]
        );
        // It lands past it: the heavy one first.
        let mut high = |total| total;
        assert_eq!(
            hosts(plan("b.example", None, records(), &mut high)),
            ["heavy.example", "light.example", "backup.example"]
        );
        // Over many draws the heavy one leads 9 times in 11: the draw is
        // uniform over 0..=10, and 0 and 1 fall to the light one.
        let mut seed = 12345u64;
        let mut rng = |total: u32| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 33) % (u64::from(total) + 1)) as u32
        };
        let heavy_first = (0..1000)
            .filter(|_| hosts(plan("b.example", None, records(), &mut rng))[0] == "heavy.example")
            .count();
        assert!((760..=880).contains(&heavy_first), "{heavy_first}");
    }

    #[test]
    fn zero_weight_records_are_still_tried() {
        let r = Lookup::Records(vec![srv(0, 0, "zero.example"), srv(0, 5, "five.example")]);
        let mut high = |total| total;
        let got = hosts(plan("b.example", None, r, &mut high));
        assert_eq!(got.len(), 2);
        assert!(got.contains(&"zero.example".to_owned()));
    }
}
