//! CPU and memory of processes and threads, from /proc (Linux).

/// Clock ticks per second for /proc's utime/stime (USER_HZ, 100 on Linux).
const TICKS: f64 = 100.0;

fn stat_cpu(stat: &str) -> Option<f64> {
    // Fields after the parenthesised comm: state is 3rd; utime 14th and
    // stime 15th overall, so 11th and 12th after the ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ut: f64 = f.get(11)?.parse().ok()?;
    let st: f64 = f.get(12)?.parse().ok()?;
    Some((ut + st) / TICKS)
}

/// CPU seconds a process has used.
pub fn process_cpu(pid: u32) -> Option<f64> {
    stat_cpu(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Resident set size of a process, bytes.
pub fn process_rss(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = s
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// CPU seconds used by this process's threads whose name starts with one
/// of `prefixes` (how the embedded server's share is told apart from
/// loadgen's in one process).
pub fn threads_cpu(prefixes: &[&str]) -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    dir.filter_map(Result::ok)
        .filter_map(|t| {
            let p = t.path();
            let comm = std::fs::read_to_string(p.join("comm")).ok()?;
            prefixes
                .iter()
                .any(|x| comm.trim_end().starts_with(x))
                .then(|| stat_cpu(&std::fs::read_to_string(p.join("stat")).ok()?))
                .flatten()
        })
        .sum()
}

/// CPU seconds the calling thread has run, with nanosecond resolution
/// (the scheduler's own accounting in /proc/thread-self/schedstat).
pub fn thread_cpu() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0.0, |ns| ns as f64 / 1e9)
}

/// A one-line description of the machine: CPUs, model, memory, kernel.
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or_else(String::new, |kb| {
            format!(", {:.0} GiB", kb as f64 / 1_048_576.0)
        });
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|k| format!(", Linux {}", k.trim()))
        .unwrap_or_default();
    format!("{cpus} CPUs ({model}){mem}{kernel}")
}

/// The soft open-file limit of this process.
pub fn open_file_limit() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
        })
        .unwrap_or(1024)
}

/// Whether stdout is a terminal (live progress is shown only then).
pub fn is_tty() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let pid = std::process::id();
        assert!(process_rss(pid).unwrap() > 1 << 20);
        assert!(process_cpu(pid).is_some());
        assert!(open_file_limit() > 0);
        assert!(machine().contains("CPUs"));
        let parsed = stat_cpu("1 (a) b) S 1 1 1 0 0 0 0 0 0 0 250 50 0 0").unwrap();
        assert!((parsed - 3.0).abs() < 1e-9, "{parsed}");
    }
}
