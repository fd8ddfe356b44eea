//! Real servers to compare against, started with the configurations this
//! project ships (`loadgen/peers/`): Prosody and ejabberd from Debian's
//! packages, each as its own system user through `setpriv`, which (unlike
//! `su` and `runuser`) keeps the open-file limit.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// The domain the shipped Prosody configuration serves.
pub const PROSODY_DOMAIN: &str = "loadgen.localhost";
/// The domain the shipped ejabberd configuration serves.
pub const EJABBERD_DOMAIN: &str = "loadgen.localhost";

/// A Prosody started from `loadgen/peers/prosody/prosody.cfg.lua`.
#[derive(Debug)]
pub struct Prosody {
    child: Child,
    /// Its c2s address.
    pub addr: SocketAddr,
    _data: tempfile::TempDir,
}

fn config_path() -> PathBuf {
    peers_dir().join("prosody/prosody.cfg.lua")
}

fn peers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers")
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

/// A Debian package's version, from the package database (`prosody
/// --version` does not return on these machines; dpkg answers at once).
fn package_version(package: &str) -> String {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", package])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

/// Waits until `child` listens on `addr`; fails if it exits first.
fn wait_listening(child: &mut Child, addr: SocketAddr, what: &str, secs: u64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while std::net::TcpStream::connect(addr).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            bail!("{what} exited at start: {status}");
        }
        if Instant::now() > deadline {
            bail!("{what} did not listen on {addr}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Stops a child: SIGTERM, then SIGKILL if it lingers.
fn terminate(child: &mut Child, pid: u32, secs: u64) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .stderr(Stdio::null())
        .status();
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .stderr(Stdio::null())
        .status();
    let _ = child.kill();
    let _ = child.wait();
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
        if !on_path("prosody") {
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
        wait_listening(&mut p.child, port, "prosody", 20)?;
        Ok(p)
    }

    /// The server process (for CPU and RSS): setpriv execs prosody, so the
    /// child's pid is Prosody's.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Prosody's package version.
    pub fn version() -> String {
        package_version("prosody")
    }
}

impl Drop for Prosody {
    fn drop(&mut self) {
        let pid = self.child.id();
        terminate(&mut self.child, pid, 5);
    }
}

/// An ejabberd started from `loadgen/peers/ejabberd/ejabberd.yml`, with
/// its own configuration, spool and log directories and Erlang node name.
#[derive(Debug)]
pub struct Ejabberd {
    child: Child,
    /// Its c2s address.
    pub addr: SocketAddr,
    beam: u32,
    _dir: tempfile::TempDir,
}

impl Ejabberd {
    /// Starts ejabberd on a free loopback port with fresh directories, as
    /// user `ejabberd`: `ejabberdctl --config-dir DIR foreground`. (Run as
    /// root, ejabberdctl switches user with `su`, which drops the
    /// open-file limit to 1,024.)
    pub fn start() -> Result<Self> {
        if !on_path("ejabberdctl") && !Path::new("/usr/sbin/ejabberdctl").is_file() {
            bail!("ejabberd is not installed (scripts/test installs it with apt-get)");
        }
        let (uid, gid) = user_ids("ejabberd").context("no `ejabberd` system user")?;
        let dir = tempfile::tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let shipped = peers_dir().join("ejabberd");
        let (conf, spool, logs) = (
            dir.path().join("conf"),
            dir.path().join("spool"),
            dir.path().join("logs"),
        );
        for d in [dir.path(), &conf, &spool, &logs] {
            std::fs::create_dir_all(d)?;
            std::os::unix::fs::chown(d, Some(uid), Some(gid))
                .context("giving ejabberd its directories")?;
        }
        let yml = std::fs::read_to_string(shipped.join("ejabberd.yml"))?
            .replace("@PORT@", &port.port().to_string());
        std::fs::write(conf.join("ejabberd.yml"), yml)?;
        std::fs::copy(
            shipped.join("ejabberdctl.cfg"),
            conf.join("ejabberdctl.cfg"),
        )?;
        // How the Erlang VM resolves names: the package's own.
        std::fs::copy("/etc/ejabberd/inetrc", conf.join("inetrc"))
            .context("copying /etc/ejabberd/inetrc")?;
        // Each start its own node name, so runs never meet an old node.
        let node = format!("loadgen{}@localhost", port.port());
        let mut child = Command::new("setpriv")
            .args(["--reuid=ejabberd", "--regid=ejabberd", "--init-groups"])
            .arg("ejabberdctl")
            .arg("--config-dir")
            .arg(&conf)
            .arg("--spool")
            .arg(&spool)
            .arg("--logs")
            .arg(&logs)
            .args(["--node", &node, "foreground"])
            .current_dir(&spool)
            .env("HOME", "/var/lib/ejabberd")
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting ejabberd")?;
        wait_listening(&mut child, port, "ejabberd", 60)?;
        // It listens before its virtual host is up, and a stream opened
        // then never gets its features: wait until one does.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !offers_features(port) {
            if Instant::now() > deadline {
                bail!("ejabberd on {port} sent no stream features for 60 s");
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        // ejabberdctl execs erl, which runs beam.smp: the process whose
        // CPU, memory and syscalls count.
        let beam = beam_of(child.id()).unwrap_or(child.id());
        Ok(Self {
            child,
            addr: port,
            beam,
            _dir: dir,
        })
    }

    /// The `beam.smp` process (for CPU, RSS and syscalls).
    pub fn pid(&self) -> u32 {
        self.beam
    }

    /// ejabberd's package version.
    pub fn version() -> String {
        package_version("ejabberd")
    }
}

/// Whether a stream opened to `addr` gets its features within 2 s.
fn offers_features(addr: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let header = format!(
        "<?xml version='1.0'?><stream:stream to='{EJABBERD_DOMAIN}' version='1.0' \
         xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
    );
    if s.write_all(header.as_bytes()).is_err() {
        return false;
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    while let Ok(n @ 1..) = s.read(&mut buf) {
        got.extend_from_slice(&buf[..n]);
        if got.windows(18).any(|w| w == b"</stream:features>") {
            let _ = s.write_all(b"</stream:stream>");
            return true;
        }
    }
    false
}

/// The `beam.smp` at or under `pid` (ejabberdctl → erl → beam.smp, by
/// exec or as a child).
fn beam_of(pid: u32) -> Option<u32> {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    if comm.trim() == "beam.smp" {
        return Some(pid);
    }
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    children
        .split_whitespace()
        .filter_map(|c| c.parse().ok())
        .find_map(beam_of)
}

impl Drop for Ejabberd {
    fn drop(&mut self) {
        let beam = self.beam;
        terminate(&mut self.child, beam, 10);
    }
}
