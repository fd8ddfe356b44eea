//! Public profiles: `/users/{localpart}` lists the account's latest posts
//! that the viewer may read (everyone, for an open node), newest first, a
//! page at a time, with how to follow it and its Atom feed; and one post
//! at `/users/{localpart}/statuses/{id}`, the `url` the API gives
//! statuses. Plain HTML: nothing here needs JavaScript.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use stanza::{ns, BareJid};

use super::session::{MaybeSession, WebSession};
use super::{error_page, layout, status_list};
use crate::pubsub::AccessModel;
use crate::store::StatusRange;
use crate::web::api::statuses::{may_read, readable, statuses_of};
use crate::web::api::{ApiError, ApiResult, Params};
use crate::web::feed::domain_of;
use crate::Shared;

/// Posts per profile page.
pub(super) const PAGE: usize = 20;

/// What the profile shows about the account.
struct Owner {
    jid: BareJid,
    open: bool,
    /// Whether the viewer may read the posts.
    readable: bool,
    following: bool,
}

async fn owner_of(
    shared: &Arc<Shared>,
    headers: &HeaderMap,
    localpart: &str,
    viewer: Option<&BareJid>,
) -> ApiResult<Owner> {
    let domain = domain_of(shared, headers);
    let jid = BareJid::new(&format!("{localpart}@{domain}")).map_err(|_| no_account())?;
    let (j, v) = (jid.clone(), viewer.cloned());
    let found = shared
        .db(move |s| {
            if s.account(&j)?.is_none() {
                return Ok(None);
            }
            let open = s
                .node(&j, ns::MICROBLOG)?
                .is_some_and(|n| n.config.access_model == AccessModel::Open);
            let readable = may_read(s, &j, v.as_ref())?;
            let following = match &v {
                Some(v) => crate::web::api::entities::following_of(s, v)?.contains(&j),
                None => false,
            };
            Ok::<_, crate::StoreError>(Some((open, readable, following)))
        })
        .await
        .map_err(ApiError::store)?;
    let (open, readable, following) = found.ok_or_else(no_account)?;
    Ok(Owner {
        jid,
        open,
        readable,
        following,
    })
}

fn no_account() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "There is no account by that name here.",
    )
}

/// `GET /users/{localpart}`.
pub(super) async fn profile(
    State(shared): State<Arc<Shared>>,
    MaybeSession(me): MaybeSession,
    Path(localpart): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    match render(&shared, me, &localpart, &headers, &uri).await {
        Ok(m) => m.into_response(),
        Err(e) => error_page(e),
    }
}

async fn render(
    shared: &Arc<Shared>,
    me: Option<WebSession>,
    localpart: &str,
    headers: &HeaderMap,
    uri: &Uri,
) -> ApiResult<Markup> {
    let viewer = me.as_ref().map(|m| m.jid.clone());
    let owner = owner_of(shared, headers, localpart, viewer.as_ref()).await?;
    let range = StatusRange {
        max_id: Params::query(uri)?.u64("max_id")?,
        ..StatusRange::default()
    };
    let statuses = statuses_of(shared, owner.jid.clone(), viewer.clone(), range, PAGE).await?;
    let older = (statuses.len() == PAGE)
        .then(|| statuses.last().map(|s| format!("?max_id={}", s.id)))
        .flatten();
    let jid = owner.jid.to_string();
    let own = viewer.as_ref() == Some(&owner.jid);
    let domain = owner.jid.domain().to_owned();
    let head = html! {
        link rel="alternate" type="application/atom+xml" title={ (jid) "'s posts" }
            href={ "/users/" (localpart) "/feed.atom" };
    };
    let body = html! {
        section.card.profile {
            h1 { (localpart) }
            p.jid { a href={ "xmpp:" (jid) } { (jid) } }
            @if let Some(me) = &me {
                @if !own {
                    (super::home::follow_button(me, &jid, owner.following, uri.path()))
                }
            } @else {
                p { a href="/login" { "Log in" } " to follow " (localpart) " here." }
            }
            details.howto {
                summary { "Follow from elsewhere" }
                ul {
                    li { "From an XMPP client (Movim, Gajim, Conversations): add "
                         code { (jid) } " as a contact, or subscribe to its "
                         code { "urn:xmpp:microblog:0" } " node." }
                    li { "From a Mastodon app: log in at this server and search for "
                         code { "@" (localpart) "@" (domain) } "." }
                    li { "From a feed reader: "
                         a href={ "/users/" (localpart) "/feed.atom" } { "the Atom feed" }
                         @if !owner.open { " (it lists public posts only)" } "." }
                }
            }
        }
        @if statuses.is_empty() {
            p.empty {
                @if owner.readable { "No posts yet." }
                @else { "Only followers can read " (localpart) "'s posts." }
            }
        }
        (status_list(&statuses, &domain, "posts"))
        @if let Some(q) = older { p.more { a rel="next" href=(q) { "Older posts" } } }
    };
    Ok(layout(localpart, head, body))
}

/// `GET /users/{localpart}/statuses/{id}`.
pub(super) async fn status(
    State(shared): State<Arc<Shared>>,
    MaybeSession(me): MaybeSession,
    Path((localpart, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let viewer = me.map(|m| m.jid);
    let shown = async {
        let st = readable(&shared, &id, viewer).await?;
        let domain = domain_of(&shared, &headers).to_owned();
        if st.owner.node() != Some(localpart.as_str()) || st.owner.domain() != domain {
            return Err(ApiError::not_found());
        }
        Ok(layout(
            &localpart,
            html! {},
            html! {
                (status_list(std::slice::from_ref(&st), &domain, "posts"))
                p.more { a href={ "/users/" (localpart) } { "More from " (localpart) } }
            },
        ))
    };
    match shown.await {
        Ok(m) => m.into_response(),
        Err(e) => error_page(e),
    }
}
