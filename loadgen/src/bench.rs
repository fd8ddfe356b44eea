//! `loadgen bench --targets A,B,…`: the same plan on each target in turn,
//! A B A B …, `--repeat` times, and each figure as a ratio to the first
//! target, pair by pair (repetition i of B against repetition i of A), with
//! the median of those ratios. On a shared machine a ratio measured in one
//! run is the figure that means something; absolute figures drift.
//!
//! A target is `starling:STRATEGY` (the embedded Starling, seeded),
//! `prosody` (Prosody started with the shipped configuration and set up
//! over XMPP), `ejabberd` (likewise), `floor` (loadgen's trivial sender, [`crate::floor`]),
//! `HOST:PORT` (an external server, set up over XMPP with
//! --domain and --accounts), or a federated pair ([`crate::federated`]):
//! `federated:per-recipient`, `federated:multicast`,
//! `federated-to:HOST:PORT`.

use std::fmt::Write as _;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::figures::{median, spread, Spread, DELIVERY_FIGURES, FIGURES};
use crate::graph::Graph;
use crate::run::{self, Figures, Plan, Target};
use crate::{embedded, peers, scram, setup};

/// One comparison target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSpec {
    /// Starling with this fan-out strategy: the one built beside loadgen,
    /// or the binary at this path (to compare two builds in one run); its
    /// followers over this transport, or the plan's.
    Starling(
        String,
        Option<std::path::PathBuf>,
        Option<crate::session::Transport>,
    ),
    /// Prosody from the shipped configuration.
    Prosody,
    /// ejabberd from the shipped configuration.
    Ejabberd,
    /// The floor: loadgen's trivial sender ([`crate::floor`]).
    Floor,
    /// A server at this address.
    External(std::net::SocketAddr),
    /// Publishers on one Starling, followers on another server
    /// ([`crate::federated`]): `federated:multicast`,
    /// `federated:per-recipient` (two Starling children), or
    /// `federated-to:HOST:PORT` (followers on the server there, b.example).
    Federated(crate::federated::Fan, crate::federated::Receiver),
}

impl std::str::FromStr for TargetSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(rest) = s.strip_prefix("starling:") {
            let (f, bin) = match rest.split_once('@') {
                Some((f, path)) if !path.is_empty() => (f, Some(std::path::PathBuf::from(path))),
                Some(_) => return Err(format!("{s:?}: a path must follow '@'")),
                None => (rest, None),
            };
            let (f, transport) = match f.split_once('+') {
                Some((f, "tcp")) => (f, Some(crate::session::Transport::Tcp)),
                Some((f, "websocket")) => (f, Some(crate::session::Transport::Websocket)),
                Some((f, "sse")) => (f, Some(crate::session::Transport::Sse)),
                Some((_, other)) => {
                    return Err(format!(
                        "{s:?}: transport {other:?} is not tcp, websocket or sse"
                    ))
                }
                None => (f, None),
            };
            if !fanout::STRATEGIES.contains(&f) {
                return Err(format!(
                    "unknown strategy {f:?}; one of {}",
                    fanout::STRATEGIES.join(", ")
                ));
            }
            if let Some(b) = bin.as_ref().filter(|b| !b.is_file()) {
                return Err(format!("{s:?}: no starling binary at {}", b.display()));
            }
            return Ok(Self::Starling(f.to_owned(), bin, transport));
        }
        if s == "starling" {
            return Ok(Self::Starling("shared".into(), None, None));
        }
        {
            use crate::federated::{Fan, Receiver};
            match s {
                "federated:multicast" => {
                    return Ok(Self::Federated(Fan::Multicast, Receiver::Starling))
                }
                "federated:per-recipient" => {
                    return Ok(Self::Federated(Fan::PerRecipient, Receiver::Starling))
                }
                _ => {}
            }
            if let Some(addr) = s.strip_prefix("federated-to:") {
                let addr = addr
                    .parse()
                    .map_err(|_| format!("{s:?}: federated-to: takes HOST:PORT"))?;
                return Ok(Self::Federated(Fan::Multicast, Receiver::External(addr)));
            }
        }
        if s == "prosody" {
            return Ok(Self::Prosody);
        }
        if s == "floor" {
            return Ok(Self::Floor);
        }
        if s == "ejabberd" {
            return Ok(Self::Ejabberd);
        }
        s.parse().map(Self::External).map_err(|_| {
            format!("{s:?} is not starling:STRATEGY, prosody, ejabberd, floor, or HOST:PORT")
        })
    }
}

