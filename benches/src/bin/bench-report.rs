//! Turns criterion's saved estimates into `results/BENCHMARKS.md`.
//!
//! It reads `target/criterion/**/new/{benchmark,estimates}.json`, written by
//! the last `cargo bench`, and prints tables; nothing in the output is typed
//! by hand. Run `scripts/bench`, which runs the benches and then this.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Parser;
use serde::Deserialize;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Writes results/BENCHMARKS.md from criterion's output.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Where criterion saved its results.
    #[arg(long, default_value = "target/criterion")]
    criterion_dir: PathBuf,
    /// The Markdown file to write.
    #[arg(long, default_value = "results/BENCHMARKS.md")]
    out: PathBuf,
    /// Registry shards the fan-out benches ran with (for per-core figures).
    #[arg(long, default_value_t = 2)]
    shards: u32,
    /// The command that produced the criterion results, quoted in the file.
    #[arg(long, default_value = "scripts/bench")]
    command: String,
}

#[derive(Debug, Deserialize)]
struct BenchmarkJson {
    group_id: String,
    function_id: Option<String>,
    value_str: Option<String>,
    throughput: Option<Throughput>,
}

#[derive(Debug, Deserialize)]
enum Throughput {
    Bytes(u64),
    Elements(u64),
    BytesDecimal(u64),
    ElementsAndBytes { elements: u64, bytes: u64 },
}

#[derive(Debug, Deserialize)]
struct Estimate {
    point_estimate: f64,
}

#[derive(Debug, Deserialize)]
struct Estimates {
    median: Estimate,
}

/// One benchmark: median time per iteration (ns) and its throughput unit.
#[derive(Debug, Clone)]
struct Bench {
    ns: f64,
    elements: Option<u64>,
    bytes: Option<u64>,
}

impl Bench {
    fn ns_per_element(&self) -> Option<f64> {
        self.elements.map(|e| self.ns / e as f64)
    }
    fn per_second(&self) -> Option<f64> {
        self.elements.map(|e| e as f64 * 1e9 / self.ns)
    }
    fn mb_per_second(&self) -> Option<f64> {
        self.bytes.map(|b| b as f64 * 1e9 / self.ns / 1e6)
    }
}

type Key = (String, String, String); // group, function, value

fn load(dir: &Path) -> Result<BTreeMap<Key, Bench>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if !p.is_dir() {
                continue;
            }
            if p.file_name().is_some_and(|n| n == "new") {
                let bj = p.join("benchmark.json");
                let ej = p.join("estimates.json");
                if !(bj.exists() && ej.exists()) {
                    continue;
                }
                let b: BenchmarkJson = serde_json::from_str(&std::fs::read_to_string(&bj)?)
                    .with_context(|| format!("reading {}", bj.display()))?;
                let est: Estimates = serde_json::from_str(&std::fs::read_to_string(&ej)?)
                    .with_context(|| format!("reading {}", ej.display()))?;
                let (elements, bytes) = match b.throughput {
                    Some(Throughput::Elements(n)) => (Some(n), None),
                    Some(Throughput::Bytes(n) | Throughput::BytesDecimal(n)) => (None, Some(n)),
                    Some(Throughput::ElementsAndBytes { elements, bytes }) => {
                        (Some(elements), Some(bytes))
                    }
                    None => (None, None),
                };
                out.insert(
                    (
                        b.group_id,
                        b.function_id.unwrap_or_default(),
                        b.value_str.unwrap_or_default(),
                    ),
                    Bench {
                        ns: est.median.point_estimate,
                        elements,
                        bytes,
                    },
                );
            } else if p
                .file_name()
                .is_none_or(|n| n != "report" && n != "base" && n != "change")
            {
                stack.push(p);
            }
        }
    }
    if out.is_empty() {
        bail!(
            "no criterion results under {} (run `cargo bench` first)",
            dir.display()
        );
    }
    Ok(out)
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or_else(
            || "unknown".into(),
            |kb| format!("{:.1} GiB", kb / 1024.0 / 1024.0),
        );
    let rustc = std::process::Command::new("rustc")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    format!("- CPU: {cpu}\n- cores: {cores}\n- memory: {mem}\n- toolchain: {rustc}\n- commit: {commit}\n")
}

fn fmt_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2} M/s", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1} k/s", r / 1e3)
    } else {
        format!("{r:.0} /s")
    }
}

fn fmt_width(w: &str) -> String {
    match w.parse::<u64>() {
        Ok(n) if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        Ok(n) if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        _ => w.to_owned(),
    }
}

