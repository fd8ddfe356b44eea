//! `loadgen compare A.json B.json …`: saved runs side by side, each figure
//! also as a ratio to the first run, and an SVG plot of their
//! publish→delivery percentile distributions (from the `.hgrm` file kept
//! beside each `run.json`), drawn with plotters in the usual HdrHistogram
//! layout: latency against 1/(1−percentile) on log axes, so the tail gets
//! as much room as the median.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use plotters::prelude::*;
use serde_json::Value;

/// One saved run, as read back.
#[derive(Debug)]
pub struct Saved {
    /// A short label: the server, the strategy, and the directory.
    pub label: String,
    /// The record.
    pub record: Value,
    /// Points of the publish→delivery distribution: (percentile in
    /// [0, 1), latency ms), from `delivery.hgrm` if it is there.
    pub delivery: Vec<(f64, f64)>,
}

/// Reads a `run.json` (or a directory holding one) and its
/// `delivery.hgrm`.
pub fn load(path: &Path) -> Result<Saved> {
    let file = if path.is_dir() {
        path.join("run.json")
    } else {
        path.to_path_buf()
    };
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let record: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))?;
    if record["schema"] != crate::report::SCHEMA {
        bail!(
            "{} is not a loadgen run record (schema {}, expected {})",
            file.display(),
            record["schema"],
            crate::report::SCHEMA
        );
    }
    let dir = file.parent().unwrap_or(Path::new("."));
    let delivery = std::fs::read_to_string(dir.join("delivery.hgrm"))
        .map(|t| parse_hgrm(&t))
        .unwrap_or_default();
    let setup = &record["setup"];
    let mut label = setup["server"].as_str().unwrap_or("?").to_owned();
    if let Some(f) = setup["fanout"].as_str() {
        let _ = write!(label, " [{f}]");
    }
    if let Some(name) = dir.file_name().and_then(|n| n.to_str()) {
        let _ = write!(label, " ({name})");
    }
    Ok(Saved {
        label,
        record,
        delivery,
    })
}

/// (percentile, value ms) rows of a `.hgrm` text; the final 100% row is
/// left out (it cannot be placed on a 1/(1−p) axis).
pub fn parse_hgrm(text: &str) -> Vec<(f64, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let v: f64 = f.next()?.parse().ok()?;
            let q: f64 = f.next()?.parse().ok()?;
            (q < 1.0).then_some((q, v))
        })
        .collect()
}