impl std::fmt::Display for TargetSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Starling(s, bin, transport) => {
                write!(f, "starling:{s}")?;
                if let Some(t) = transport {
                    write!(f, "+{}", format!("{t:?}").to_lowercase())?;
                }
                if let Some(b) = bin {
                    write!(f, "@{}", b.display())?;
                }
                Ok(())
            }
            Self::Prosody => write!(f, "prosody"),
            Self::Floor => write!(f, "floor"),
            Self::Ejabberd => write!(f, "ejabberd"),
            Self::External(a) => write!(f, "{a}"),
            Self::Federated(fan, receiver) => match receiver {
                crate::federated::Receiver::External(a) => write!(f, "federated-to:{a}"),
                crate::federated::Receiver::Starling => write!(
                    f,
                    "federated:{}",
                    match fan {
                        crate::federated::Fan::Multicast => "multicast",
                        crate::federated::Fan::PerRecipient => "per-recipient",
                    }
                ),
            },
        }
    }
}

/// What keeps a started target alive (its server, its data directory)
/// until the bench ends.
type Keep = Box<dyn std::any::Any>;

/// One bench, as saved.
#[derive(Debug, Serialize)]
pub struct BenchRecord {
    /// The command line.
    pub command: String,
    /// When it started.
    pub started_at: String,
    /// The machine.
    pub machine: String,
    /// The source revision loadgen was built from.
    pub git_commit: String,
    /// The plan, the same for every target (a target may name its own
    /// transport for followers; its label says so).
    pub plan: Plan,
    /// Targets, in order; the first is the baseline of the ratios.
    pub targets: Vec<String>,
    /// Each target's version/settings label.
    pub labels: Vec<String>,
    /// Figures per target per repetition.
    pub runs: Vec<Vec<Figures>>,
    /// Per figure, per target: (median, min, max) over repetitions.
    pub medians: Vec<(String, Vec<Spread>)>,
    /// Per figure, per non-baseline target: the median over repetitions
    /// of target/baseline ratios, pair by pair.
    pub ratios: Vec<(String, Vec<f64>)>,
}

