//! Several loadgen processes for one run, when the sessions outnumber
//! what one process may hold open (20,000 files per process here).
//!
//! The parent starts `loadgen run --worker K/W …` processes, each holding a
//! contiguous slice of the users, and meets them once over their
//! stdin/stdout, one line each way:
//! - a worker, once its logins are done: `up BITS` (one `0`/`1` per user,
//!   `1` for the sessions it has up);
//! - the parent, once every worker is up: `go START_US BITS`, every
//!   worker's sessions and the instant publishing starts, µs on the system
//!   clock all processes share. Each worker then draws the same schedule
//!   from the seed, publishes for the publishers it holds, and expects
//!   deliveries for the followers it holds;
//! - a worker, at the end: `part JSON`, its [`Part`], which the parent
//!   merges into the run's figures.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::run::{Part, Plan};

/// How many processes `sessions` need when each may hold `per_process`.
pub fn count(sessions: usize, per_process: usize) -> usize {
    sessions.div_ceil(per_process.max(1))
}

/// The users worker `k` of `w` holds.
pub fn slice(sessions: usize, k: usize, w: usize) -> std::ops::Range<usize> {
    let chunk = sessions.div_ceil(w.max(1));
    (k * chunk).min(sessions)..((k + 1) * chunk).min(sessions)
}

/// `K/W` on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerId {
    /// This worker, from 0.
    pub k: usize,
    /// Workers in all.
    pub w: usize,
}

impl std::str::FromStr for WorkerId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (k, w) = s.split_once('/').ok_or("expected K/W, e.g. 0/2")?;
        let k: usize = k.parse().map_err(|_| "K is not a number")?;
        let w: usize = w.parse().map_err(|_| "W is not a number")?;
        if w == 0 || k >= w {
            return Err("K must be below W".into());
        }
        Ok(Self { k, w })
    }
}

fn bits(up: &[bool]) -> String {
    up.iter().map(|&b| if b { '1' } else { '0' }).collect()
}

fn unbits(s: &str, n: usize) -> Result<Vec<bool>> {
    if s.len() != n {
        bail!("a session bitmap of {} users, expected {n}", s.len());
    }
    Ok(s.bytes().map(|b| b == b'1').collect())
}

/// The worker's side of the rendezvous: report `up`, wait for `go`.
pub fn meet_parent(up: Vec<bool>) -> Result<(Vec<bool>, u64)> {
    let n = up.len();
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "up {}", bits(&up))?;
        out.flush()?;
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the parent's go")?;
    let mut f = line.split_whitespace();
    match (f.next(), f.next(), f.next()) {
        (Some("go"), Some(start), Some(all)) => Ok((unbits(all, n)?, start.parse()?)),
        _ => bail!("expected `go START BITS` from the parent, got {line:?}"),
    }
}

/// The worker's last word.
pub fn report(part: &Part) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "part {}", serde_json::to_string(part)?)?;
    out.flush()?;
    Ok(())
}

