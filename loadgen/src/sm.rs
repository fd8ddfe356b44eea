//! Stream management (XEP-0198) for loadgen's sessions (`--sm`), and the
//! connection drops of `--chaos`.
//!
//! With `--sm` every session enables resumption after binding, counts the
//! stanzas it handles, and acknowledges every [`ACK_EVERY`] of them (and
//! whenever the server asks). `--chaos N` drops N random followers'
//! connections per second; each comes back at once, resuming its session
//! when `--sm` is on (nothing may be lost), or logging in anew when it is
//! not (what arrived meanwhile is lost, and counted so).

use std::sync::Arc;

use stanza::xep::sm::{self, Nonza};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::{watch, Notify};

use crate::scram::KeyCache;
use crate::session::{self, Conn, Login, SessionError};

/// Stanzas handled between unsolicited acks: keeps the server's buffer of
/// unacknowledged stanzas small without an ack per delivery.
pub const ACK_EVERY: u32 = 64;

/// Enables stream management with resumption on a bound session; returns
/// the resumption id.
pub async fn enable(c: &mut Conn) -> Result<String, SessionError> {
    let enable = Nonza::Enable {
        resume: true,
        max: None,
    };
    c.wr.write_all(&enable.to_element().to_bytes()).await?;
    let e = c.element("sm enabled").await?;
    match (e.name.as_str(), e.attr("id")) {
        ("enabled", Some(id)) if e.ns == sm::NS => Ok(id.to_owned()),
        _ => Err(SessionError::Negotiation(format!(
            "stream management not enabled: <{}>",
            e.name
        ))),
    }
}

/// Logs in again and resumes session `previd`, of which `h` of the
/// server's stanzas were handled.
pub async fn resume(
    l: &Login,
    keys: &KeyCache,
    previd: &str,
    h: u32,
) -> Result<Conn, SessionError> {
    let mut c = session::authenticate(l, keys).await?;
    c.open(&l.domain).await?;
    let resume = Nonza::Resume {
        previd: previd.to_owned(),
        h,
    };
    c.wr.write_all(&resume.to_element().to_bytes()).await?;
    let r = c.element("sm resumed").await?;
    if r.name != "resumed" || r.ns != sm::NS {
        return Err(SessionError::Negotiation(format!(
            "resumption refused: <{}>",
            r.name
        )));
    }
    c.jid = format!("{}@{}/{}", l.user, l.domain, l.resource);
    Ok(c)
}

/// What a live session needs to come back after a deliberate drop.
#[derive(Debug, Clone)]
pub struct Chaos {
    /// Wakes the session to drop its connection.
    pub kill: Arc<Notify>,
    /// How it logs in again.
    pub login: Login,
    /// Its SCRAM key cache.
    pub keys: Arc<KeyCache>,
    /// Its resumption id, with `--sm`.
    pub sm_id: Option<String>,
    /// With `--churn`: the session logs out cleanly and in anew, and the
    /// login is counted here.
    pub churn: Option<Arc<crate::churn::ChurnStats>>,
}

/// Stream management counts of a live session.
#[derive(Debug, Default)]
pub struct Counts {
    /// Whether it is on.
    pub on: bool,
    /// The server's stanzas handled, modulo 2^32.
    pub handled: u32,
    /// Handled since the last ack sent.
    pub unacked: u32,
}

impl Counts {
    /// One stanza from the server handled; an ack to send, now and then.
    pub fn handled_one(&mut self) -> Option<Vec<u8>> {
        if !self.on {
            return None;
        }
        self.handled = self.handled.wrapping_add(1);
        self.unacked += 1;
        (self.unacked >= ACK_EVERY).then(|| self.ack())
    }

    /// `<a h/>` for what was handled.
    pub fn ack(&mut self) -> Vec<u8> {
        self.unacked = 0;
        sm::ack(self.handled).to_vec()
    }
}

/// Drops `rate` random connections per second among `kills` until `stop`.
pub async fn chaos(
    rate: f64,
    kills: Vec<(u32, Arc<tokio::sync::Notify>)>,
    seed: u64,
    mut stop: watch::Receiver<bool>,
) {
    use rand::{Rng, SeedableRng};
    if rate <= 0.0 || kills.is_empty() {
        return;
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let (_, kill) = &kills[rng.gen_range(0..kills.len())];
                kill.notify_one();
            }
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_come_every_so_often_and_count_everything() {
        let mut c = Counts {
            on: true,
            ..Counts::default()
        };
        let acks: Vec<_> = (0..ACK_EVERY * 2).filter_map(|_| c.handled_one()).collect();
        assert_eq!(acks.len(), 2);
        assert_eq!(
            String::from_utf8(acks[1].clone()).unwrap(),
            format!("<a xmlns='urn:xmpp:sm:3' h='{}'/>", ACK_EVERY * 2)
        );
        let mut off = Counts::default();
        assert!(off.handled_one().is_none());
        assert_eq!(off.handled, 0);
    }
}
