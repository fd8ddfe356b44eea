//! `loadgen summary DIR`: the comparison table of every kept bench under
//! `DIR` (each directory with a `bench.json`), written between the
//! `<!-- summary -->` and `<!-- /summary -->` markers of `DIR/README.md`
//! and printed. Every figure comes from a record; none is typed.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// The markers the table goes between.
pub const START: &str = "<!-- summary: written by `loadgen summary results`; do not edit -->";
/// See [`START`].
pub const END: &str = "<!-- /summary -->";

/// The figures shown, by their names in a bench record's `medians`.
const COLUMNS: &[(&str, &str, usize)] = &[
    ("deliveries/s", "deliveries/s", 0),
    ("p50 ms", "publish->delivery p50 ms", 1),
    ("p99 ms", "publish->delivery p99 ms", 1),
    ("server µs/delivery", "server CPU µs/delivery", 2),
    ("writes/delivery", "write syscalls/delivery", 2),
    ("RSS MiB", "server RSS max MiB", 0),
    ("KiB/session", "idle RSS KiB/session", 1),
    ("churn logins/s", "churn logins/s", 0),
    ("server µs/login", "server CPU µs/login", 0),
    ("lost", "lost", 0),
];

/// The first columns, about deliveries: blank for an idle bench.
const DELIVERY_COLUMNS: usize = 5;

/// The table for the benches under `dir`, in directory-name order.
pub fn table(dir: &Path) -> Result<String> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(Result::ok)
        .filter(|e| e.path().join("bench.json").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut out = String::new();
    out.push_str("| bench | plan | target |");
    for (h, _, _) in COLUMNS {
        let _ = write!(out, " {h} |");
    }
    out.push_str(" ÷ first |\n|---|---|---|");
    out.push_str(&"---:|".repeat(COLUMNS.len() + 1));
    out.push('\n');
    for name in &names {
        let path = dir.join(name).join("bench.json");
        let b: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)
            .with_context(|| format!("{}: not JSON", path.display()))?;
        let targets = b["targets"].as_array().context("no targets")?;
        let idle = b["plan"]["idle"].as_bool() == Some(true);
        let churn = b["plan"]["churn"].as_f64().unwrap_or(0.0) > 0.0;
        // A churn bench is compared by the login rate it sustained, an
        // idle one by memory per session, the others by deliveries per
        // second.
        let compared = if churn {
            "churn logins/s"
        } else if idle {
            "idle RSS KiB/session"
        } else {
            "deliveries/s"
        };
        for (t, target) in targets.iter().enumerate() {
            let _ = write!(
                out,
                "| {} | {} | {} |",
                if t == 0 {
                    format!("`{name}`")
                } else {
                    String::new()
                },
                if t == 0 {
                    plan(&b["plan"], b["runs"][0].as_array().map_or(0, Vec::len))
                } else {
                    String::new()
                },
                target.as_str().unwrap_or("?")
            );
            for (i, (_, figure, decimals)) in COLUMNS.iter().enumerate() {
                let v = if idle && i < DELIVERY_COLUMNS {
                    None
                } else {
                    median(&b, figure, t)
                };
                let _ = write!(out, " {} |", cell(v, *decimals));
            }
            let ratio = if t == 0 {
                "1".to_owned()
            } else {
                ratio(&b, compared, t - 1).map_or_else(|| "–".to_owned(), |r| format!("{r:.2}×"))
            };
            let _ = writeln!(out, " {ratio} |");
        }
    }
    out.push_str("\nThe commands, one per bench:\n\n");
    for name in &names {
        let cmd = std::fs::read_to_string(dir.join(name).join("command.txt")).unwrap_or_default();
        let _ = writeln!(out, "- `{name}`: `{}`", cmd.trim());
    }
    Ok(out)
}

fn median(b: &Value, figure: &str, target: usize) -> Option<f64> {
    b["medians"].as_array()?.iter().find(|m| m[0] == figure)?[1][target][0].as_f64()
}

fn ratio(b: &Value, figure: &str, index: usize) -> Option<f64> {
    b["ratios"].as_array()?.iter().find(|m| m[0] == figure)?[1][index].as_f64()
}

fn cell(v: Option<f64>, decimals: usize) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.decimals$}"),
        _ => "–".to_owned(),
    }
}

/// A plan in a few words: sessions, follows, the schedule, repetitions.
fn plan(p: &Value, repetitions: usize) -> String {
    let churn = p["churn"].as_f64().unwrap_or(0.0);
    let schedule = match p["burst"].as_u64() {
        _ if churn > 0.0 => format!("idle, churn {churn}/s"),
        _ if p["idle"].as_bool() == Some(true) => "idle".to_owned(),
        Some(n) => format!("burst of {n}"),
        None => format!("{} posts/s", p["rate"].as_f64().unwrap_or(0.0)),
    };
    format!(
        "{} sessions, {}, {schedule}, ×{repetitions}",
        p["sessions"].as_u64().unwrap_or(0),
        p["mechanism"].as_str().unwrap_or("?").to_lowercase(),
    )
}

