//! The command line (clap derive). With no arguments: the default run
//! against an embedded Starling.

use std::path::PathBuf;

use clap::Parser;

use crate::run::{Background, Plan};
use crate::session::{Mech, Mechanism, Transport};

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum Command {
    /// Register the accounts and build the follow graph on --server.
    Setup,
    /// Measure (the server must be set up for the same plan).
    Run,
    /// The same plan on several targets in turn, A B A B …, with each
    /// figure as a ratio to the first target.
    Bench {
        /// Comma-separated: starling:STRATEGY, prosody, ejabberd, floor (loadgen's
        /// trivial sender: this machine's limit), or HOST:PORT. A
        /// Starling target may add +tcp or +websocket (its followers'
        /// transport) and @PATH (a starling binary to run instead of the
        /// one built beside loadgen): starling:shared+websocket@PATH.
        #[arg(long, value_delimiter = ',', required = true)]
        targets: Vec<crate::bench::TargetSpec>,
    },
    /// Saved runs side by side (ratios to the first) and an SVG plot of
    /// their publish→delivery percentiles.
    Compare {
        /// run.json files, or the directories holding them.
        #[arg(required = true, num_args = 2.., value_name = "RUN")]
        runs: Vec<PathBuf>,
        /// Where to write the plot (default: a new file in --runs-dir).
        #[arg(long, value_name = "PATH")]
        svg: Option<PathBuf>,
    },
    /// Receive capacity: loadgen's sessions fed by a trivial local sender
    /// of pre-made event messages, received on one thread.
    Receive {
        /// Event messages per write from the sender.
        #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=4096))]
        batch: u32,
    },
    /// The comparison table of the benches kept under DIR, written into
    /// DIR/README.md between its summary markers (and printed).
    Summary {
        /// The results directory.
        #[arg(default_value = "results", value_name = "DIR")]
        dir: PathBuf,
    },
    /// The API's home-timeline latency for viewers following few and many
    /// authors, against a Starling child on a seeded store.
    Timeline {
        /// Authors with posts.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        authors: u32,
        /// Posts per author.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        posts: u32,
        /// One viewer per value, following that many authors (comma-separated).
        #[arg(long, value_delimiter = ',', default_values_t = [10u32, 1000])]
        follows: Vec<u32>,
        /// Timed requests per viewer (plus a tenth as warm-up).
        #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        requests: u32,
        /// Statuses per page.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=40))]
        limit: u32,
        /// Every other request is a deep page (max_id mid-timeline).
        #[arg(long)]
        deep: bool,
    },
    /// The `floor` bench target's server process (bench starts it).
    #[command(hide = true)]
    Floor {
        /// The follow graph, as JSON.
        #[arg(long, value_name = "PATH")]
        graph: PathBuf,
        /// Where to listen.
        #[arg(long, value_name = "HOST:PORT")]
        listen: std::net::SocketAddr,
        /// How long each initial presence takes to be processed.
        #[arg(long = "presence-delay-ms", default_value_t = 0)]
        presence_delay_ms: u64,
    },
}

/// `--accounts 'user{n}:pass'`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accounts {
    /// Before `{n}`.
    pub prefix: String,
    /// After `{n}`.
    pub suffix: String,
    /// The password.
    pub password: String,
}

impl Accounts {
    /// The account name of user `i`.
    pub fn user(&self, i: u32) -> String {
        format!("{}{i}{}", self.prefix, self.suffix)
    }
}

impl std::str::FromStr for Accounts {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, password) = s
            .split_once(':')
            .ok_or("expected NAME:PASSWORD with {n} in NAME, e.g. 'user{n}:secret'")?;
        let (prefix, suffix) = name
            .split_once("{n}")
            .ok_or("the account name needs {n}, the user's number")?;
        if password.is_empty() {
            return Err("the password is empty".into());
        }
        Ok(Self {
            prefix: prefix.into(),
            suffix: suffix.into(),
            password: password.into(),
        })
    }
}

fn positive(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        Ok(_) => Err("must be greater than zero".into()),
        Err(e) => Err(e.to_string()),
    }
}