/// A row of the table: its name and how to read it from a record.
type Row = (&'static str, fn(&Value) -> Option<f64>);

fn at(v: &Value, path: &[&str]) -> Option<f64> {
    let mut v = v;
    for p in path {
        v = v.get(p)?;
    }
    v.as_f64()
}

const ROWS: &[Row] = &[
    ("sessions up", |r| at(r, &["figures", "sessions_up"])),
    ("logins/s", |r| at(r, &["figures", "logins_per_s"])),
    ("connect+auth p50 ms", |r| {
        at(r, &["figures", "connect", "p50_ms"])
    }),
    ("publish->ack p50 ms", |r| {
        at(r, &["figures", "ack", "p50_ms"])
    }),
    ("publish->delivery p50 ms", |r| {
        at(r, &["figures", "delivery", "p50_ms"])
    }),
    ("publish->delivery p90 ms", |r| {
        at(r, &["figures", "delivery", "p90_ms"])
    }),
    ("publish->delivery p99 ms", |r| {
        at(r, &["figures", "delivery", "p99_ms"])
    }),
    ("publish->delivery p99.9 ms", |r| {
        at(r, &["figures", "delivery", "p999_ms"])
    }),
    ("publish->delivery max ms", |r| {
        at(r, &["figures", "delivery", "max_ms"])
    }),
    ("fan-out completion p99 ms", |r| {
        at(r, &["figures", "fanout_completion", "p99_ms"])
    }),
    ("deliveries/s", |r| {
        // Records before burst throughput had only the mean.
        at(r, &["figures", "throughput_per_s"])
            .or_else(|| at(r, &["figures", "mean_deliveries_per_s"]))
    }),
    ("server CPU µs/delivery", |r| {
        at(r, &["figures", "server_cpu_us_per_delivery"])
    }),
    ("loadgen CPU µs/delivery", |r| {
        at(r, &["figures", "loadgen_cpu_us_per_delivery"])
    }),
    ("server RSS max MiB", |r| {
        at(r, &["figures", "server_rss_max"]).map(|b| b / 1_048_576.0)
    }),
    ("RSS KiB per idle session", |r| {
        at(r, &["figures", "rss_per_idle_session"]).map(|b| b / 1024.0)
    }),
    ("lost", |r| at(r, &["figures", "lost"])),
];

/// The side-by-side table, with ratios to the first run.
pub fn table(runs: &[Saved]) -> String {
    let mut out = String::new();
    for (i, s) in runs.iter().enumerate() {
        let r = &s.record;
        let _ = writeln!(
            out,
            "[{}] {} — {}, {} sessions, {} (commit {})",
            i + 1,
            s.label,
            r["started_at"].as_str().unwrap_or("?"),
            r["plan"]["sessions"],
            r["plan"]["mechanism"].as_str().unwrap_or("?"),
            r["setup"]["git_commit"].as_str().unwrap_or("not recorded"),
        );
    }
    let _ = write!(out, "\n{:<28}", "");
    for i in 0..runs.len() {
        let _ = write!(out, "{:>14}", format!("[{}]", i + 1));
    }
    for i in 1..runs.len() {
        let _ = write!(out, "{:>12}", format!("[{}]/[1]", i + 1));
    }
    out.push('\n');
    for (name, get) in ROWS {
        // An idle run published nothing: its publish figures are absent,
        // not zero.
        let publishing = name.contains("deliver")
            || name.contains("ack")
            || name.contains("fan-out")
            || *name == "lost";
        let vals: Vec<Option<f64>> = runs
            .iter()
            .map(|s| {
                let idle = s.record["plan"]["idle"].as_bool().unwrap_or(false);
                if idle && publishing {
                    None
                } else {
                    get(&s.record)
                }
            })
            .collect();
        if vals.iter().all(Option::is_none) {
            continue;
        }
        let _ = write!(out, "{name:<28}");
        for v in &vals {
            let _ = write!(
                out,
                "{:>14}",
                v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"))
            );
        }
        for v in &vals[1..] {
            let ratio = match (v, vals[0]) {
                (Some(b), Some(a)) if a != 0.0 => format!("{:.2}×", b / a),
                _ => "-".to_owned(),
            };
            let _ = write!(out, "{ratio:>12}");
        }
        out.push('\n');
    }
    out
}

/// Draws the publish→delivery percentile plot into `path` (SVG).
pub fn plot(runs: &[Saved], path: &Path) -> Result<()> {
    let drawn: Vec<&Saved> = runs.iter().filter(|s| !s.delivery.is_empty()).collect();
    if drawn.is_empty() {
        bail!("none of the runs has a delivery.hgrm beside its run.json to plot");
    }
    // x: 1/(1−p), from 1 (p0) to past the largest percentile shown.
    let x_max = drawn
        .iter()
        .flat_map(|s| s.delivery.iter().map(|&(q, _)| 1.0 / (1.0 - q)))
        .fold(10.0_f64, f64::max);
    let (y_min, y_max) = drawn
        .iter()
        .flat_map(|s| s.delivery.iter().map(|&(_, v)| v))
        .fold((f64::INFINITY, 0.0_f64), |(a, b), v| (a.min(v), b.max(v)));
    let y_min = (y_min.max(0.001) / 1.5).max(0.001);
    let y_max = y_max * 1.5;
    let root = SVGBackend::new(path, (960, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "publish → delivery latency by percentile",
            ("sans-serif", 22),
        )
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d((1.0..x_max).log_scale(), (y_min..y_max).log_scale())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .x_label_formatter(&|x| {
            // 1/(1−p) = 1, 10, 100 … reads as 0%, 90%, 99% …
            let p = format!("{:.3}", 100.0 * (1.0 - 1.0 / x));
            format!("{}%", p.trim_end_matches('0').trim_end_matches('.'))
        })
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for (i, s) in drawn.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                s.delivery
                    .iter()
                    .map(|&(q, v)| (1.0 / (1.0 - q), v.max(y_min))),
                color.stroke_width(2),
            ))
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .label(format!("[{}] {}", i + 1, s.label))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

/// `loadgen compare`: prints the table and writes the plot; returns the
/// plot's path.
pub fn compare(files: &[PathBuf], svg: Option<&Path>, runs_dir: &Path) -> Result<PathBuf> {
    if files.len() < 2 {
        bail!("compare needs at least two run records (run.json files or their directories)");
    }
    let runs = files.iter().map(|f| load(f)).collect::<Result<Vec<_>>>()?;
    print!("{}", table(&runs));
    let path = match svg {
        Some(p) => p.to_path_buf(),
        None => {
            let stamp =
                crate::report::stamp(&server::xep0082_datetime(crate::session::now_us() / 1000));
            std::fs::create_dir_all(runs_dir)
                .with_context(|| format!("creating {}", runs_dir.display()))?;
            runs_dir.join(format!("{stamp}-compare.svg"))
        }
    };
    plot(&runs, &path)?;
    println!("\npercentile plot: {}", path.display());
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved(label: &str, p50: f64, hgrm: &str) -> Saved {
        Saved {
            label: label.into(),
            record: serde_json::json!({
                "schema": crate::report::SCHEMA,
                "started_at": "2026-11-25T00:00:00Z",
                "plan": {"sessions": 10, "mechanism": "Pubsub"},
                "setup": {"server": label, "git_commit": "abc"},
                "figures": {"sessions_up": 10, "delivery": {"p50_ms": p50}, "lost": 0}
            }),
            delivery: parse_hgrm(hgrm),
        }
    }

    #[test]
    fn hgrm_rows_parse_without_the_final_hundred_percent() {
        let mut h = crate::stats::histogram();
        for v in 1..=1000 {
            crate::stats::record(&mut h, v * 10);
        }
        let rows = parse_hgrm(&crate::stats::hgrm(&h));
        assert!(rows.len() > 10);
        assert!(rows
            .iter()
            .all(|&(q, v)| (0.0..1.0).contains(&q) && v > 0.0));
        assert!(rows
            .windows(2)
            .all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
    }

    #[test]
    fn the_table_has_ratios_to_the_first_and_the_plot_is_svg() {
        let mut h = crate::stats::histogram();
        for v in 1..=100 {
            crate::stats::record(&mut h, v * 100);
        }
        let text = crate::stats::hgrm(&h);
        let runs = [saved("a", 2.0, &text), saved("b", 5.0, &text)];
        let t = table(&runs);
        let row = t
            .lines()
            .find(|l| l.starts_with("publish->delivery p50 ms"))
            .unwrap();
        assert!(
            row.contains("2.00") && row.contains("5.00") && row.contains("2.50×"),
            "{t}"
        );
        assert!(
            !t.contains("logins/s"),
            "rows absent from every record are left out"
        );
        let dir = tempfile::tempdir().unwrap();
        let svg = dir.path().join("p.svg");
        plot(&runs, &svg).unwrap();
        let body = std::fs::read_to_string(&svg).unwrap();
        assert!(
            body.starts_with("<svg") && body.contains("[2] b"),
            "{}",
            &body[..200]
        );
    }
}