/// Rewrites the marked section of `dir/README.md` with the table.
pub fn write(dir: &Path) -> Result<String> {
    let t = table(dir)?;
    let readme = dir.join("README.md");
    let text = std::fs::read_to_string(&readme)
        .with_context(|| format!("reading {}", readme.display()))?;
    let (Some(a), Some(b)) = (text.find(START), text.find(END)) else {
        bail!(
            "{} has no summary markers ({START} … {END})",
            readme.display()
        );
    };
    if b < a {
        bail!("{}: the summary markers are out of order", readme.display());
    }
    let new = format!("{}{START}\n{t}{}", &text[..a], &text[b..]);
    std::fs::write(&readme, new)?;
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bench record `name` with targets "old" and "new", 3 repetitions
    /// each, kept in `dir` with `command`.
    fn keep(dir: &Path, name: &str, plan: Value, medians: Value, ratios: Value, command: &str) {
        let bench = dir.join(name);
        std::fs::create_dir(&bench).unwrap();
        let record = serde_json::json!({
            "plan": plan,
            "targets": ["old", "new"],
            "runs": [[{}, {}, {}], [{}, {}, {}]],
            "medians": medians,
            "ratios": ratios,
        });
        std::fs::write(bench.join("bench.json"), record.to_string()).unwrap();
        std::fs::write(bench.join("command.txt"), format!("{command}\n")).unwrap();
    }

    #[test]
    fn an_idle_bench_is_tabled_by_memory_per_session() {
        let dir = tempfile::tempdir().unwrap();
        let medians = serde_json::json!([
            ["deliveries/s", [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]],
            [
                "server RSS max MiB",
                [[133.1, 130.0, 137.0], [69.7, 66.0, 74.0]]
            ],
            [
                "idle RSS KiB/session",
                [[22.18, 21.6, 23.1], [9.25, 8.5, 10.3]]
            ],
            ["lost", [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]],
        ]);
        keep(
            dir.path(),
            "idle-x",
            serde_json::json!({"sessions": 5000, "mechanism": "Pubsub", "idle": true, "rate": 10.0}),
            medians,
            serde_json::json!([["deliveries/s", [null]], ["idle RSS KiB/session", [0.43]]]),
            "loadgen bench --idle",
        );
        let t = table(dir.path()).unwrap();
        let old = t.lines().find(|l| l.contains("| old |")).unwrap();
        let new = t.lines().find(|l| l.contains("| new |")).unwrap();
        assert!(old.contains("5000 sessions, pubsub, idle, ×3"), "{old}");
        assert!(
            old.contains("| – | – | – | – | – | 133 | 22.2 | – | – | 0 | 1 |"),
            "{old}"
        );
        assert!(new.ends_with("| 70 | 9.2 | – | – | 0 | 0.43× |"), "{new}");
        assert!(t.contains("- `idle-x`: `loadgen bench --idle`"), "{t}");
    }

    #[test]
    fn a_churn_bench_is_tabled_by_the_login_rate_it_sustained() {
        let dir = tempfile::tempdir().unwrap();
        let medians = serde_json::json!([
            [
                "churn logins/s",
                [[3900.0, 3800.0, 4000.0], [4700.0, 4600.0, 4800.0]]
            ],
            [
                "server CPU µs/login",
                [[260.4, 250.0, 270.0], [205.6, 200.0, 210.0]]
            ],
            ["idle RSS KiB/session", [[7.7, 7.6, 7.8], [7.3, 7.2, 7.4]]],
        ]);
        keep(
            dir.path(),
            "churn-x",
            serde_json::json!({"sessions": 10000, "mechanism": "Pubsub", "idle": true, "churn": 10000.0}),
            medians,
            serde_json::json!([["idle RSS KiB/session", [0.95]], ["churn logins/s", [1.21]]]),
            "loadgen bench --idle --churn 10000",
        );
        let t = table(dir.path()).unwrap();
        let old = t.lines().find(|l| l.contains("| old |")).unwrap();
        let new = t.lines().find(|l| l.contains("| new |")).unwrap();
        assert!(
            old.contains("10000 sessions, pubsub, idle, churn 10000/s, ×3"),
            "{old}"
        );
        assert!(old.ends_with("| 7.7 | 3900 | 260 | – | 1 |"), "{old}");
        assert!(new.ends_with("| 7.3 | 4700 | 206 | – | 1.21× |"), "{new}");
    }
}
