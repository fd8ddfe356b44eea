//! The `starling` binary: parse the command line, then call the library.

use std::io::{BufRead, IsTerminal};
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use server::store::prelude::*;
use server::{AccountRecord, Config, Listeners, Redb};
use stanza::BareJid;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's settings, made before the first allocation.
///
/// By default mimalloc commits its 1 GiB arena eagerly on Linux, and what
/// it frees there later is only reset (`MADV_FREE`): the pages stay in the
/// process's RSS until the kernel runs short. A login storm leaves that
/// behind, and an idle session then looked 11 KiB large where its heap is
/// 6 KB (#11). With arenas committed on demand, freed pages are
/// decommitted and RSS follows the heap. The arena is reserved at the
/// first allocation, before `main`, so the setting is made from an
/// `.init_array` constructor; it overrides `MIMALLOC_ARENA_EAGER_COMMIT`.
#[cfg(all(feature = "mimalloc", target_os = "linux"))]
#[allow(unsafe_code)]
mod allocator {
    /// `mi_option_arena_eager_commit` in mimalloc.h's `mi_option_e`.
    pub(crate) const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

    // Safety: runs once, single-threaded, before Rust's runtime starts; it
    // only stores an option value.
    #[used]
    #[link_section = ".init_array"]
    static SET_OPTIONS: extern "C" fn() = set_options;

    extern "C" fn set_options() {
        // Safety: a plain store into mimalloc's option table.
        unsafe { libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 0) }
    }

    #[cfg(test)]
    mod tests {
        /// The constructor ran (test binaries link it too) before anything
        /// was allocated, so the option is the one in force.
        #[test]
        fn arenas_are_committed_on_demand() {
            // Safety: reads mimalloc's option table.
            let v = unsafe { libmimalloc_sys::mi_option_get(super::ARENA_EAGER_COMMIT) };
            assert_eq!(v, 0);
        }
    }
}

/// Starling: an XMPP server built for microblog fan-out.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: Command,
}

/// Settings every subcommand reads (they override the config file).
#[derive(Debug, Args)]
struct Common {
    /// A TOML configuration file; flags override its values.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Where the store lives.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// A domain to serve (repeatable); replaces the file's list.
    #[arg(long = "domain", global = true)]
    domains: Vec<String>,
    /// PBKDF2 iterations for new SCRAM keys (at least 4096).
    #[arg(long, global = true)]
    scram_iterations: Option<u32>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve(Serve),
    /// Create an account; the password is read from stdin (prompted on a
    /// terminal). Works on a running server too (through its control socket).
    Adduser {
        /// The account, e.g. jane@example.org.
        jid: String,
    },
    /// Change an account's password (read like adduser's); on a running
    /// server, the account's sessions end.
    Passwd {
        /// The account.
        jid: String,
    },
    /// Delete an account.
    Deluser {
        /// The account.
        jid: String,
    },
    /// Print a personal token for the HTTP API (Mastodon-compatible),
    /// with the read, write and follow scopes.
    Token {
        /// The account.
        jid: String,
    },
}

#[derive(Debug, Args)]
struct Serve {
    /// Client-to-server listen address (repeatable); default 0.0.0.0:5222.
    #[arg(long = "c2s-listen")]
    c2s_listen: Vec<SocketAddr>,
    /// Direct-TLS (XEP-0368) listen address (repeatable); default 0.0.0.0:5223.
    #[arg(long = "c2s-tls-listen")]
    c2s_tls_listen: Vec<SocketAddr>,
    /// Server-to-server listen address (repeatable); default 0.0.0.0:5269.
    #[arg(long = "s2s-listen", value_name = "ADDR")]
    s2s_listen: Vec<SocketAddr>,
    /// Do not listen for other servers (outgoing federation still works).
    #[arg(long = "no-s2s-listen", conflicts_with = "s2s_listen")]
    no_s2s_listen: bool,
    /// The fan-out strategy: naive, shared, sharded or broadcast.
    #[arg(long)]
    fanout: Option<String>,
    /// Allow authentication without TLS, PLAIN included (loopback
    /// benchmarks only).
    #[arg(long)]
    allow_plaintext_auth: bool,
    /// Most concurrent client connections.
    #[arg(long)]
    max_connections: Option<usize>,
    /// Open in-band registration (XEP-0077).
    #[arg(long)]
    allow_registration: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics (loopback only).
    #[arg(long = "metrics-listen", value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
    /// Serve XMPP over WebSocket at ws://ADDR/xmpp-websocket (repeatable).
    #[arg(long = "http-listen", value_name = "ADDR")]
    http_listen: Vec<SocketAddr>,
    /// Serve it over TLS at wss://ADDR/xmpp-websocket (repeatable).
    #[arg(long = "https-listen", value_name = "ADDR")]
    https_listen: Vec<SocketAddr>,
}

/// Threads for blocking work (store reads, key derivation).
const MAX_BLOCKING_THREADS: usize = 32;

fn load(common: &Common) -> Result<Config> {
    let mut config = match &common.config {
        Some(p) => Config::from_file(p)?,
        None => Config::default(),
    };
    if let Some(d) = &common.data_dir {
        config.data_dir = d.clone();
    }
    if !common.domains.is_empty() {
        config.domains = common.domains.clone();
    }
    if let Some(i) = common.scram_iterations {
        config.scram_iterations = i;
    }
    Ok(config)
}