/// Runs the bench.
pub fn bench(
    targets: &[TargetSpec],
    repeat: usize,
    plan: &Plan,
    graph: &Graph,
    ext: &Target,
    quiet: bool,
    command: String,
) -> Result<BenchRecord> {
    if targets.is_empty() {
        bail!("--targets names at least one target");
    }
    let rt = crate::runtime()?;
    let mut live: Vec<Keep> = Vec::new();
    let mut tgts = Vec::new();
    let mut labels = Vec::new();
    let mut caches = Vec::new();
    let mut plans = Vec::new();
    for t in targets {
        if plan.transport == crate::session::Transport::Sse
            && !matches!(t, TargetSpec::Starling(..))
        {
            bail!("--transport sse: only a Starling target that loadgen seeds serves the streaming API ({t})");
        }
        let (l, target, label) = match t {
            TargetSpec::Starling(fanout, bin, transport) => {
                let data = tempfile::tempdir()?;
                embedded::seed(data.path(), graph, plan.mechanism)?;
                let bin = bin.clone().or_else(embedded::sibling_binary);
                let transport = transport.unwrap_or(plan.transport);
                // The HTTP listener serves WebSocket and the streaming API.
                let websocket = transport != crate::session::Transport::Tcp;
                let server = match bin.as_deref() {
                    // A child process, so its CPU and memory are its own.
                    Some(bin) => {
                        embedded::Embedded::child(bin, data.path(), fanout, ext.tls, websocket)?
                    }
                    None => embedded::Embedded::in_process(embedded::config(
                        data.path(),
                        fanout,
                        ext.tls,
                        websocket,
                    ))?,
                };
                let target = Target {
                    addr: server.addr(),
                    domain: embedded::DOMAIN.into(),
                    user: std::sync::Arc::new(embedded::user),
                    password: std::sync::Arc::new(|_| embedded::PASSWORD.into()),
                    pid: server.pid(),
                    tls: ext.tls,
                    ws: server.ws(),
                    b: None,
                };
                let from = match &t {
                    TargetSpec::Starling(_, Some(b), _) => format!(" at {}", b.display()),
                    _ => String::new(),
                };
                let label = format!(
                    "starling {}{from} (fan-out {fanout}; followers over {transport:?}; \
                     fsync before ack; SCRAM {} iterations)",
                    env!("CARGO_PKG_VERSION"),
                    embedded::ITERATIONS
                );
                (Box::new((server, data)) as Keep, target, label)
            }
            TargetSpec::Prosody => {
                let p = peers::Prosody::start()?;
                let target = Target {
                    addr: p.addr,
                    domain: peers::PROSODY_DOMAIN.into(),
                    user: std::sync::Arc::new(|i| format!("lg{i}")),
                    password: std::sync::Arc::new(|_| "loadgen-pw".into()),
                    pid: Some(p.pid()),
                    tls: ext.tls,
                    ws: None,
                    b: None,
                };
                let label = format!(
                    "prosody {} (internal_hashed, no fsync; SCRAM-SHA-1 only)",
                    peers::Prosody::version()
                );
                (Box::new(p) as Keep, target, label)
            }
            TargetSpec::Ejabberd => {
                let e = peers::Ejabberd::start()?;
                let target = Target {
                    addr: e.addr,
                    domain: peers::EJABBERD_DOMAIN.into(),
                    user: std::sync::Arc::new(|i| format!("lg{i}")),
                    password: std::sync::Arc::new(|_| "loadgen-pw".into()),
                    pid: Some(e.pid()),
                    tls: ext.tls,
                    ws: None,
                    b: None,
                };
                let label = format!(
                    "ejabberd {} (mnesia, no fsync; SCRAM-SHA-1 stored; no shapers)",
                    peers::Ejabberd::version()
                );
                (Box::new(e) as Keep, target, label)
            }
            TargetSpec::Floor => {
                if ext.tls || plan.transport == crate::session::Transport::Websocket {
                    bail!("the floor target speaks plain TCP only (no --tls, no websocket)");
                }
                let f = crate::floor::Floor::start(graph)?;
                let target = Target {
                    addr: f.addr,
                    domain: embedded::DOMAIN.into(),
                    user: std::sync::Arc::new(embedded::user),
                    password: std::sync::Arc::new(|_| embedded::PASSWORD.into()),
                    pid: Some(f.pid()),
                    tls: false,
                    ws: None,
                    b: None,
                };
                let label = "floor (loadgen's trivial sender: two threads, no store; each \
                             event made once, a session's queue in one write)"
                    .to_owned();
                (Box::new(f) as Keep, target, label)
            }
            TargetSpec::Federated(fan, receiver) => {
                let bin = embedded::sibling_binary().context(
                    "federated targets run starling children: build starling beside loadgen",
                )?;
                let (servers, target, label) =
                    crate::federated::start(&bin, plan, graph, "shared", *fan, receiver)?;
                let keys = std::sync::Arc::new(scram::KeyCache::default());
                rt.block_on(crate::federated::set_up_external(
                    &servers, plan, graph, &target, &keys,
                ))
                .with_context(|| format!("setting up {t}"))?;
                (Box::new(servers) as Keep, target, label)
            }
            TargetSpec::External(addr) => (
                Box::new(()) as Keep,
                Target {
                    addr: *addr,
                    ..ext.clone()
                },
                format!("server at {addr}"),
            ),
        };
        let mut own = plan.clone();
        if let TargetSpec::Starling(_, _, Some(transport)) = t {
            own.transport = *transport;
        }
        plans.push(own);
        // Each target keeps its own key cache, warmed by its setup.
        let keys = std::sync::Arc::new(scram::KeyCache::default());
        if !matches!(
            t,
            TargetSpec::Starling(..) | TargetSpec::Floor | TargetSpec::Federated(..)
        ) {
            rt.block_on(async {
                setup::register(&target, plan.sessions, plan.sources).await?;
                setup::follow_graph(
                    &target,
                    graph,
                    plan.mechanism,
                    plan.mech,
                    plan.sources,
                    &keys,
                )
                .await
            })
            .with_context(|| format!("setting up {t}"))?;
        }
        live.push(l);
        caches.push(keys);
        tgts.push(target);
        labels.push(label);
    }
    let mut runs: Vec<Vec<Figures>> = vec![Vec::new(); targets.len()];
    for rep in 0..repeat {
        for (i, t) in tgts.iter().enumerate() {
            if !quiet {
                eprintln!("bench: repetition {}/{repeat}, {}", rep + 1, targets[i]);
            }
            let (f, _) = rt.block_on(run::run(&plans[i], graph, t, &caches[i], quiet))?;
            runs[i].push(f);
        }
    }
    drop(live);
    let mut medians = Vec::new();
    let mut ratios = Vec::new();
    for (name, get) in FIGURES {
        let per: Vec<Spread> = runs.iter().map(|rs| spread(rs, *get)).collect();
        medians.push(((*name).to_owned(), per));
        let r: Vec<f64> = runs[1..]
            .iter()
            .map(|rs| {
                let mut v: Vec<f64> = rs
                    .iter()
                    .zip(&runs[0])
                    .map(|(b, a)| get(b) / get(a))
                    .filter(|x| x.is_finite())
                    .collect();
                median(&mut v)
            })
            .collect();
        ratios.push(((*name).to_owned(), r));
    }
    Ok(BenchRecord {
        command,
        started_at: server::xep0082_datetime(crate::session::now_us() / 1000),
        machine: crate::sys::machine(),
        git_commit: crate::report::git_commit(),
        plan: plan.clone(),
        targets: targets.iter().map(ToString::to_string).collect(),
        labels,
        runs,
        medians,
        ratios,
    })
}

