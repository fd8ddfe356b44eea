#!/usr/bin/env python3
"""Interop: Mastodon.py against the release binary's client API, with a
slixmpp follower on the XMPP side of the same accounts.

Usage: mastodon_py.py PATH/TO/starling

  1. registers an app; logs in with the password grant, and with the
     authorization-code flow through the login form (CSRF token and
     cookie; a post without the token is refused);
  2. verify_credentials; `locked` until the account opens its node with
     update_credentials, then public;
  3. a post through the API reaches an XMPP subscriber live, as a
     XEP-0277 entry with the text escaped as text, the Atom feed, and the
     follower's
     user stream and the public stream (server-sent events) as `update`
     events; a post over XMPP reaches the streams too, and a deletion is
     a `delete` event;
  4. a post over XMPP shows in the account's statuses, the home timeline
     of a follower and the public timeline;
  5. paging with limit and the Link header (fetch_next / fetch_previous);
  6. a reply keeps in_reply_to_id; delete retracts the item (the XMPP
     subscriber hears the retract) and it leaves every timeline;
  6b. follows: an unlocked account is followed at once (an explicit
     subscription); a locked one gets a follow request (a presence
     subscription) that its owner authorizes or rejects through the API,
     after which the follower's home timeline has the private posts;
     followers and following lists; unfollow;
  7. bad input: blank, too long, a visibility the node does not have,
     malformed JSON, no token, unknown status: each a 4xx with an
     {"error": …} body;
  8. a revoked token no longer works.
"""

import asyncio
import queue
import re

import feedparser
import requests

from mastodon import Mastodon, MastodonAPIError, MastodonNotFoundError, MastodonUnauthorizedError, StreamListener
from slixmpp.xmlstream import ET
from starling_interop import Account, ATOM, DOMAIN, NODE, TIMEOUT, check, run_against

OOB = "urn:ietf:wg:oauth:2.0:oob"


class Client(Account):
    def __init__(self, user):
        super().__init__(user, "mastodon-test")
        # Follow requests are answered through the API here, not by
        # slixmpp's default of approving every request at once (None: leave
        # them pending; False would refuse them).
        self.roster.auto_authorize = None
        self.roster.auto_subscribe = False
        self.events = asyncio.Queue()
        self.retracts = asyncio.Queue()
        self.add_event_handler("pubsub_publish", self.events.put_nowait)
        self.add_event_handler("pubsub_retract", self.retracts.put_nowait)


def code_flow(base, client_id, client_secret):
    """The browser's part of the authorization-code flow, with requests."""
    s = requests.Session()
    m = Mastodon(client_id=client_id, client_secret=client_secret, api_base_url=base)
    url = m.auth_request_url(redirect_uris=OOB, scopes=["read", "write", "follow"], allow_http=True)
    form = s.get(url, timeout=TIMEOUT)
    check(form.status_code == 200 and "starling_oauth_csrf" in s.cookies, "the login form sets its CSRF cookie")
    fields = dict(re.findall(r"name='([^']+)' value='([^']*)'", form.text))
    no_token = requests.post(f"{base}/oauth/authorize", data={**fields, "csrf": "", "username": "jane",
                                                              "password": "pw-jane"}, timeout=TIMEOUT)
    check(no_token.status_code == 403 and "error" in no_token.json(), "a form posted without its CSRF token is refused")
    wrong = s.post(f"{base}/oauth/authorize", data={**fields, "username": "jane", "password": "nope"},
                   timeout=TIMEOUT)
    check(wrong.status_code == 401 and "Wrong username or password" in wrong.text, "a wrong password shows the form again")
    fields = dict(re.findall(r"name='([^']+)' value='([^']*)'", wrong.text))
    ok = s.post(f"{base}/oauth/authorize", data={**fields, "username": f"jane@{DOMAIN}", "password": "pw-jane"},
                timeout=TIMEOUT)
    code = re.search(r"<code id='code'>([^<]+)</code>", ok.text)
    check(ok.status_code == 200 and code, "the out-of-band redirect shows the code")
    token = m.log_in(code=code.group(1), redirect_uri=OOB, scopes=["read", "write", "follow"], allow_http=True)
    check(bool(token), "the code is exchanged for a token")
    try:
        m.log_in(code=code.group(1), redirect_uri=OOB, scopes=["read", "write", "follow"], allow_http=True)
        check(False, "a code works once")
    except Exception:
        check(True, "a code works once")
    return token


class Listener(StreamListener):
    """Collects a stream's events in a queue, from Mastodon.py's thread."""

    def __init__(self):
        self.events = queue.Queue()

    def on_update(self, status):
        self.events.put(("update", status))

    def on_delete(self, status_id):
        self.events.put(("delete", str(status_id)))


