//! XEP-0077 in-band registration: account creation before authentication
//! (when the operator opened it) and password change after.

use std::sync::Arc;

use bytes::Bytes;
use stanza::ser::{self, StanzaError, XmlWriter};
use stanza::{ns, BareJid, StanzaErrorCondition as C};

use crate::account::PasswordChange;
use crate::{Shared, StoreError};
use stanza::xep::register::Request;

/// Answers a `jabber:iq:register` iq. `me` is the authenticated account,
/// `None` before authentication, with `current` its session (kept when the
/// password changes); `domain` is the stream's; `peer` the
/// client's address, for the registration rate limits.
pub(crate) async fn iq(
    shared: &Arc<Shared>,
    me: Option<&BareJid>,
    current: Option<&stanza::FullJid>,
    domain: &str,
    peer: std::net::IpAddr,
    id: &str,
    req: Request,
) -> Bytes {
    let err = |e: StanzaError<'_>| ser::stanza_error("iq", Some(id), None, None, &e);
    match (req, me) {
        (Request::Get, _) => {
            let mut w = XmlWriter::with_capacity(200);
            w.open("query").attr("xmlns", ns::REGISTER).close_start();
            match me {
                Some(jid) => {
                    w.raw(b"<registered/>");
                    w.text_element("username", None, jid.node().unwrap_or(""));
                }
                None => {
                    w.text_element("instructions", None, "Choose a username and password.");
                    w.raw(b"<username/>");
                }
            }
            w.raw(b"<password/>").end("query");
            ser::iq_result(id, None, None, Some(w.as_bytes()))
        }
        (Request::Remove, None) => err(StanzaError::new(C::NotAuthorized)),
        (Request::Remove, Some(me)) => {
            // XEP-0077 §3.2: the account goes, with everything it owned;
            // this session gets the answer, then the stream ends.
            match crate::account::delete(shared, me, None).await {
                Ok(_) => ser::iq_result(id, None, None, None),
                Err(_) => err(StanzaError::new(C::InternalServerError)),
            }
        }
        (Request::Set { .. }, None) if !shared.config.allow_registration => {
            err(StanzaError::new(C::NotAllowed))
        }
        (
            Request::Set {
                username: user,
                password: pass,
            },
            who,
        ) => {
            let Ok(jid) = BareJid::from_parts(Some(&user), domain) else {
                return err(StanzaError::new(C::JidMalformed));
            };
            if who.is_some_and(|me| *me != jid) {
                // A password change names the authenticated account only.
                return err(StanzaError::new(C::NotAllowed));
            }
            // Each attempt to create an account costs two PBKDF2s and a
            // durable write: limited per address and overall (RFC 6120
            // §8.3.3.18 `resource-constraint`, type `wait`).
            if who.is_none() && !shared.limiters.registration(peer) {
                shared.metrics.limited("registration");
                return err(StanzaError::new(C::ResourceConstraint)
                    .with_text("too many registrations; try again later"));
            }
            let what = match who {
                Some(_) => PasswordChange::Change,
                None => PasswordChange::Create,
            };
            // A change ends the account's other sessions: they
            // authenticated with the old password and must log in again.
            match crate::account::set_password(shared, &jid, pass, what, current).await {
                Ok(()) => {
                    if who.is_none() {
                        shared.metrics.registrations.inc();
                    }
                    ser::iq_result(id, None, None, None)
                }
                Err(StoreError::Exists(_)) => err(StanzaError::new(C::Conflict)),
                Err(_) => err(StanzaError::new(C::InternalServerError)),
            }
        }
    }
}
