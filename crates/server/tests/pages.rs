//! The web page's edges against the in-process server, over plain HTTP:
//! headers, login and its CSRF defences, sessions, paging and escaping.
//! The page in a real browser (live updates, scripts that must not run)
//! is tested in headless Chromium (`tests/interop/chromium_web.py`).

mod common;

use std::net::SocketAddr;

use common::http::{http, token_with, Reply};
use common::{Client, TestServer};

const ACCOUNTS: [(&str, &str); 2] = [("jane", "secret"), ("joe", "secret")];
const FORM: &str = "Content-Type: application/x-www-form-urlencoded";

async fn start() -> TestServer {
    TestServer::start(&ACCOUNTS, |c| {
        c.http_listen = vec!["127.0.0.1:0".parse().unwrap()];
    })
    .await
}

/// The value of the hidden `csrf` input of a page.
fn csrf_in(body: &str) -> String {
    let at = body.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    body[at..].split('"').next().unwrap().to_owned()
}

/// `name=value` of a `Set-Cookie` header for `name`.
fn cookie(r: &Reply, name: &str) -> Option<String> {
    r.headers("set-cookie")
        .into_iter()
        .find(|c| c.starts_with(&format!("{name}=")))
}

fn value(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

/// Logs jane in through the form; her session cookie (`name=value`).
async fn login(addr: SocketAddr) -> String {
    let form = http(addr, "GET", "/login", &[], b"").await;
    let csrf = csrf_in(&form.body);
    let c = value(&cookie(&form, "starling_login_csrf").unwrap());
    let body = format!("csrf={csrf}&username=jane&password=secret");
    let r = http(
        addr,
        "POST",
        "/login",
        &[FORM, &format!("Cookie: {c}")],
        body.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.header("location").as_deref(), Some("/"));
    let set = cookie(&r, "starling_session").expect("a session cookie");
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Lax"),
        "{set}"
    );
    value(&set)
}

#[tokio::test]
async fn pages_carry_a_content_security_policy_and_an_unknown_profile_is_a_404_page() {
    let srv = start().await;
    let addr = srv.http_addr.unwrap();
    for path in ["/login", "/users/jane", "/users/nobody"] {
        let r = http(addr, "GET", path, &[], b"").await;
        let csp = r.header("content-security-policy").unwrap_or_default();
        assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(r.header("x-frame-options").as_deref(), Some("DENY"));
    }
    let r = http(addr, "GET", "/users/nobody", &[], b"").await;
    assert_eq!(r.status, 404);
    assert!(r.body.contains("no account by that name"), "{}", r.body);
    let r = http(addr, "GET", "/", &[], b"").await;
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location").as_deref(), Some("/login"));
}

#[tokio::test]
async fn a_login_needs_its_csrf_cookie_and_the_right_password() {
    let srv = start().await;
    let addr = srv.http_addr.unwrap();
    let form = http(addr, "GET", "/login", &[], b"").await;
    let csrf = csrf_in(&form.body);
    let body = format!("csrf={csrf}&username=jane&password=secret");
    // A cross-site post cannot send the strict cookie.
    let r = http(addr, "POST", "/login", &[FORM], body.as_bytes()).await;
    assert_eq!(r.status, 403);
    assert!(cookie(&r, "starling_session").is_none());
    let c = value(&cookie(&form, "starling_login_csrf").unwrap());
    let wrong = format!("csrf={csrf}&username=jane&password=guess");
    let cookie_h = format!("Cookie: {c}");
    let r = http(addr, "POST", "/login", &[FORM, &cookie_h], wrong.as_bytes()).await;
    assert_eq!(r.status, 401);
    assert!(r.body.contains("Wrong username or password"));
    assert!(cookie(&r, "starling_session").is_none());
    let session = login(addr).await;
    let home = http(addr, "GET", "/", &[&format!("Cookie: {session}")], b"").await;
    assert_eq!(home.status, 200);
    assert!(home.body.contains("jane@example.org"), "{}", home.body);
}