fn non_negative(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v >= 0.0 && v.is_finite() => Ok(v),
        Ok(_) => Err("must not be negative".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Thousands of real XMPP sessions against a server, publishing microblog
/// posts through a follow graph, with latency histograms and loss
/// accounting.
#[derive(Debug, Parser)]
#[command(name = "loadgen", version)]
pub struct Cli {
    /// `setup` prepares an external server (accounts and follow graph over
    /// XMPP); `run` measures. With neither: the embedded Starling is seeded
    /// and measured, or, with --server, set up and measured.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// An external server's c2s address (HOST:PORT) instead of the embedded
    /// Starling.
    #[arg(long, global = true, value_name = "HOST:PORT")]
    pub server: Option<std::net::SocketAddr>,
    /// Federation: the publishers (celebrities) are accounts of one
    /// Starling (a.example), their followers accounts of a second server
    /// (b.example), so every delivery crosses an s2s stream. By default
    /// both are starling child processes; see --server-b.
    #[arg(long, global = true)]
    pub federated: bool,
    /// With --federated: the followers' server is the one at this c2s
    /// address (domain b.example, in-band registration open), e.g. Prosody
    /// inside scripts/federation-netns.
    #[arg(
        long = "server-b",
        global = true,
        value_name = "HOST:PORT",
        requires = "federated"
    )]
    pub server_b: Option<std::net::SocketAddr>,
    /// With --federated: one s2s stanza per remote recipient, instead of
    /// one per publish for a domain that offers XEP-0033 multicast.
    #[arg(long = "per-recipient", global = true, requires = "federated")]
    pub per_recipient: bool,
    /// The external server's XMPP domain.
    #[arg(long, global = true, default_value = "loadgen.localhost")]
    pub domain: String,
    /// Account names and password on the external server, NAME:PASSWORD,
    /// with the user's number standing in for the n in braces in NAME (as
    /// in the default).
    // clap turns a literal n-in-braces anywhere in help text into a line
    // break, so the text describes it; the default shows it.
    #[arg(long, global = true, default_value = "lg{n}:loadgen-pw")]
    pub accounts: Accounts,
    /// Existing accounts from a file instead: one `name:password` per
    /// line, name a localpart or bare JID (user 0 first; blank lines and
    /// `#` comments skipped).
    #[arg(
        long = "accounts-file",
        global = true,
        value_name = "PATH",
        conflicts_with = "accounts"
    )]
    pub accounts_file: Option<PathBuf>,
    /// The external server's pid, to sample its CPU and RSS.
    #[arg(long = "server-pid", global = true)]
    pub server_pid: Option<u32>,
    /// A label for the external server in the record (e.g. "prosody 0.12").
    #[arg(long = "server-name", global = true)]
    pub server_name: Option<String>,
    /// Sessions (one account each).
    #[arg(long, global = true, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(2..))]
    pub sessions: u32,
    /// Users followed by every other user, posting at --rate.
    #[arg(long, global = true, default_value_t = 1)]
    pub celebrities: u32,
    /// The background follow graph.
    #[arg(long, global = true, value_enum, default_value_t = Background::Uniform)]
    pub background: Background,
    /// Follows per user in the background graph.
    #[arg(long, global = true, default_value_t = 10)]
    pub follows: u32,
    /// Exponent of the zipf background graph.
    #[arg(long = "zipf-s", global = true, default_value_t = 1.0, value_parser = positive)]
    pub zipf_s: f64,
    /// How followers follow: mutual presence subscription with +notify
    /// caps, an explicit XEP-0060 subscribe, or direct messages from the
    /// publisher (the client-side fan-out baseline).
    #[arg(long, global = true, value_enum, default_value_t = Mechanism::Presence)]
    pub mechanism: Mechanism,
    /// Celebrity posts per second, open loop.
    #[arg(long, global = true, default_value_t = 10.0, value_parser = positive)]
    pub rate: f64,
    /// Background posts per second (random users with followers); 0 for
    /// none.
    #[arg(long = "background-rate", global = true, default_value_t = 20.0, value_parser = non_negative)]
    pub background_rate: f64,
    /// Instead of a rate: N celebrity posts at one instant.
    #[arg(long, global = true, value_parser = clap::value_parser!(u32).range(1..))]
    pub burst: Option<u32>,
    /// Bytes of text in each post.
    #[arg(long, global = true, default_value_t = 200)]
    pub payload: usize,
    /// Seconds of publishing, warm-up included.
    #[arg(long, global = true, default_value_t = 30.0, value_parser = positive)]
    pub duration: f64,
    /// Seconds of publishing left out of the figures.
    #[arg(long, global = true, default_value_t = 5.0, value_parser = non_negative)]
    pub warmup: f64,
    /// Logins started per second.
    #[arg(long, global = true, default_value_t = 5000.0, value_parser = positive)]
    pub ramp: f64,
    /// Negotiate STARTTLS on every connection (the embedded Starling then
    /// offers it with a self-signed certificate, which loadgen accepts).
    #[arg(long, global = true)]
    pub tls: bool,
    /// SASL mechanism.
    #[arg(long, global = true, value_enum, default_value_t = Mech::ScramSha1)]
    pub mech: Mech,
    /// What followers connect over (publishers stay on TCP): tcp, or
    /// websocket (RFC 7395, to the target's /xmpp-websocket).
    #[arg(long, global = true, value_enum, default_value_t = Transport::Tcp)]
    pub transport: Transport,
    /// Enable XEP-0198 stream management with resumption on every session.
    #[arg(long, global = true)]
    pub sm: bool,
    /// Drop this many random follower connections per second during the
    /// publishing phase; each comes back at once (resumed with --sm).
    #[arg(long, global = true, default_value_t = 0.0, value_parser = non_negative)]
    pub chaos: f64,
    /// Log out and back in this many sessions per second (in turn) for the
    /// run's duration, and report the sustained login rate over the
    /// measured window (after the warm-up). Needs --idle: nothing is
    /// published meanwhile.
    #[arg(long, global = true, default_value_t = 0.0, value_parser = non_negative,
          requires = "idle", conflicts_with_all = ["chaos", "sm"])]
    pub churn: f64,
    /// The target's WebSocket address (HOST:PORT serving /xmpp-websocket),
    /// for --transport websocket against a server loadgen did not start.
    #[arg(long = "ws-addr", global = true, value_name = "ADDR")]
    pub ws_addr: Option<std::net::SocketAddr>,
    /// Loopback source addresses (127.0.0.1..N) to spread connections over.
    #[arg(long, global = true, default_value_t = 8, value_parser = clap::value_parser!(u8).range(1..))]
    pub sources: u8,
    /// Seed for the follow graph and the background publishers.
    #[arg(long, global = true, default_value_t = 1)]
    pub seed: u64,
    /// Log in, stay idle, and measure the server's memory per session.
    #[arg(long, global = true)]
    pub idle: bool,
    /// Repetitions of the measured phase (logins included), reported as
    /// the median with its min–max spread. Default: 1 for a run, 3 for
    /// `bench`.
    #[arg(long, global = true, value_parser = clap::value_parser!(u32).range(1..))]
    pub repeat: Option<u32>,
    /// Fan-out strategy of the embedded Starling.
    #[arg(long, global = true, default_value = "shared")]
    pub fanout: String,
    /// Run the embedded Starling as a child process (automatic when one
    /// process cannot hold both ends of every connection).
    #[arg(long = "spawn-server", global = true)]
    pub spawn_server: bool,
    /// The `starling` binary for --spawn-server (default: next to loadgen).
    #[arg(long = "starling-bin", global = true, value_name = "PATH")]
    pub starling_bin: Option<PathBuf>,
    /// Also write the run record to this JSON file.
    #[arg(long, global = true, value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// Save the run (JSON, .hgrm, report, command) into this directory,
    /// for results that are kept (e.g. results/NAME).
    #[arg(long, global = true, value_name = "DIR")]
    pub save: Option<PathBuf>,
    /// The SCRAM client key cache file: `setup` and runs against --server
    /// save it, runs load it (default: scram-keys.json in --runs-dir).
    #[arg(long = "key-cache", global = true, value_name = "PATH")]
    pub key_cache: Option<PathBuf>,
    /// Start from an empty SCRAM key cache and leave the file alone: every
    /// account's first login derives its keys (the cold-cache login rate).
    #[arg(long = "cold-cache", global = true)]
    pub cold_cache: bool,
    /// Internal: run as worker K of W for a parent loadgen (see
    /// `loadgen::workers`).
    #[arg(long, global = true, hide = true, value_name = "K/W")]
    pub worker: Option<crate::workers::WorkerId>,
    /// No live progress.
    #[arg(long, global = true)]
    pub quiet: bool,
    /// Where runs are kept (default: results/runs/, git-ignored).
    #[arg(long = "runs-dir", global = true, value_name = "DIR")]
    pub runs_dir: Option<PathBuf>,
}