/// The bench report.
pub fn text(b: &BenchRecord) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "loadgen bench, {} ({} repetitions, A B A B …)",
        b.started_at,
        b.runs.first().map_or(0, Vec::len)
    );
    let _ = writeln!(out, "machine: {}; loadgen at {}", b.machine, b.git_commit);
    for (t, l) in b.targets.iter().zip(&b.labels) {
        let _ = writeln!(out, "target {t}: {l}");
    }
    let _ = writeln!(
        out,
        "plan: {} sessions, {:?}, {} celebrit{} at {}/s, background {:?} at {}/s, {}s ({}s warm-up)\n",
        b.plan.sessions,
        b.plan.mechanism,
        b.plan.celebrities,
        if b.plan.celebrities == 1 { "y" } else { "ies" },
        b.plan.rate,
        b.plan.background,
        b.plan.background_rate,
        b.plan.duration_s,
        b.plan.warmup_s
    );
    // Columns as wide as their widest cell, so long target names line up.
    let heads: Vec<String> = b
        .targets
        .iter()
        .cloned()
        .chain(
            b.targets
                .iter()
                .skip(1)
                .map(|t| format!("{t} / {}", b.targets[0])),
        )
        .collect();
    // An idle run publishes nothing: its delivery figures are left out,
    // as is any figure no target measured.
    let skip = if b.plan.idle { DELIVERY_FIGURES } else { 0 };
    let rows: Vec<(String, Vec<String>)> = b
        .medians
        .iter()
        .zip(&b.ratios)
        .skip(skip)
        .filter(|((_, per), _)| per.iter().any(|(m, _, _)| !m.is_nan()))
        .map(|((name, per), (_, ratios))| {
            let cells = per
                .iter()
                .map(|(m, lo, hi)| {
                    if m.is_nan() {
                        "-".to_owned()
                    } else {
                        format!("{m:.2} [{lo:.2}–{hi:.2}]")
                    }
                })
                .chain(ratios.iter().map(|r| {
                    if r.is_finite() {
                        format!("{r:.2}×")
                    } else {
                        "-".to_owned()
                    }
                }))
                .collect();
            (name.clone(), cells)
        })
        .collect();
    let width: Vec<usize> = (0..heads.len())
        .map(|c| {
            rows.iter()
                .map(|(_, cells)| cells[c].chars().count())
                .chain([heads[c].chars().count()])
                .max()
                .unwrap_or(0)
                + 2
        })
        .collect();
    let _ = write!(out, "{:<28}", "median [min–max]");
    for (h, w) in heads.iter().zip(&width) {
        let _ = write!(out, "{h:>w$}");
    }
    out.push('\n');
    for (name, cells) in &rows {
        let _ = write!(out, "{name:<28}");
        for (c, w) in cells.iter().zip(&width) {
            let _ = write!(out, "{c:>w$}");
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_bad_ones_are_named() {
        assert_eq!(
            "starling:sharded".parse::<TargetSpec>(),
            Ok(TargetSpec::Starling("sharded".into(), None, None))
        );
        let exe = std::env::current_exe().unwrap();
        let with_path = format!("starling:shared@{}", exe.display());
        assert_eq!(
            with_path.parse::<TargetSpec>(),
            Ok(TargetSpec::Starling(
                "shared".into(),
                Some(exe.clone()),
                None
            ))
        );
        assert_eq!(
            with_path.parse::<TargetSpec>().unwrap().to_string(),
            with_path
        );
        let e = "starling:shared@/nonexistent/starling"
            .parse::<TargetSpec>()
            .unwrap_err();
        assert!(e.contains("no starling binary"), "{e}");
        assert!("starling:shared@".parse::<TargetSpec>().is_err());
        let ws = "starling:shared+websocket".parse::<TargetSpec>().unwrap();
        assert_eq!(
            ws,
            TargetSpec::Starling(
                "shared".into(),
                None,
                Some(crate::session::Transport::Websocket)
            )
        );
        assert_eq!(ws.to_string(), "starling:shared+websocket");
        assert!("starling:shared+carrier-pigeon"
            .parse::<TargetSpec>()
            .is_err());
        assert_eq!("prosody".parse::<TargetSpec>(), Ok(TargetSpec::Prosody));
        assert!(matches!(
            "127.0.0.1:5222".parse::<TargetSpec>(),
            Ok(TargetSpec::External(_))
        ));
        let e = "starling:quantum".parse::<TargetSpec>().unwrap_err();
        assert!(e.contains("quantum") && e.contains("shared"), "{e}");
        assert_eq!("ejabberd".parse::<TargetSpec>(), Ok(TargetSpec::Ejabberd));
        assert_eq!("floor".parse::<TargetSpec>(), Ok(TargetSpec::Floor));
        assert!("openfire".parse::<TargetSpec>().is_err());
        for t in [
            "federated:multicast",
            "federated:per-recipient",
            "federated-to:127.0.0.3:5222",
        ] {
            assert_eq!(t.parse::<TargetSpec>().unwrap().to_string(), t);
        }
        let e = "federated-to:b.example".parse::<TargetSpec>().unwrap_err();
        assert!(e.contains("HOST:PORT"), "{e}");
    }
}
