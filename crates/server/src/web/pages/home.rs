//! The home page of a logged-in account: its home timeline (its own posts
//! and those of everyone it follows), a page at a time; a post box;
//! follow and unfollow; the follow requests waiting for an answer
//! (presence subscriptions, as Mastodon's follow requests), to approve or
//! decline; and live updates.
//!
//! Every action is a plain form (POST, CSRF token, then 303 back), done
//! by the API's own handlers, so the page and Mastodon apps cannot
//! disagree. Live updates come from `/home/stream`: the API's user stream
//! (a fan-out session like any XMPP follower's), authorized by the
//! session cookie instead of a bearer token, which a page script could
//! not keep from an injected one.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use stanza::{ns, BareJid};

use super::session::{SessionForm, WebSession};
use super::{error_page, layout, local_path, see_other, status_list};
use crate::pubsub::AccessModel;
use crate::store::StatusRange;
use crate::web::api::entities::{followers_of, following_of, Site};
use crate::web::api::statuses::home_of;
use crate::web::api::{accounts, follows, statuses, streaming, ApiError, ApiResult, Params};
use crate::Shared;

/// A follow or unfollow button for `jid`, returning to `back`.
pub(super) fn follow_button(me: &WebSession, jid: &str, following: bool, back: &str) -> Markup {
    if following {
        button(me, Action::Unfollow, jid, back)
    } else {
        button(me, Action::Follow, jid, back)
    }
}

/// What a button on an account does, each by the API's own handler.
#[derive(Debug, Clone, Copy)]
enum Action {
    Follow,
    Unfollow,
    /// Approve a follow request (presence `subscribed`).
    Approve,
    /// Decline it (presence `unsubscribed`).
    Decline,
    /// Remove a follower (every route it follows by).
    Remove,
}

impl Action {
    fn form(self) -> (&'static str, &'static str) {
        match self {
            Action::Follow => ("/home/follow", "Follow"),
            Action::Unfollow => ("/home/unfollow", "Unfollow"),
            Action::Approve => ("/home/approve", "Approve"),
            Action::Decline => ("/home/decline", "Decline"),
            Action::Remove => ("/home/remove", "Remove"),
        }
    }
}

/// A one-button form doing `what` to `jid`, returning to `back`.
fn button(me: &WebSession, what: Action, jid: &str, back: &str) -> Markup {
    let (action, label) = what.form();
    html! {
        form.inline method="post" action=(action) {
            input type="hidden" name="csrf" value=(me.csrf());
            input type="hidden" name="account" value=(jid);
            input type="hidden" name="return" value=(back);
            button type="submit" { (label) }
        }
    }
}

/// A list (`id`) of accounts, local ones linked to their profiles, each
/// with a button doing `what` to it.
fn accounts_list(
    me: &WebSession,
    id: &str,
    list: &[BareJid],
    domain: &str,
    what: Action,
) -> Markup {
    html! {
        ul id=(id) {
            @for a in list {
                li {
                    @if a.domain() == domain {
                        a href={ "/users/" (a.node().unwrap_or_default()) } { (a) }
                    } @else { (a) }
                    " " (button(me, what, a.as_str(), "/"))
                }
            }
        }
    }
}

/// `GET /`: the home page, or the login form's address.
pub(super) async fn page(State(shared): State<Arc<Shared>>, me: WebSession, uri: Uri) -> Response {
    match render(&shared, &me, &uri).await {
        Ok(m) => m.into_response(),
        Err(e) => error_page(e),
    }
}

