//! Write-family syscalls of a server process over the measured window,
//! counted by `perf stat` on the syscall tracepoints: write, writev,
//! sendmsg, sendmmsg, sendto and io_uring_enter. (`/proc/PID/io`'s `syscw`
//! misses the send family.)
//!
//! `perf stat -p` attaches to the threads the process has when counting
//! starts; a server's async writers run on its worker threads, which exist
//! by then. perf takes a few milliseconds to attach, so a run starts it
//! 50 ms before its measured window opens (see `run::run_part`).

use std::process::{Child, Command, Stdio};

/// The tracepoints counted.
const EVENTS: &[&str] = &[
    "syscalls:sys_enter_write",
    "syscalls:sys_enter_writev",
    "syscalls:sys_enter_sendmsg",
    "syscalls:sys_enter_sendmmsg",
    "syscalls:sys_enter_sendto",
    "syscalls:sys_enter_io_uring_enter",
];

/// A running count; `None` figures where perf is missing or refused.
#[derive(Debug)]
pub struct WriteCount(Child);

impl WriteCount {
    /// Starts counting the process `pid`'s write-family syscalls.
    pub fn start(pid: u32) -> Option<Self> {
        let child = Command::new("perf")
            .args(["stat", "-x", ",", "-e", &EVENTS.join(","), "-p"])
            .arg(pid.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .ok()?;
        Some(Self(child))
    }

    /// Stops counting; the total, or `None` if perf counted nothing valid.
    pub fn stop(self) -> Option<u64> {
        let pid = self.0.id().to_string();
        let _ = Command::new("kill")
            .args(["-INT", &pid])
            .stderr(Stdio::null())
            .status();
        let out = self.0.wait_with_output().ok()?;
        parse(&String::from_utf8_lossy(&out.stderr))
    }
}

/// Sums perf's CSV lines (`count,unit,event,…`); `None` when no line holds
/// a count (perf failed, or the events are not supported).
fn parse(csv: &str) -> Option<u64> {
    let counts: Vec<u64> = csv
        .lines()
        .filter_map(|l| {
            let mut f = l.split(',');
            let n = f.next()?.trim().parse().ok()?;
            let _unit = f.next()?;
            f.next()
                .is_some_and(|e| e.starts_with("syscalls:"))
                .then_some(n)
        })
        .collect();
    (!counts.is_empty()).then(|| counts.iter().sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perf_csv_is_summed_and_failures_are_none() {
        let csv = "12,,syscalls:sys_enter_write,100,100.00,,\n\
                   30,,syscalls:sys_enter_writev,100,100.00,,\n\
                   <not supported>,,syscalls:sys_enter_sendto,0,100.00,,\n";
        assert_eq!(parse(csv), Some(42));
        assert_eq!(parse("event syntax error: 'syscalls:nope'\n"), None);
    }

    #[test]
    fn a_process_that_writes_is_counted() {
        let Some(mut child) = Command::new("sh")
            .args([
                "-c",
                "sleep 0.5; for i in 1 2 3 4 5; do echo x > /dev/null; done; sleep 0.5",
            ])
            .spawn()
            .ok()
        else {
            return;
        };
        let Some(c) = WriteCount::start(child.id()) else {
            panic!("perf is not installed (scripts/test installs it)")
        };
        std::thread::sleep(std::time::Duration::from_millis(200));
        let _ = child.wait();
        let n = c.stop().expect("perf counted");
        assert!(n >= 5, "five echoes write at least five times: {n}");
    }
}
