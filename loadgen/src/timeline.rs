//! `loadgen timeline`: the latency of the API's home timeline
//! (`GET /api/v1/timelines/home`) for accounts that follow few and many
//! authors, against a Starling child on a seeded store.
//!
//! The store is seeded directly (before the server starts): `authors`
//! accounts with open microblog nodes and `posts` items each, published
//! round-robin so every author's posts interleave in time, and one viewer
//! per `--follows` value, following the first N authors with explicit
//! subscriptions. Requests alternate between the viewers (A B A B …), on
//! one keep-alive connection each, so their latencies are compared under
//! the same conditions, as ratios to the first. Every answer is checked:
//! status 200, `limit` statuses, ids strictly decreasing, and (for the
//! newest page) the newest posts of the followed authors.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use serde::Serialize;
use server::store::prelude::*;
use server::store::{PublishRequest, Seed, Subscription};
use server::{AccountRecord, Redb};
use stanza::BareJid;

use crate::embedded::Embedded;
use crate::stats::{self, Summary};

const DOMAIN: &str = crate::embedded::DOMAIN;
const NODE: &str = "urn:xmpp:microblog:0";

/// What to measure.
#[derive(Debug, Clone, Serialize)]
pub struct TimelinePlan {
    /// Authors with posts.
    pub authors: u32,
    /// Posts per author.
    pub posts: u32,
    /// One viewer per value, following that many authors.
    pub follows: Vec<u32>,
    /// Timed requests per viewer.
    pub requests: u32,
    /// `limit` of each request.
    pub limit: u32,
    /// Request `max_id` from the middle of the timeline every other time
    /// (a deep page) instead of always the newest.
    pub deep: bool,
}

/// One viewer's figures.
#[derive(Debug, Clone, Serialize)]
pub struct ViewerFigures {
    pub follows: u32,
    pub latency: Summary,
    /// p50 as a ratio to the first viewer's.
    pub p50_ratio: f64,
}

/// The saved record.
#[derive(Debug, Serialize)]
pub struct TimelineRecord {
    pub schema: &'static str,
    pub command: String,
    pub started_at: String,
    pub machine: String,
    pub git_commit: String,
    pub plan: TimelinePlan,
    pub seed_secs: f64,
    pub viewers: Vec<ViewerFigures>,
}

fn author(i: u32) -> BareJid {
    BareJid::new(&format!("author{i}@{DOMAIN}")).expect("a valid JID")
}

fn viewer(n: u32) -> BareJid {
    BareJid::new(&format!("viewer{n}@{DOMAIN}")).expect("a valid JID")
}

/// Seeds the store; returns a token per viewer.
fn seed(dir: &Path, plan: &TimelinePlan) -> Result<Vec<String>> {
    let store = Redb::open(dir).context("opening the store to seed it")?;
    // Logins are not timed here: one cheap key per account is enough.
    let record = AccountRecord::new("pw", 4096);
    let open = server::pubsub::Options {
        access_model: Some(server::pubsub::AccessModel::Open),
        ..Default::default()
    };
    let mut s = Seed::default();
    for i in 0..plan.authors {
        s.accounts.push((author(i), record.clone()));
        s.nodes.push((
            author(i),
            NODE.into(),
            open.clone().apply(Default::default()),
        ));
    }
    for &n in &plan.follows {
        s.accounts.push((viewer(n), record.clone()));
        for i in 0..n {
            s.subscriptions.push(Subscription {
                owner: author(i),
                node: NODE.into(),
                jid: viewer(n).to_jid(),
            });
        }
    }
    store.seed(&s).context("seeding accounts and follows")?;
    // Round-robin: post k of every author, then post k+1, so timelines
    // interleave all authors.
    let t0 = 1_700_000_000_000u64;
    for k in 0..plan.posts {
        let reqs: Vec<PublishRequest> = (0..plan.authors)
            .map(|i| PublishRequest {
                owner: author(i),
                node: NODE.into(),
                item: server::pubsub::StoredItem {
                    id: format!("p{k}"),
                    publisher: author(i).to_string(),
                    payload: format!(
                        "<entry xmlns='http://www.w3.org/2005/Atom'><title>post {k} by author {i}</title></entry>"
                    ),
                    published_ms: t0 + u64::from(k * plan.authors + i),
                },
                options: None,
                max_nodes: 100,
            })
            .collect();
        for r in store.publish_batch(&reqs)? {
            r.map_err(|e| anyhow::anyhow!("seeding a post: {e}"))?;
        }
    }
    plan.follows
        .iter()
        .map(|&n| server::personal_token(&store, &viewer(n), 10).context("making a token"))
        .collect()
}

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    r: BufReader<TcpStream>,
    host: SocketAddr,
    token: String,
}

