//! The control socket: operator commands for a running server, on a Unix
//! socket in the data directory (`control.sock`, mode 0600, so only the
//! server's user can use it). The store is locked by the running server,
//! so commands that change it go through here.
//!
//! One command per connection, one line each way:
//! - `deluser JID` → `ok deleted JID` or `error: …`;
//! - `token JID` → `ok TOKEN`: a personal API token (read, write, follow).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use stanza::BareJid;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::Shared;

/// Where the control socket of the store in `data_dir` lives.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("control.sock")
}

/// Longest command line read.
const MAX_LINE: u64 = 4096;

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
                    let mut line = String::new();
                    let mut reader = BufReader::new(rd.take(MAX_LINE));
                    let read = reader.read_line(&mut line);
                    if !matches!(tokio::time::timeout(Duration::from_secs(10), read).await, Ok(Ok(_))) {
                        return;
                    }
                    let answer = command(&shared, line.trim()).await;
                    let _ = wr.write_all(format!("{answer}\n").as_bytes()).await;
                });
            }
            () = crate::stopped(&mut shutdown) => break,
        }
    }
    debug!("control socket closed");
}

async fn command(shared: &Arc<Shared>, line: &str) -> String {
    let mut words = line.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some("deluser"), Some(jid), None) => {
            let Ok(jid) = BareJid::new(jid) else {
                return format!("error: {jid:?} is not a JID");
            };
            if jid.node().is_none() || !shared.config.domains.iter().any(|d| d == jid.domain()) {
                return format!("error: {jid} is not an account of this server");
            }
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
            let Ok(jid) = BareJid::new(jid) else {
                return format!("error: {jid:?} is not a JID");
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
        _ => "error: unknown command; try `deluser JID` or `token JID`".to_owned(),
    }
}