/// Runs one repetition of `plan` over `w` worker processes started with
/// `args` (the target and plan flags; `--worker K/W` is added) and
/// returns their parts.
pub fn run(plan: &Plan, w: usize, args: &[String]) -> Result<Vec<Part>> {
    let exe = std::env::current_exe().context("finding the loadgen binary for its workers")?;
    let n = plan.sessions;
    let mut children: Vec<(Child, BufReader<std::process::ChildStdout>)> = Vec::new();
    for k in 0..w {
        let mut child = Command::new(&exe)
            .arg("run")
            .args(args)
            .args(["--worker", &format!("{k}/{w}"), "--quiet"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting worker {k} ({})", exe.display()))?;
        let out = BufReader::new(child.stdout.take().context("a worker's stdout")?);
        children.push((child, out));
    }
    let read = |out: &mut BufReader<std::process::ChildStdout>, k: usize, word: &str| {
        let mut line = String::new();
        out.read_line(&mut line)?;
        match line.trim_end().split_once(' ') {
            Some((w, rest)) if w == word => Ok(rest.to_owned()),
            _ => bail!("worker {k}: expected `{word} …`, got {:?}", truncate(&line)),
        }
    };
    // Everyone's logins first.
    let mut all = vec![false; n];
    for (k, (_, out)) in children.iter_mut().enumerate() {
        let up = unbits(&read(out, k, "up")?, n)?;
        for (a, u) in all.iter_mut().zip(up) {
            *a |= u;
        }
    }
    // Then one start for all, after the sessions have settled.
    let settle_us = (1000 + n as u64 / 5) * 1000;
    let start = crate::session::now_us() + settle_us;
    let go = format!("go {start} {}\n", bits(&all));
    for (child, _) in &mut children {
        let stdin = child.stdin.as_mut().context("a worker's stdin")?;
        stdin.write_all(go.as_bytes())?;
        stdin.flush()?;
    }
    let mut parts = Vec::with_capacity(w);
    for (k, (child, out)) in children.iter_mut().enumerate() {
        let json = read(out, k, "part")?;
        parts.push(serde_json::from_str(&json).with_context(|| format!("worker {k}'s part"))?);
        let status = child.wait()?;
        if !status.success() {
            bail!("worker {k} exited with {status}");
        }
    }
    Ok(parts)
}

fn truncate(s: &str) -> String {
    s.chars().take(120).collect()
}

/// The plan as `loadgen` flags, for the workers.
pub fn plan_args(plan: &Plan) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "--sessions".into(),
        plan.sessions.to_string(),
        "--celebrities".into(),
        plan.celebrities.to_string(),
        "--background".into(),
        format!("{:?}", plan.background).to_lowercase(),
        "--follows".into(),
        plan.follows.to_string(),
        "--zipf-s".into(),
        plan.zipf_s.to_string(),
        "--mechanism".into(),
        format!("{:?}", plan.mechanism).to_lowercase(),
        "--rate".into(),
        plan.rate.to_string(),
        "--background-rate".into(),
        plan.background_rate.to_string(),
        "--payload".into(),
        plan.payload.to_string(),
        "--duration".into(),
        plan.duration_s.to_string(),
        "--warmup".into(),
        plan.warmup_s.to_string(),
        "--ramp".into(),
        plan.ramp.to_string(),
        "--mech".into(),
        match plan.mech {
            crate::session::Mech::Plain => "plain",
            crate::session::Mech::ScramSha1 => "scram-sha1",
            crate::session::Mech::ScramSha256 => "scram-sha256",
        }
        .into(),
        "--transport".into(),
        format!("{:?}", plan.transport).to_lowercase(),
        "--chaos".into(),
        plan.chaos.to_string(),
        "--sources".into(),
        plan.sources.to_string(),
        "--seed".into(),
        plan.seed.to_string(),
    ];
    if let Some(b) = plan.burst {
        a.extend(["--burst".into(), b.to_string()]);
    }
    if plan.sm {
        a.push("--sm".into());
    }
    if plan.idle {
        a.push("--idle".into());
    }
    if plan.churn > 0.0 {
        a.extend(["--churn".into(), plan.churn.to_string()]);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn slices_cover_every_user_once() {
        for (n, w) in [(10, 3), (30_000, 2), (7, 7), (5, 1)] {
            let mut seen = vec![0; n];
            for k in 0..w {
                for i in slice(n, k, w) {
                    seen[i] += 1;
                }
            }
            assert!(seen.iter().all(|&c| c == 1), "{n}/{w}");
        }
        assert_eq!(count(30_000, 19_500), 2);
        assert_eq!(count(19_500, 19_500), 1);
        assert!("2/2".parse::<WorkerId>().is_err());
        assert_eq!("1/2".parse::<WorkerId>(), Ok(WorkerId { k: 1, w: 2 }));
    }

    #[test]
    fn a_plan_survives_the_trip_through_worker_flags() {
        let cli = crate::cli::Cli::parse_from([
            "loadgen",
            "--sessions",
            "123",
            "--mechanism",
            "pubsub",
            "--background",
            "zipf",
            "--mech",
            "scram-sha256",
            "--burst",
            "4",
            "--rate",
            "2.5",
            "--idle",
        ]);
        let plan = cli.plan();
        let mut args = vec!["loadgen".to_owned(), "run".to_owned()];
        args.extend(plan_args(&plan));
        let again = crate::cli::Cli::parse_from(&args).plan();
        assert_eq!(
            serde_json::to_value(&plan).unwrap(),
            serde_json::to_value(&again).unwrap()
        );
    }
}