/// `| strategy | 1 | 100 | ... |` and its separator row.
fn width_header(md: &mut String, widths: &[String]) -> std::fmt::Result {
    write!(md, "| strategy |")?;
    for w in widths {
        write!(md, " {} |", fmt_width(w))?;
    }
    write!(md, "\n|---|")?;
    for _ in widths {
        write!(md, "---|")?;
    }
    writeln!(md)
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "**missed**"
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let all = load(&args.criterion_dir)?;
    let get = |g: &str, f: &str, v: &str| all.get(&(g.to_owned(), f.to_owned(), v.to_owned()));
    let strategies = fanout::STRATEGIES;
    let shards = args.shards as f64;
    let mut md = String::new();

    writeln!(md, "# Benchmarks\n")?;
    writeln!(
        md,
        "Generated by `cargo run --release -p starling-benches --bin bench-report` from the criterion \
         results of `{}`. Do not edit by hand: rerun the command.\n",
        args.command
    )?;
    writeln!(
        md,
        "Figures are criterion's median time per iteration, divided by the iteration's elements.\n"
    )?;
    writeln!(md, "## Machine\n\n{}", machine())?;

    // Targets.
    writeln!(md, "## Targets (issue #2)\n")?;
    writeln!(md, "| target | measured | verdict |\n|---|---|---|")?;
    if let Some(b) = get("parse", "framer_and_parse", "mixed") {
        let mbs = b.mb_per_second().unwrap_or(0.0);
        writeln!(
            md,
            "| framer + parse ≥ 500 MB/s (mixed corpus) | {mbs:.0} MB/s | {} |",
            verdict(mbs >= 500.0)
        )?;
    }
    let at = "100000";
    let shared = get("fanout_shared", "1pub", at).and_then(Bench::ns_per_element);
    let sharded = get("fanout_sharded", "1pub", at).and_then(Bench::ns_per_element);
    if let (Some(s), Some(h)) = (shared, sharded) {
        let per_core = h * shards;
        writeln!(
            md,
            "| ≤ 50 ns per delivery at 100k: `shared` on one core, or `sharded` per core | shared {s:.1} ns; sharded {per_core:.1} ns per core ({h:.1} ns wall, {shards} shards) | {} |",
            verdict(s <= 50.0 || per_core <= 50.0)
        )?;
    }
    if let Some(naive) = get("fanout_naive", "1pub", at) {
        let best = strategies
            .iter()
            .filter_map(|s| get(&format!("fanout_{s}"), "1pub", at).map(|b| (*s, b.ns)))
            .min_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((name, ns)) = best {
            let ratio = naive.ns / ns;
            writeln!(
                md,
                "| best strategy ≥ 5× `naive` (100k, 1 publisher, same run) | `{name}` {ratio:.1}× | {} |",
                verdict(ratio >= 5.0)
            )?;
        }
    }

    // Fan-out tables.
    for (func, title) in [
        ("1pub", "one publisher"),
        (
            "8pub_oversubscribed",
            "eight concurrent publishers (8 threads on 2 cores: oversubscribed)",
        ),
    ] {
        let widths: Vec<String> = {
            let mut w: Vec<u64> = all
                .keys()
                .filter(|(g, f, _)| g.starts_with("fanout_") && f == func)
                .filter_map(|(_, _, v)| v.parse().ok())
                .collect();
            w.sort_unstable();
            w.dedup();
            w.into_iter().map(|n| n.to_string()).collect()
        };
        if widths.is_empty() {
            continue;
        }
        writeln!(md, "\n## Fan-out, {title}\n")?;
        writeln!(
            md,
            "Each cell: ns per delivery / deliveries per second. Sinks are the real outbound queues. \
             `sharded` also per core (× {shards} shards). `broadcast` includes the receivers' filtering, \
             since that is where its per-recipient work happens.\n"
        )?;
        width_header(&mut md, &widths)?;
        for s in strategies {
            write!(md, "| `{s}` |")?;
            for w in &widths {
                match get(&format!("fanout_{s}"), func, w) {
                    Some(b) => write!(
                        md,
                        " {:.1} ns / {} |",
                        b.ns_per_element().unwrap_or(f64::NAN),
                        fmt_rate(b.per_second().unwrap_or(0.0))
                    )?,
                    None => write!(md, " – |")?,
                }
            }
            writeln!(md)?;
            if *s == "sharded" {
                write!(md, "| `sharded` per core |")?;
                for w in &widths {
                    match get("fanout_sharded", func, w) {
                        Some(b) => write!(
                            md,
                            " {:.1} ns / {} |",
                            b.ns_per_element().unwrap_or(f64::NAN) * shards,
                            fmt_rate(b.per_second().unwrap_or(0.0) / shards)
                        )?,
                        None => write!(md, " – |")?,
                    }
                }
                writeln!(md)?;
            }
        }
        writeln!(md, "\nSpeed-up over `naive` in the same run:\n")?;
        width_header(&mut md, &widths)?;
        for s in strategies.iter().filter(|s| **s != "naive") {
            write!(md, "| `{s}` |")?;
            for w in &widths {
                match (
                    get("fanout_naive", func, w),
                    get(&format!("fanout_{s}"), func, w),
                ) {
                    (Some(n), Some(b)) => write!(md, " {:.1}× |", n.ns / b.ns)?,
                    _ => write!(md, " – |")?,
                }
            }
            writeln!(md)?;
        }
    }

    // Parse.
    writeln!(md, "\n## Framer + parse\n")?;
    writeln!(
        md,
        "The server's read path over a 1 MiB stream read in 4 KiB chunks: frame, then index each \
         stanza's routing fields.\n"
    )?;
    writeln!(
        md,
        "| corpus | MB/s | stanzas/s | mean stanza |\n|---|---|---|---|"
    )?;
    let mut cases: Vec<(&str, Vec<benchkit::corpus::Kind>)> = benchkit::corpus::Kind::ALL
        .iter()
        .map(|k| (k.label(), vec![*k]))
        .collect();
    cases.push(("mixed", benchkit::corpus::Kind::ALL.to_vec()));
    for (label, kinds) in cases {
        if let Some(b) = get("parse", "framer_and_parse", label) {
            let (stream, n) = benchkit::corpus::stream(&kinds, benchkit::corpus::STREAM_BYTES);
            let per_s = n as f64 * 1e9 / b.ns;
            writeln!(
                md,
                "| {label} | {:.0} | {} | {} B |",
                b.mb_per_second().unwrap_or(0.0),
                fmt_rate(per_s),
                stream.len() / n.max(1)
            )?;
        }
    }

    // Serialize.
    if let (Some(per), Some(tpl)) = (
        get("serialize", "per_recipient", ""),
        get("serialize", "template", ""),
    ) {
        writeln!(md, "\n## Serialization per recipient\n")?;
        writeln!(
            md,
            "One publish with a 300 B Atom entry to 1,000 recipients: the whole message serialized per \
             recipient, against the serialize-once template completed per recipient by a vectored write.\n"
        )?;
        writeln!(
            md,
            "| method | ns per recipient | recipients/s |\n|---|---|---|"
        )?;
        for (name, b) in [("per recipient", per), ("template", tpl)] {
            writeln!(
                md,
                "| {name} | {:.1} | {} |",
                b.ns_per_element().unwrap_or(f64::NAN),
                fmt_rate(b.per_second().unwrap_or(0.0))
            )?;
        }
        writeln!(md, "\nTemplate speed-up: {:.1}×", per.ns / tpl.ns)?;
    }

    // Registry map.
    let maps = ["dashmap", "sharded_rwlock"];
    if maps
        .iter()
        .all(|m| get("registry_map", m, "1thread").is_some())
    {
        writeln!(md, "\n## Registry map: dashmap against a sharded RwLock\n")?;
        writeln!(
            md,
            "100k accounts; per operation: 90% lookup, 9% get-or-insert of an existing key, 1% insert \
             and remove. The registry uses the faster (`fanout::map::AccountMap`).\n"
        )?;
        writeln!(
            md,
            "| map | 1 thread ns/op | 2 threads ns/op (wall) |\n|---|---|---|"
        )?;
        for m in maps {
            let one = get("registry_map", m, "1thread").and_then(Bench::ns_per_element);
            let two = get("registry_map", m, "2threads").and_then(Bench::ns_per_element);
            writeln!(
                md,
                "| {m} | {} | {} |",
                one.map_or("–".into(), |v| format!("{v:.1}")),
                two.map_or("–".into(), |v| format!("{v:.1}"))
            )?;
        }
    }

    // Allocator.
    let allocs: Vec<_> = ["naive_10k", "shared_10k"]
        .iter()
        .filter_map(|w| Some((*w, get("alloc", "mimalloc", w)?, get("alloc", "system", w)?)))
        .collect();
    if !allocs.is_empty() {
        writeln!(
            md,
            "\n## Allocator: mimalloc against the system allocator\n"
        )?;
        writeln!(
            md,
            "The same fan-out workload (10k followers, one publisher) in two bench binaries: `fanout` \
             sets mimalloc as the global allocator, `alloc_system` sets none.\n"
        )?;
        writeln!(md, "| workload | mimalloc ns/delivery | system ns/delivery | system ÷ mimalloc |\n|---|---|---|---|")?;
        for (w, mi, sys) in allocs {
            writeln!(
                md,
                "| {w} | {:.1} | {:.1} | {:.2}× |",
                mi.ns_per_element().unwrap_or(f64::NAN),
                sys.ns_per_element().unwrap_or(f64::NAN),
                sys.ns / mi.ns
            )?;
        }
    }

    writeln!(md, "\n## Reproduce\n\n```\n{}\n```", args.command)?;
    if let Some(parent) = args.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&args.out, md).with_context(|| format!("writing {}", args.out.display()))?;
    println!("wrote {}", args.out.display());
    Ok(())
}