fn read_password(prompt: &str) -> Result<String> {
    let pass = if std::io::stdin().is_terminal() {
        rpassword::prompt_password(prompt)?
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    if pass.is_empty() {
        bail!("empty password");
    }
    Ok(pass)
}

fn account_jid(jid: &str, config: &Config) -> Result<BareJid> {
    let jid = BareJid::new(jid).with_context(|| format!("JID argument {jid:?}"))?;
    if jid.node().is_none() {
        bail!("JID argument {jid}: an account needs a localpart (user@domain)");
    }
    if !config.domains.iter().any(|d| d == jid.domain()) {
        bail!(
            "JID argument {jid}: domain {} is not served (--domain)",
            jid.domain()
        );
    }
    Ok(jid)
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut config = load(&cli.common)?;
    match cli.command {
        Command::Serve(s) => {
            if !s.c2s_listen.is_empty() {
                config.c2s_listen = s.c2s_listen;
            }
            if !s.s2s_listen.is_empty() {
                config.s2s.listen = s.s2s_listen;
            }
            if s.no_s2s_listen {
                config.s2s.listen.clear();
            }
            if let Some(f) = s.fanout {
                config.fanout = f;
            }
            if !s.c2s_tls_listen.is_empty() {
                config.c2s_tls_listen = s.c2s_tls_listen;
            }
            if s.allow_plaintext_auth {
                config.allow_plaintext_auth = true;
                config.require_encryption = false;
            }
            if s.allow_registration {
                config.allow_registration = true;
            }
            if let Some(m) = s.max_connections {
                config.max_connections = m;
            }
            if let Some(a) = s.metrics_listen {
                config.metrics_listen = Some(a);
            }
            if !s.http_listen.is_empty() {
                config.http_listen = s.http_listen;
            }
            if !s.https_listen.is_empty() {
                config.https_listen = s.https_listen;
            }
            config.validate()?;
            // Blocking work is short store reads and PBKDF2; a bounded
            // pool keeps a login storm from parking hundreds of threads
            // (each with its own stack and allocator heap) in memory.
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .max_blocking_threads(MAX_BLOCKING_THREADS)
                .build()?;
            rt.block_on(async {
                let listeners = Listeners::bind(&config)
                    .await
                    .context("binding listeners")?;
                server::run(listeners, config, shutdown_signal()).await?;
                anyhow::Ok(())
            })
        }
        Command::Adduser { jid } => {
            config.validate()?;
            let jid = account_jid(&jid, &config)?;
            let pass = read_password("password: ")?;
            if through_server(&config, &format!("adduser {jid}\n{pass}"))? {
                return Ok(());
            }
            let store = Redb::open(&config.data_dir)?;
            store.create_account(&jid, &AccountRecord::new(&pass, config.scram_iterations))?;
            eprintln!("created {jid}");
            Ok(())
        }
        Command::Passwd { jid } => {
            config.validate()?;
            let jid = account_jid(&jid, &config)?;
            let pass = read_password("new password: ")?;
            if through_server(&config, &format!("passwd {jid}\n{pass}"))? {
                return Ok(());
            }
            let store = Redb::open(&config.data_dir)?;
            let Some(old) = store.account(&jid)? else {
                bail!("no account {jid}");
            };
            let mut record = AccountRecord::new(&pass, config.scram_iterations);
            record.created_ms = old.created_ms;
            store.set_account(&jid, &record)?;
            eprintln!("password changed for {jid}");
            Ok(())
        }
        Command::Token { jid } => token(&config, &jid),
        Command::Deluser { jid } => {
            config.validate()?;
            let jid = account_jid(&jid, &config)?;
            // A running server holds the store: ask it. Otherwise delete
            // in the store directly.
            if through_server(&config, &format!("deluser {jid}"))? {
                return Ok(());
            }
            let store = Redb::open(&config.data_dir).with_context(|| {
                format!(
                    "opening the store in {} (a running server holds it; is its control socket                      missing?)",
                    config.data_dir.display()
                )
            })?;
            store.delete_account(&jid)?;
            eprintln!("deleted {jid}");
            Ok(())
        }
    }
}

/// `starling token JID`: through the running server, or in the store.
fn token(config: &Config, jid: &str) -> Result<()> {
    config.validate()?;
    let jid = account_jid(jid, config)?;
    let token = match control(&config.data_dir, &format!("token {jid}"))? {
        Some(answer) => match answer.strip_prefix("ok ") {
            Some(t) => t.to_owned(),
            None => bail!("the running server refused: {answer}"),
        },
        None => {
            let store = Redb::open(&config.data_dir)?;
            if store.account(&jid)?.is_none() {
                bail!("no account {jid}");
            }
            server::personal_token(&store, &jid, config.web.max_tokens_per_account)?
        }
    };
    println!("{token}");
    Ok(())
}

/// Runs an account command through a running server's control socket:
/// `false` when no server listens there (the caller opens the store
/// itself), an error naming the server's answer when it refused.
fn through_server(config: &Config, command: &str) -> Result<bool> {
    let Some(answer) = control(&config.data_dir, command)? else {
        return Ok(false);
    };
    match answer.strip_prefix("ok ") {
        Some(done) => {
            eprintln!("{done} (through the running server)");
            Ok(true)
        }
        None => bail!("the running server refused: {answer}"),
    }
}

/// Sends one command line to a running server's control socket; `None`
/// when no server listens there.
fn control(data_dir: &std::path::Path, line: &str) -> Result<Option<String>> {
    use std::io::{Read, Write};
    let path = server::admin::socket_path(data_dir);
    let Ok(mut s) = std::os::unix::net::UnixStream::connect(&path) else {
        return Ok(None);
    };
    s.set_read_timeout(Some(std::time::Duration::from_secs(60)))?;
    s.write_all(format!("{line}\n").as_bytes())?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)
        .with_context(|| format!("reading the answer on {}", path.display()))?;
    Ok(Some(answer.trim().to_owned()))
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
