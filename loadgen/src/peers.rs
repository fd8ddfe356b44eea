//! Real servers to compare against, started with the configurations this
//! project ships (`loadgen/peers/`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// The domain the shipped Prosody configuration serves.
pub const PROSODY_DOMAIN: &str = "loadgen.localhost";

/// A Prosody started from `loadgen/peers/prosody/prosody.cfg.lua`.
#[derive(Debug)]
pub struct Prosody {
    child: Child,
    /// Its c2s address.
    pub addr: SocketAddr,
    _data: tempfile::TempDir,
}

fn config_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/prosody/prosody.cfg.lua")
}

/// uid and gid of a system user, from /etc/passwd.
fn user_ids(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&name))
            .then(|| Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?)))?
    })
}

impl Prosody {
    /// Starts Prosody on a free loopback port with a fresh data directory.
    /// Prosody refuses to run as root: it runs as user `prosody` through
    /// `setpriv`, which (unlike `su` and `runuser`) keeps the open-file
    /// limit.
    pub fn start() -> Result<Self> {
        let on_path = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("prosody").is_file()));
        if !on_path {
            bail!("prosody is not installed (scripts/test installs it with apt-get)");
        }
        let (uid, gid) = user_ids("prosody").context("no `prosody` system user")?;
        let data = tempfile::tempdir()?;
        std::os::unix::fs::chown(data.path(), Some(uid), Some(gid))
            .context("giving the data directory to prosody")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let child = Command::new("setpriv")
            .args(["--reuid=prosody", "--regid=prosody", "--init-groups"])
            .args(["prosody", "-F", "--config"])
            .arg(config_path())
            .env("PROSODY_DATA", data.path())
            .env("PROSODY_PORT", port.port().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting prosody")?;
        let mut p = Self {
            child,
            addr: port,
            _data: data,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(port).is_err() {
            if let Ok(Some(status)) = p.child.try_wait() {
                bail!("prosody exited at start: {status}");
            }
            if Instant::now() > deadline {
                bail!("prosody did not listen on {port}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(p)
    }

    /// The server process (for CPU and RSS): setpriv execs prosody, so the
    /// child's pid is Prosody's.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Prosody's package version. (`prosody --version` does not return on
    /// these machines; the package database answers at once.)
    pub fn version() -> String {
        Command::new("dpkg-query")
            .args(["-W", "-f=${Version}", "prosody"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_else(|| "unknown".into())
    }
}

impl Drop for Prosody {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