#[tokio::test]
async fn forms_need_the_session_csrf_token_and_logout_revokes_the_session() {
    let srv = start().await;
    let addr = srv.http_addr.unwrap();
    let session = login(addr).await;
    let c = format!("Cookie: {session}");
    let home = http(addr, "GET", "/", &[&c], b"").await;
    let csrf = csrf_in(&home.body);
    for bad in ["", "csrf=0000&"] {
        let body = format!("{bad}status=forged");
        let r = http(addr, "POST", "/home/post", &[FORM, &c], body.as_bytes()).await;
        assert_eq!(r.status, 403, "{bad:?}");
    }
    let body = format!("csrf={csrf}&status=from+the+form");
    let r = http(addr, "POST", "/home/post", &[FORM, &c], body.as_bytes()).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let home = http(addr, "GET", "/", &[&c], b"").await;
    assert!(home.body.contains("from the form"));
    assert!(!home.body.contains("forged"));
    // Another session's token does not pass for this one's.
    let other = login(addr).await;
    let other_home = http(addr, "GET", "/", &[&format!("Cookie: {other}")], b"").await;
    assert_ne!(csrf_in(&other_home.body), csrf);

    let body = format!("csrf={csrf}");
    let r = http(addr, "POST", "/logout", &[FORM, &c], body.as_bytes()).await;
    assert_eq!(r.status, 303);
    assert!(cookie(&r, "starling_session")
        .unwrap()
        .contains("Max-Age=0"));
    let r = http(addr, "GET", "/", &[&c], b"").await;
    assert_eq!(r.status, 303, "the session's token was revoked");
    let r = http(addr, "GET", "/", &[&format!("Cookie: {other}")], b"").await;
    assert_eq!(r.status, 200, "the other session lives on");
}

#[tokio::test]
async fn an_api_token_is_not_a_page_session() {
    let srv = start().await;
    let addr = srv.http_addr.unwrap();
    let token = token_with(addr, "read+write").await;
    let r = http(
        addr,
        "GET",
        "/",
        &[&format!("Cookie: starling_session={token}")],
        b"",
    )
    .await;
    assert_eq!(r.status, 303);
}