impl Conn {
    fn open(addr: SocketAddr, token: String) -> Result<Self> {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        Ok(Self {
            r: BufReader::new(s),
            host: addr,
            token,
        })
    }

    /// GET `path`; the body of a 200.
    fn get(&mut self, path: &str) -> Result<Vec<u8>> {
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\r\n",
            self.host, self.token
        );
        self.r.get_mut().write_all(req.as_bytes())?;
        let mut line = String::new();
        self.r.read_line(&mut line)?;
        let status = line.get(9..12).unwrap_or("").to_owned();
        let mut len = 0usize;
        loop {
            line.clear();
            self.r.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse()?;
                }
            }
        }
        let mut body = vec![0; len];
        self.r.read_exact(&mut body)?;
        ensure!(
            status == "200",
            "{path}: HTTP {status}: {}",
            String::from_utf8_lossy(&body)
        );
        Ok(body)
    }
}

/// Checks a page: `limit` statuses, ids strictly decreasing, by followed
/// authors only; returns the ids.
fn check_page(body: &[u8], limit: u32, follows: u32) -> Result<Vec<u64>> {
    let v: serde_json::Value = serde_json::from_slice(body)?;
    let arr = v.as_array().context("a timeline is a JSON array")?;
    ensure!(
        arr.len() == limit as usize,
        "{} statuses, not {limit}",
        arr.len()
    );
    let mut ids = Vec::with_capacity(arr.len());
    for s in arr {
        let id: u64 = s["id"].as_str().context("status id")?.parse()?;
        let acct = s["account"]["acct"].as_str().unwrap_or("");
        let n: u32 = acct
            .strip_prefix("author")
            .and_then(|n| n.parse().ok())
            .context("author")?;
        ensure!(n < follows, "{acct} is not followed by this viewer");
        ids.push(id);
    }
    ensure!(
        ids.windows(2).all(|w| w[0] > w[1]),
        "ids not newest first: {ids:?}"
    );
    Ok(ids)
}