/// Account name and password of user `i`.
pub type AccountFn = std::sync::Arc<dyn Fn(u32) -> String + Send + Sync>;

/// Reads an `--accounts-file`: `name:password` lines, in user order.
pub fn read_accounts_file(path: &std::path::Path) -> anyhow::Result<Vec<(String, String)>> {
    use anyhow::Context as _;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--accounts-file {}", path.display()))?;
    let mut out = Vec::new();
    for (no, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once(':') {
            Some((name, pw)) if !name.is_empty() && !pw.is_empty() => {
                // A bare JID names the same account as its localpart.
                let local = name.split_once('@').map_or(name, |(l, _)| l);
                out.push((local.to_owned(), pw.to_owned()));
            }
            _ => anyhow::bail!(
                "--accounts-file {}: line {} is not name:password",
                path.display(),
                no + 1
            ),
        }
    }
    Ok(out)
}

impl Cli {
    /// Account names and passwords for `sessions` users: from
    /// `--accounts-file` when given, else the `--accounts` pattern.
    pub fn account_fns(&self, sessions: usize) -> anyhow::Result<(AccountFn, AccountFn)> {
        let Some(path) = &self.accounts_file else {
            let a = self.accounts.clone();
            let pw = self.accounts.password.clone();
            return Ok((
                std::sync::Arc::new(move |i| a.user(i)),
                std::sync::Arc::new(move |_| pw.clone()),
            ));
        };
        let list = read_accounts_file(path)?;
        if list.len() < sessions {
            anyhow::bail!(
                "--accounts-file {} lists {} accounts; --sessions {sessions} needs as many",
                path.display(),
                list.len()
            );
        }
        let list = std::sync::Arc::new(list);
        let names = list.clone();
        Ok((
            std::sync::Arc::new(move |i| names[i as usize].0.clone()),
            std::sync::Arc::new(move |i| list[i as usize].1.clone()),
        ))
    }

