//! The control socket: operator commands for a running server, on a Unix
//! socket in the data directory (`control.sock`, mode 0600, so only the
//! server's user can use it). The store is locked by the running server,
//! so commands that change it go through here.
//!
//! One command per connection, one line each way (a password follows its
//! command on a line of its own, so it may hold any character but a line
//! end):
//! - `adduser JID` + password → `ok created JID` or `error: …`;
//! - `passwd JID` + password → `ok password changed for JID`: the
//!   account's sessions end, as after an XEP-0077 change;
//! - `deluser JID` → `ok deleted JID`;
//! - `token JID` → `ok TOKEN`: a personal API token (read, write, follow).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use stanza::BareJid;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::account::PasswordChange;
use crate::Shared;

/// Where the control socket of the store in `data_dir` lives.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("control.sock")
}

/// Most bytes read from one connection (the command and its password).
const MAX_LINE: u64 = 4096;
/// How long a client may take to send its command.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Commands whose password follows on the next line.
const WITH_PASSWORD: [&str; 2] = ["adduser", "passwd"];

/// The command line, and the password line for the commands that take one
/// (without its line end; `None` when the client sent none).
async fn read_command<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
) -> Option<(String, Option<String>)> {
    let mut line = String::new();
    reader.read_line(&mut line).await.ok()?;
    let verb = line.split_whitespace().next().unwrap_or("");
    if !WITH_PASSWORD.contains(&verb) {
        return Some((line, None));
    }
    let mut password = String::new();
    reader.read_line(&mut password).await.ok()?;
    let password = password.strip_suffix('\n').unwrap_or(&password);
    let password = password.strip_suffix('\r').unwrap_or(password);
    Some((line, Some(password.to_owned())))
}

/// Binds the control socket (replacing a stale one: the store lock already
/// proved no other server runs on this directory).
pub(crate) fn bind(data_dir: &Path) -> std::io::Result<UnixListener> {
    let path = socket_path(data_dir);
    let _ = std::fs::remove_file(&path);
    let l = UnixListener::bind(&path)?;
    crate::files::restrict(&path)?;
    Ok(l)
}

/// Serves commands until shutdown.
pub(crate) async fn serve(
    listener: UnixListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            r = listener.accept() => {
                let Ok((stream, _)) = r else { continue };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let (rd, mut wr) = stream.into_split();
                    let mut reader = BufReader::new(rd.take(MAX_LINE));
                    let read = tokio::time::timeout(READ_TIMEOUT, read_command(&mut reader));
                    let Ok(Some((line, password))) = read.await else { return };
                    let answer = command(&shared, line.trim(), password).await;
                    let _ = wr.write_all(format!("{answer}\n").as_bytes()).await;
                });
            }
            () = crate::stopped(&mut shutdown) => break,
        }
    }
    debug!("control socket closed");
}

/// `jid` if it names an account of this server.
fn local_account(shared: &Shared, jid: &str) -> Result<BareJid, String> {
    let Ok(jid) = BareJid::new(jid) else {
        return Err(format!("error: {jid:?} is not a JID"));
    };
    if jid.node().is_none() || !shared.config.domains.iter().any(|d| d == jid.domain()) {
        return Err(format!("error: {jid} is not an account of this server"));
    }
    Ok(jid)
}

async fn set_password(
    shared: &Arc<Shared>,
    jid: &str,
    password: Option<String>,
    what: PasswordChange,
) -> String {
    let jid = match local_account(shared, jid) {
        Ok(j) => j,
        Err(e) => return e,
    };
    let Some(password) = password.filter(|p| !p.is_empty()) else {
        return "error: empty password".to_owned();
    };
    match crate::account::set_password(shared, &jid, password, what, None).await {
        Ok(()) if what == PasswordChange::Create => format!("ok created {jid}"),
        Ok(()) => format!("ok password changed for {jid}"),
        Err(crate::StoreError::Exists(_)) => format!("error: {jid} exists"),
        Err(crate::StoreError::NotFound(_)) => format!("error: no account {jid}"),
        Err(e) => {
            warn!(%jid, error = %e, "setting a password failed");
            format!("error: {e}")
        }
    }
}

async fn command(shared: &Arc<Shared>, line: &str, password: Option<String>) -> String {
    let mut words = line.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some("adduser"), Some(jid), None) => {
            set_password(shared, jid, password, PasswordChange::Create).await
        }
        (Some("passwd"), Some(jid), None) => {
            set_password(shared, jid, password, PasswordChange::Change).await
        }
        (Some("deluser"), Some(jid), None) => {
            let jid = match local_account(shared, jid) {
                Ok(j) => j,
                Err(e) => return e,
            };
            match crate::account::delete(shared, &jid, None).await {
                Ok(_) => format!("ok deleted {jid}"),
                Err(crate::StoreError::NotFound(_)) => format!("error: no account {jid}"),
                Err(e) => {
                    warn!(%jid, error = %e, "deletion failed");
                    format!("error: {e}")
                }
            }
        }
        (Some("token"), Some(jid), None) => {
            let jid = match local_account(shared, jid) {
                Ok(j) => j,
                Err(e) => return e,
            };
            let max = shared.config.web.max_tokens_per_account;
            let j = jid.clone();
            let made = shared
                .db(move |s| {
                    if s.account(&j)?.is_none() {
                        return Err(crate::StoreError::NotFound(j.to_string()));
                    }
                    crate::web::api::oauth::personal_token(s, &j, max)
                })
                .await;
            match made {
                Ok(token) => format!("ok {token}"),
                Err(crate::StoreError::NotFound(_)) => format!("error: no account {jid}"),
                Err(e) => format!("error: {e}"),
            }
        }
        _ => {
            "error: unknown command; try `adduser JID`, `passwd JID`, `deluser JID` or `token JID`"
                .to_owned()
        }
    }
}