async fn render(shared: &Arc<Shared>, me: &WebSession, uri: &Uri) -> ApiResult<Markup> {
    let max_id = Params::query(uri)?.u64("max_id")?;
    let range = StatusRange {
        max_id,
        ..StatusRange::default()
    };
    let statuses = home_of(shared, me.jid.clone(), range, super::profile::PAGE).await?;
    let j = me.jid.clone();
    let (following, open, mut requests, followers) = shared
        .db(move |s| {
            let open = s
                .node(&j, ns::MICROBLOG)?
                .is_some_and(|n| n.config.access_model == AccessModel::Open);
            let requests: Vec<BareJid> = s
                .roster(&j)?
                .into_iter()
                .filter(|(_, item)| item.pending_in)
                .map(|(who, _)| who)
                .collect();
            let followers = followers_of(s, &j)?;
            Ok::<_, crate::StoreError>((following_of(s, &j)?, open, requests, followers))
        })
        .await
        .map_err(ApiError::store)?;
    let mut following: Vec<BareJid> = following.into_iter().collect();
    following.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    requests.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    let mut followers: Vec<BareJid> = followers.into_iter().collect();
    followers.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    let older = (statuses.len() == super::profile::PAGE)
        .then(|| statuses.last().map(|s| format!("/?max_id={}", s.id)))
        .flatten();
    let csrf = me.csrf();
    let domain = me.jid.domain().to_owned();
    let local = me.jid.node().unwrap_or_default().to_owned();
    let max_chars = shared.config.web.max_status_chars;
    // Live updates belong on the newest page only.
    let live = max_id.is_none();
    let body = html! {
        div.columns {
            aside.side {
                section.card {
                    p { "Logged in as " strong { a href={ "/users/" (local) } { (me.jid) } } }
                    form.inline method="post" action="/logout" {
                        input type="hidden" name="csrf" value=(csrf);
                        button.quiet type="submit" { "Log out" }
                    }
                }
                section.card {
                    h2 { "Who reads your posts" }
                    form #privacy method="post" action="/home/privacy" {
                        input type="hidden" name="csrf" value=(csrf);
                        label.choice {
                            input type="radio" name="privacy" value="public" checked[open];
                            "Everyone: your profile and feed are public"
                        }
                        label.choice {
                            input type="radio" name="privacy" value="private" checked[!open];
                            "Followers you approved"
                        }
                        button.quiet type="submit" { "Save" }
                    }
                }
                @if !requests.is_empty() {
                    section.card #requests {
                        h2 { "Follow requests" }
                        ul {
                            @for r in &requests {
                                li {
                                    span.who { (r) } " "
                                    (button(me, Action::Approve, r.as_str(), "/"))
                                    (button(me, Action::Decline, r.as_str(), "/"))
                                }
                            }
                        }
                    }
                }
                section.card {
                    h2 { "Follow" }
                    form method="post" action="/home/follow" {
                        input type="hidden" name="csrf" value=(csrf);
                        input type="hidden" name="return" value="/";
                        input name="account" required placeholder="name or name@domain"
                            aria-label="Account to follow";
                        button type="submit" { "Follow" }
                    }
                    @if following.is_empty() {
                        p.hint { "You follow nobody yet." }
                    } @else {
                        (accounts_list(me, "following", &following, &domain, Action::Unfollow))
                    }
                }
                @if !followers.is_empty() {
                    section.card {
                        h2 { "Followers" }
                        (accounts_list(me, "followers", &followers, &domain, Action::Remove))
                    }
                }
            }
            div.stream {
                section.card.compose {
                    form #compose method="post" action="/home/post" {
                        input type="hidden" name="csrf" value=(csrf);
                        textarea name="status" required maxlength=(max_chars) rows="3"
                            placeholder="What's happening?" aria-label="Post text" {}
                        button type="submit" { "Post" }
                    }
                }
                h2 { "Home" @if live { " " span #live .live data-state="connecting" { "connecting" } } }
                @if statuses.is_empty() { p.empty #empty { "Nothing here yet: post, or follow someone." } }
                (status_list(&statuses, &domain, "timeline"))
                @if let Some(q) = older { p.more { a rel="next" href=(q) { "Older posts" } } }
            }
        }
    };
    let head = if live {
        html! { script src="/static/home.js" defer {} }
    } else {
        html! {}
    };
    Ok(layout("Home", head, body))
}

/// The answer to a form: back to `to`, or the API's refusal as a page.
fn done(r: ApiResult, to: &str) -> Response {
    match r {
        Ok(_) => see_other(to),
        Err(e) => error_page(e),
    }
}

/// `POST /home/post`: `status`.
pub(super) async fn post(
    State(shared): State<Arc<Shared>>,
    site: Site,
    SessionForm(me, p): SessionForm,
) -> Response {
    done(
        statuses::create(State(shared), site, me.authed(), p).await,
        "/",
    )
}

/// `POST /home/privacy`: `privacy`, `public` or `private` (the node's
/// access model, as the API's `source[privacy]`).
pub(super) async fn privacy(
    State(shared): State<Arc<Shared>>,
    site: Site,
    SessionForm(me, p): SessionForm,
) -> Response {
    let mut q = Params::default();
    if let Some(v) = p.str("privacy") {
        q.0.insert("source[privacy]".into(), v.into());
    }
    let r = accounts::update_credentials(State(shared), site, me.authed(), q).await;
    done(r, "/")
}

/// `POST /home/follow`, `/home/unfollow`, `/home/approve`,
/// `/home/decline` and `/home/remove` (a follower): `account` (a name here, or a JID), and `return`, the
/// page to go back to.
pub(super) async fn account_action(
    State(shared): State<Arc<Shared>>,
    site: Site,
    Path(action): Path<String>,
    SessionForm(me, p): SessionForm,
) -> Response {
    let what = match action.as_str() {
        "follow" => Action::Follow,
        "unfollow" => Action::Unfollow,
        "approve" => Action::Approve,
        "decline" => Action::Decline,
        "remove" => Action::Remove,
        _ => return error_page(ApiError::not_found()),
    };
    act(shared, site, me, p, what).await
}

async fn act(shared: Arc<Shared>, site: Site, me: WebSession, p: Params, what: Action) -> Response {
    let account = p.str("account").unwrap_or_default().trim().to_owned();
    if account.is_empty() {
        return error_page(ApiError::unprocessable("Say which account."));
    }
    let (shared, who, me) = (State(shared), Path(account), me.authed());
    let r = match what {
        Action::Follow => follows::follow(shared, site, me, who).await,
        Action::Unfollow => follows::unfollow(shared, site, me, who).await,
        Action::Approve => follows::authorize(shared, site, me, who).await,
        Action::Decline => follows::reject(shared, site, me, who).await,
        Action::Remove => follows::remove_from_followers(shared, site, me, who).await,
    };
    done(r, &local_path(p.str("return")))
}

/// `GET /home/stream`: the account's API user stream, by cookie.
pub(super) async fn stream(
    State(shared): State<Arc<Shared>>,
    site: Site,
    me: WebSession,
) -> Response {
    match streaming::user(State(shared), site, me.authed()).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}