    /// The plan these flags describe.
    pub fn plan(&self) -> Plan {
        Plan {
            sessions: self.sessions as usize,
            celebrities: self.celebrities as usize,
            background: self.background,
            follows: self.follows as usize,
            zipf_s: self.zipf_s,
            mechanism: self.mechanism,
            rate: self.rate,
            background_rate: self.background_rate,
            burst: self.burst,
            payload: self.payload,
            duration_s: self.duration,
            warmup_s: self.warmup.min(self.duration / 2.0),
            ramp: self.ramp,
            mech: self.mech,
            transport: self.transport,
            sm: self.sm,
            chaos: self.chaos,
            churn: self.churn,
            sources: self.sources,
            seed: self.seed,
            idle: self.idle,
            repeat: self.repeat.unwrap_or(1) as usize,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_accounts_file_gives_each_user_its_name_and_password() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("accounts.txt");
        std::fs::write(
            &f,
            "# who\njane:pw:with:colons\n\nbob@example.org:hunter2\n",
        )
        .unwrap();
        let cli = Cli::parse_from(["loadgen", "--accounts-file", f.to_str().unwrap()]);
        let (user, pw) = cli.account_fns(2).unwrap();
        assert_eq!((user(0), pw(0)), ("jane".into(), "pw:with:colons".into()));
        assert_eq!((user(1), pw(1)), ("bob".into(), "hunter2".into()));
        let e = cli.account_fns(3).err().unwrap().to_string();
        assert!(
            e.contains("--accounts-file") && e.contains("--sessions 3"),
            "{e}"
        );
        std::fs::write(&f, "jane\n").unwrap();
        let e = cli.account_fns(1).err().unwrap().to_string();
        assert!(e.contains("line 1"), "{e}");
        // The pattern stays the default.
        let (user, pw) = Cli::parse_from(["loadgen"]).account_fns(5).unwrap();
        assert_eq!((user(4), pw(4)), ("lg4".into(), "loadgen-pw".into()));
    }

    #[test]
    fn the_help_shows_the_account_pattern_whole() {
        use clap::CommandFactory;
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("[default: lg{n}:loadgen-pw]"), "{help}");
        assert!(help.contains("the user's number standing in"), "{help}");
        // clap reads n-in-braces as a line break: the sentence is whole.
        let line = help
            .lines()
            .find(|l| l.contains("Account names and password"))
            .unwrap();
        assert!(line.contains("(as in the default)"), "{line}");
    }
}