/// Runs the measurement.
pub fn run(
    plan: &TimelinePlan,
    binary: &Path,
    command: String,
) -> Result<(TimelineRecord, Vec<(u32, String)>)> {
    if plan.follows.iter().any(|&f| f > plan.authors || f == 0) {
        bail!(
            "--follows: each value must be between 1 and --authors ({})",
            plan.authors
        );
    }
    if u64::from(plan.limit)
        > u64::from(plan.posts) * u64::from(*plan.follows.iter().min().unwrap_or(&1))
    {
        bail!(
            "--limit {}: the smallest viewer's timeline has fewer posts",
            plan.limit
        );
    }
    let started_at = server::xep0082_datetime(crate::session::now_us() / 1000);
    let dir = tempfile::tempdir()?;
    let t = Instant::now();
    let tokens = seed(dir.path(), plan)?;
    let seed_secs = t.elapsed().as_secs_f64();
    eprintln!(
        "timeline: seeded {} authors × {} posts in {seed_secs:.1} s",
        plan.authors, plan.posts
    );
    let srv = Embedded::child(binary, dir.path(), "shared", false, true)?;
    let http = srv.ws().context("the child has no HTTP listener")?;
    let mut conns: Vec<Conn> = tokens
        .into_iter()
        .map(|t| Conn::open(http, t))
        .collect::<Result<_>>()?;
    let mut hists: Vec<_> = plan.follows.iter().map(|_| stats::histogram()).collect();
    // Where a deep page starts: walk the pages to the middle of each
    // viewer's timeline (leaving at least a page after it).
    let mut middles = Vec::new();
    for (c, &f) in conns.iter_mut().zip(&plan.follows) {
        let total = u64::from(plan.posts) * u64::from(f);
        let target = (total / 2).min(total - u64::from(plan.limit));
        let mut seen = 0u64;
        let mut max_id: Option<u64> = None;
        while seen + u64::from(plan.limit) <= target {
            let path = match max_id {
                Some(m) => format!("/api/v1/timelines/home?limit={}&max_id={m}", plan.limit),
                None => format!("/api/v1/timelines/home?limit={}", plan.limit),
            };
            let ids = check_page(&c.get(&path)?, plan.limit, f)?;
            seen += ids.len() as u64;
            max_id = ids.last().copied();
        }
        middles.push(max_id.unwrap_or(u64::MAX));
    }
    let warmup = plan.requests / 10;
    for r in 0..warmup + plan.requests {
        for (i, c) in conns.iter_mut().enumerate() {
            let deep = plan.deep && r % 2 == 1 && middles[i] != u64::MAX;
            let path = if deep {
                format!(
                    "/api/v1/timelines/home?limit={}&max_id={}",
                    plan.limit, middles[i]
                )
            } else {
                format!("/api/v1/timelines/home?limit={}", plan.limit)
            };
            let t = Instant::now();
            let body = c.get(&path)?;
            let us = t.elapsed().as_micros() as u64;
            check_page(&body, plan.limit, plan.follows[i])?;
            if r >= warmup {
                stats::record(&mut hists[i], us);
            }
        }
    }
    drop(srv);
    let base = Summary::of(&hists[0]).p50_ms;
    let viewers = plan
        .follows
        .iter()
        .zip(&hists)
        .map(|(&follows, h)| {
            let latency = Summary::of(h);
            ViewerFigures {
                follows,
                p50_ratio: if base > 0.0 {
                    latency.p50_ms / base
                } else {
                    0.0
                },
                latency,
            }
        })
        .collect();
    let record = TimelineRecord {
        schema: "starling-loadgen-timeline/1",
        command,
        started_at,
        machine: crate::sys::machine(),
        git_commit: crate::report::git_commit(),
        plan: plan.clone(),
        seed_secs,
        viewers,
    };
    let hgrms = plan
        .follows
        .iter()
        .zip(&hists)
        .map(|(&f, h)| (f, stats::hgrm(h)))
        .collect();
    Ok((record, hgrms))
}

/// The record as text.
pub fn text(r: &TimelineRecord) -> String {
    let mut out = format!(
        "home timeline: {} authors × {} posts, limit {}, {} requests per viewer{}\n",
        r.plan.authors,
        r.plan.posts,
        r.plan.limit,
        r.plan.requests,
        if r.plan.deep {
            ", every other one a deep page (max_id mid-timeline)"
        } else {
            ""
        }
    );
    out.push_str("follows        p50 ms    p90 ms    p99 ms    max ms   p50 ratio\n");
    for v in &r.viewers {
        out.push_str(&format!(
            "{:<10} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>10.2}×\n",
            v.follows,
            v.latency.p50_ms,
            v.latency.p90_ms,
            v.latency.p99_ms,
            v.latency.max_ms,
            v.p50_ratio
        ));
    }
    out
}

/// Writes the record, its text and each viewer's histogram into `dir`.
pub fn save(dir: &Path, r: &TimelineRecord, hists: &[(u32, String)]) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(
        dir.join("timeline.json"),
        serde_json::to_string_pretty(r)? + "\n",
    )?;
    std::fs::write(dir.join("report.txt"), text(r))?;
    std::fs::write(dir.join("command.txt"), format!("{}\n", r.command))?;
    for (f, h) in hists {
        std::fs::write(dir.join(format!("home-follows-{f}.hgrm")), h)?;
    }
    Ok(())
}