async def next_event(listener, what):
    try:
        return await asyncio.to_thread(listener.events.get, True, TIMEOUT)
    except queue.Empty:
        raise AssertionError(f"timed out waiting for {what}")


def entry_text(msg):
    item = msg["pubsub_event"]["items"]["item"]
    return item["id"], item["payload"].find(f"{{{ATOM}}}title").text


async def flow(port, http_port):
    jane_x, joe_x, amy_x = Client("jane"), Client("joe"), Client("amy")
    for c in (jane_x, joe_x, amy_x):
        c.connect("127.0.0.1", port)
        await asyncio.wait_for(c.ready.wait(), TIMEOUT)
    base = f"http://127.0.0.1:{http_port}"
    run = asyncio.to_thread

    # 1. Apps and tokens.
    cid, secret = await run(Mastodon.create_app, "starling-test", api_base_url=base,
                            scopes=["read", "write", "follow"], redirect_uris=OOB)
    jane = Mastodon(client_id=cid, client_secret=secret, api_base_url=base)
    await run(jane.log_in, "jane", "pw-jane", scopes=["read", "write", "follow"], allow_http=True)
    check(jane.access_token, "the password grant gives a token")
    try:
        await run(Mastodon(client_id=cid, client_secret=secret, api_base_url=base).log_in, "jane", "wrong",
                  scopes=["read"], allow_http=True)
        check(False, "a wrong password is refused")
    except Exception:
        check(True, "a wrong password is refused")
    code_token = await run(code_flow, base, cid, secret)
    joe = Mastodon(client_id=cid, client_secret=secret, api_base_url=base)
    await run(joe.log_in, "joe@" + DOMAIN, "pw-joe", scopes=["read", "write", "follow"], allow_http=True)

    # 2. Identity, and opening the node.
    me = await run(jane.account_verify_credentials)
    check(me.acct == "jane" and me.username == "jane" and me.id == f"jane@{DOMAIN}" and me.locked
          and me.source.privacy == "private", "verify_credentials: a new account is locked (presence model)")
    me = await run(jane.account_update_credentials, locked=False)
    check(not me.locked and me.source.privacy == "public", "update_credentials opens the node")
    looked = await run(jane.account_lookup, "joe")
    check(looked.acct == "joe", "lookup by acct")
    v1, v2 = await run(jane.instance_v1), await run(jane.instance_v2)
    check(v1.urls.streaming_api.startswith("ws://") and v2.configuration.urls.streaming.startswith("ws://"),
          "instance v1 and v2 name the streaming URL")

    # 3. A post from the API reaches an XMPP subscriber live.
    await joe_x.plugin["xep_0060"].subscribe(jane_x.boundjid.bare, NODE, timeout=TIMEOUT)
    joe_stream, public_stream = Listener(), Listener()
    handles = [joe.stream_user(joe_stream, run_async=True),
               Mastodon(api_base_url=base).stream_public(public_stream, run_async=True)]
    r = await run(requests.get, f"{base}/api/v1/streaming/health", timeout=TIMEOUT)
    check(r.status_code == 200 and r.text == "OK", "streaming health")
    await asyncio.sleep(0.5)  # the streams attach
    hostile = "hello <b>world</b> & <script>x</script>"
    st = await run(jane.status_post, hostile, visibility="public")
    check(st.content == "<p>hello &lt;b&gt;world&lt;/b&gt; &amp; &lt;script&gt;x&lt;/script&gt;</p>"
          and st.visibility == "public" and st.account.acct == "jane", "the status's content is escaped text")
    msg = await asyncio.wait_for(joe_x.events.get(), TIMEOUT)
    item_id, title = entry_text(msg)
    check(title == hostile and msg["type"] == "headline", "the API post reached the XMPP subscriber live, as written")
    feed = await run(feedparser.parse, f"{base}/users/jane/feed.atom")
    check(feed.bozo == 0 and feed.entries[0].title == hostile,
          "the API post is in the Atom feed, as written")
    kind, ev = await next_event(joe_stream, "the user stream's update")
    check(kind == "update" and ev.id == st.id and ev.content == st.content,
          "the API post reached joe's user stream as an update")
    kind, ev = await next_event(public_stream, "the public stream's update")
    check(kind == "update" and ev.id == st.id, "and the public stream")

    # 4. A post over XMPP shows in the API's timelines.
    e = ET.Element(f"{{{ATOM}}}entry")
    ET.SubElement(e, f"{{{ATOM}}}title").text = "from xmpp"
    await jane_x.plugin["xep_0060"].publish(jane_x.boundjid.bare, NODE, id="x1", payload=e, timeout=TIMEOUT)
    kind, ev = await next_event(joe_stream, "the XMPP post on the user stream")
    check(kind == "update" and ev.content == "<p>from xmpp</p>", "a post over XMPP reaches the user stream")
    kind, ev = await next_event(public_stream, "the XMPP post on the public stream")
    check(kind == "update" and ev.content == "<p>from xmpp</p>", "and the public stream")
    mine = await run(jane.account_statuses, me.id)
    check([s.content for s in mine[:2]] == ["<p>from xmpp</p>", st.content], "account statuses, newest first")
    await run(joe.status_post, "joe's own", visibility="private")
    home = await run(joe.timeline_home)
    check([s.content for s in home[:3]] == ["<p>joe&#39;s own</p>", "<p>from xmpp</p>", st.content],
          "joe's home timeline merges his posts and jane's (he subscribed over XMPP)")
    public = await run(jane.timeline_public)
    check(all(s.account.acct == "jane" for s in public) and len(public) == 2,
          "the public timeline has open nodes' posts only")

    # 5. Paging.
    for i in range(5):
        await run(jane.status_post, f"page {i}")
    page1 = await run(jane.account_statuses, me.id, limit=3)
    page2 = await run(jane.fetch_next, page1)
    check([s.content for s in page1] == ["<p>page 4</p>", "<p>page 3</p>", "<p>page 2</p>"]
          and [s.content for s in page2] == ["<p>page 1</p>", "<p>page 0</p>", "<p>from xmpp</p>"],
          "limit and the Link header's next page")
    back = await run(jane.fetch_previous, page2)
    check([s.id for s in back] == [s.id for s in page1], "the previous page comes back")
    newer = await run(jane.account_statuses, me.id, since_id=page1[1].id)
    check([s.id for s in newer] == [page1[0].id], "since_id")

    # 6. Replies and deletion.
    reply = await run(joe.status_post, "a reply", in_reply_to_id=st.id, visibility="private")
    check(reply.in_reply_to_id == st.id and reply.in_reply_to_account_id == me.id, "a reply keeps in_reply_to_id")
    while not joe_x.events.empty():
        joe_x.events.get_nowait()
    gone = await run(jane.status_delete, st.id)
    check(gone.text == hostile, "delete answers the status with its text")
    r = await asyncio.wait_for(joe_x.retracts.get(), TIMEOUT)
    check(r["pubsub_event"]["items"]["retract"]["id"] == item_id, "the XMPP subscriber hears the retract")
    # The stream had the paging posts meanwhile; the delete comes after.
    while True:
        kind, ev = await next_event(joe_stream, "the delete event")
        if kind == "delete":
            break
    check(ev == st.id, "the deletion reached joe's user stream as a delete event")
    for h in handles:
        h.close()
    try:
        await run(jane.status, st.id)
        check(False, "a deleted status is gone")
    except MastodonNotFoundError:
        check(True, "a deleted status is gone")
    home = await run(joe.timeline_home)
    check(st.id not in [s.id for s in home], "and left the home timeline")

    # 6b. Follows through the API.
    amy = Mastodon(client_id=cid, client_secret=secret, api_base_url=base)
    await run(amy.log_in, "amy", "pw-amy", scopes=["read", "write", "follow"], allow_http=True)
    joe_id, amy_id = f"joe@{DOMAIN}", f"amy@{DOMAIN}"
    rel = await run(joe.account_follow, me.id)
    check(rel.following and not rel.requested, "following an unlocked account takes effect at once")
    check(joe_id in [a.id for a in await run(jane.account_followers, me.id)]
          and me.id in [a.id for a in await run(joe.account_following, joe_id)],
          "followers and following list the follow")
    rel = await run(jane.account_follow, amy_id)
    check(rel.requested and not rel.following, "following a locked account is a request")
    reqs = await run(amy.follow_requests)
    check([a.id for a in reqs] == [me.id], "the locked account sees the follow request")
    rel = await run(amy.follow_request_authorize, me.id)
    check(rel.followed_by, "authorized: amy is followed by jane")
    rels = await run(jane.account_relationships, [amy_id])
    check(rels[0].following and not rels[0].requested, "jane now follows amy")
    jane_stream = Listener()
    jane_handle = jane.stream_user(jane_stream, run_async=True)
    await asyncio.sleep(0.5)
    secret_post = await run(amy.status_post, "for my followers", visibility="private")
    kind, ev = await next_event(jane_stream, "amy's post on jane's stream")
    check(kind == "update" and ev.id == secret_post.id and ev.visibility == "private",
          "a presence follow feeds the user stream (the same fan-out as XMPP)")
    jane_handle.close()
    home = await run(jane.timeline_home)
    check(secret_post.id in [x.id for x in home], "amy's private post is in her approved follower's home timeline")
    check(secret_post.id not in [x.id for x in await run(jane.timeline_public)], "and not in the public timeline")
    try:
        await run(Mastodon(api_base_url=base).status, secret_post.id)
        check(False, "a private status is hidden from strangers")
    except MastodonNotFoundError:
        check(True, "a private status is hidden from strangers")
    rel = await run(joe.account_follow, amy_id)
    check(rel.requested, "joe asks too")
    await run(amy.follow_request_reject, joe_id)
    rels = await run(joe.account_relationships, [amy_id])
    check(not rels[0].requested and not rels[0].following, "rejected: joe neither follows nor waits")
    try:
        await run(amy.follow_request_authorize, joe_id)
        check(False, "a request no longer waiting cannot be authorized")
    except MastodonNotFoundError:
        check(True, "a request no longer waiting cannot be authorized (404)")
    rels = await run(joe.account_relationships, [amy_id])
    check(not rels[0].following, "and joe was not made a follower in advance")
    check(me.id in [a.id for a in await run(amy.account_followers, amy_id)],
          "a presence follower is listed among followers")
    # Removing followers: a presence follower (jane of amy) and an explicit
    # subscriber (joe of jane, whose posts are public).
    rel = await run(amy.account_remove_from_followers, me.id)
    check(not rel.followed_by, "amy removes jane from her followers")
    rels = await run(jane.account_relationships, [amy_id])
    check(not rels[0].following, "and jane no longer follows amy")
    rel = await run(jane.account_remove_from_followers, joe_id)
    check(not rel.followed_by and joe_id not in [a.id for a in await run(jane.account_followers, me.id)],
          "jane removes joe, an explicit subscriber, from her followers")
    rels = await run(joe.account_relationships, [me.id])
    check(not rels[0].following, "and joe no longer follows jane")
    rel = await run(joe.account_follow, me.id)
    check(rel.following, "joe follows jane again")
    rel = await run(joe.account_unfollow, me.id)
    check(not rel.following, "unfollow")
    check(joe_id not in [a.id for a in await run(jane.account_followers, me.id)], "and the follower is gone")

    # 7. Bad input.
    def bad(fn, *a, **k):
        try:
            fn(*a, **k)
        except MastodonAPIError as e:
            return e.args[1], e.args[3] if len(e.args) > 3 else e.args[2]
        return None, None
    code, _ = await run(bad, jane.status_post, "   ")
    check(code == 422, "a blank status is 422")
    code, _ = await run(bad, jane.status_post, "x" * 501)
    check(code == 422, "a status over 500 characters is 422")
    code, why = await run(bad, jane.status_post, "secret", visibility="private")
    check(code == 422 and "public" in str(why), "a visibility the node does not have is 422, saying why")
    r = await run(requests.post, f"{base}/api/v1/statuses", data="{nope",
                  headers={"Authorization": f"Bearer {jane.access_token}", "Content-Type": "application/json"},
                  timeout=TIMEOUT)
    check(r.status_code == 400 and "error" in r.json(), "malformed JSON is a 400 with an error body")
    r = await run(requests.get, f"{base}/api/v1/accounts/verify_credentials", timeout=TIMEOUT)
    check(r.status_code == 401 and "error" in r.json(), "no token is a 401")
    r = await run(requests.get, f"{base}/api/v1/statuses/123456", timeout=TIMEOUT)
    check(r.status_code == 404 and "error" in r.json(), "an unknown status is a 404")
    r = await run(requests.get, f"{base}/api/v1/statuses/not-a-number", timeout=TIMEOUT)
    check(r.status_code == 404, "a malformed status id is a 404")

    # 8. Revocation.
    r = await run(requests.post, f"{base}/oauth/revoke",
                  data={"client_id": cid, "client_secret": secret, "token": code_token}, timeout=TIMEOUT)
    check(r.status_code == 200, "revoke")
    other = Mastodon(access_token=code_token, api_base_url=base)
    try:
        await run(other.account_verify_credentials)
        check(False, "a revoked token no longer works")
    except MastodonUnauthorizedError:
        check(True, "a revoked token no longer works")
    for c in (jane_x, joe_x, amy_x):
        c.disconnect()


if __name__ == "__main__":
    run_against(flow, "Mastodon.py", http=True)