#[tokio::test]
async fn a_profile_lists_public_posts_twenty_a_page_as_escaped_text() {
    let srv = start().await;
    let addr = srv.http_addr.unwrap();
    let token = token_with(addr, "read+write").await;
    let auth = format!("Authorization: Bearer {token}");
    let empty = http(addr, "GET", "/users/jane", &[], b"").await;
    assert!(empty.body.contains("No posts yet"), "{}", empty.body);
    let posts = |i: usize| {
        if i == 0 {
            "<script>alert(1)</script> & \"q\"".to_owned()
        } else {
            format!("post {i}")
        }
    };
    for i in 0..21 {
        let body = serde_urlencoded::to_string([("status", posts(i))]).unwrap();
        let r = http(
            addr,
            "POST",
            "/api/v1/statuses",
            &[FORM, &auth],
            body.as_bytes(),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    // Posts on a presence node: a visitor sees none, their author all.
    let r = http(addr, "GET", "/users/jane", &[], b"").await;
    assert!(r.body.contains("Only followers can read"));
    assert!(!r.body.contains("post 20"));
    let body = "source[privacy]=public";
    let r = http(
        addr,
        "PATCH",
        "/api/v1/accounts/update_credentials",
        &[FORM, &auth],
        body.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);

    let first = http(addr, "GET", "/users/jane", &[], b"").await;
    assert_eq!(first.status, 200);
    assert_eq!(first.body.matches("<li class=\"status\"").count(), 20);
    assert!(first.body.contains("post 20") && first.body.contains("post 1<"));
    assert!(first.body.contains("href=\"/users/jane/feed.atom\""));
    let at = first.body.find("?max_id=").expect("an older page") + 8;
    let max_id: String = first.body[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let older = http(
        addr,
        "GET",
        &format!("/users/jane?max_id={max_id}"),
        &[],
        b"",
    )
    .await;
    assert_eq!(older.body.matches("<li class=\"status\"").count(), 1);
    assert!(older
        .body
        .contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;q&quot;"));
    assert!(!older.body.contains("<script>alert"));
    assert!(!older.body.contains("?max_id="), "no page past the last");
    // Each post has its page, the `url` the API gives it.
    let at = first.body.find("href=\"/users/jane/statuses/").unwrap() + 6;
    let path: String = first.body[at..].chars().take_while(|&c| c != '"').collect();
    let one = http(addr, "GET", &path, &[], b"").await;
    assert_eq!(one.status, 200, "{path}");
    assert_eq!(one.body.matches("<li class=\"status\"").count(), 1);
    assert!(one.body.contains("post 20"));
    let elsewhere = path.replace("/users/jane/", "/users/joe/");
    assert_eq!(http(addr, "GET", &elsewhere, &[], b"").await.status, 404);
    let bad = http(addr, "GET", "/users/jane?max_id=x", &[], b"").await;
    assert_eq!(bad.status, 400);
}

/// Reads `c`'s stanzas until a presence of `kind` from `from` (a bounded
/// number; roster pushes and presence may come first, in any order).
async fn presence_of(c: &mut Client, kind: &str, from: &str) {
    for _ in 0..16 {
        let e = c.element().await;
        if e.name == "presence" && e.attr("type") == Some(kind) && e.attr("from") == Some(from) {
            return;
        }
    }
    panic!("no {kind} presence from {from}");
}

#[tokio::test]
async fn follow_requests_are_listed_and_answered_from_the_home_page() {
    let srv = start().await;
    let addr = srv.http_addr.unwrap();
    let (mut joe, _) = Client::login_plain_scram(srv.addr, "joe", "secret").await;
    // Available, so that presence answers reach this resource (RFC 6121).
    joe.send("<presence/>").await;
    joe.drain().await;
    joe.keep_presence = true;
    let session = login(addr).await;
    let c = format!("Cookie: {session}");
    let home = http(addr, "GET", "/", &[&c], b"").await;
    assert!(!home.body.contains("Follow requests"), "none yet");
    let csrf = csrf_in(&home.body);
    let answer = |path: &'static str| {
        let (c, csrf) = (c.clone(), csrf.clone());
        async move {
            let body = format!("csrf={csrf}&account=joe%40example.org&return=%2F");
            http(addr, "POST", path, &[FORM, &c], body.as_bytes()).await
        }
    };

    for (path, kind) in [
        ("/home/approve", "subscribed"),
        ("/home/decline", "unsubscribed"),
    ] {
        // joe asks to follow jane over XMPP (after an approval, he first
        // unsubscribes, so that he can ask again).
        if kind == "unsubscribed" {
            joe.send("<presence to='jane@example.org' type='unsubscribe'/>")
                .await;
        }
        joe.send("<presence to='jane@example.org' type='subscribe'/>")
            .await;
        joe.drain().await;
        let home = http(addr, "GET", "/", &[&c], b"").await;
        let requests = home.body.split("id=\"requests\"").nth(1).unwrap_or("");
        assert!(requests.contains("joe@example.org"), "{}", home.body);
        assert!(requests.contains("/home/approve") && requests.contains("/home/decline"));
        // Without the form's token, nothing is answered.
        let forged = b"account=joe%40example.org";
        let r = http(addr, "POST", path, &[FORM, &c], forged).await;
        assert_eq!(r.status, 403);

        let r = answer(path).await;
        assert_eq!(r.status, 303, "{}", r.body);
        assert_eq!(r.header("location").as_deref(), Some("/"));
        presence_of(&mut joe, kind, "jane@example.org").await;
        let home = http(addr, "GET", "/", &[&c], b"").await;
        assert!(
            !home.body.contains("id=\"requests\""),
            "answered: {}",
            home.body
        );
    }
    // Approved once more, joe is listed among jane's followers, and
    // removing him from them sends him `unsubscribed`.
    joe.send("<presence to='jane@example.org' type='subscribe'/>")
        .await;
    joe.drain().await;
    assert_eq!(answer("/home/approve").await.status, 303);
    presence_of(&mut joe, "subscribed", "jane@example.org").await;
    let home = http(addr, "GET", "/", &[&c], b"").await;
    let followers = home.body.split("id=\"followers\"").nth(1).unwrap_or("");
    assert!(followers.contains("joe@example.org"), "{}", home.body);
    let r = answer("/home/remove").await;
    assert_eq!(r.status, 303, "{}", r.body);
    presence_of(&mut joe, "unsubscribed", "jane@example.org").await;
    let home = http(addr, "GET", "/", &[&c], b"").await;
    assert!(!home.body.contains("id=\"followers\""), "{}", home.body);

    // Nobody is asking: an answer is a 404 page (as Mastodon's API), and
    // does not make joe a follower in advance.
    let r = answer("/home/approve").await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert!(
        r.body.contains("no follow request from joe@example.org"),
        "{}",
        r.body
    );
}
