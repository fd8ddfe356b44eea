#!/usr/bin/env python3
"""Interop: feedparser reads Starling's per-user Atom feeds.

Usage: feedparser_feeds.py PATH/TO/starling

Starts the release binary with an HTTP listener; slixmpp clients publish
XEP-0277 entries, and feedparser (the library most feed readers in Python
build on) reads `/users/{localpart}/feed.atom`:
  1. an account with no posts: a valid, empty feed (bozo == 0), with its
     self and alternate links;
  2. one post on an open node: id, title, content, author, published,
     updated and link, as published;
  3. 100 more posts with escaping-hostile titles: the newest 100 listed,
     newest first, each title exactly as published, no markup leaking;
  4. conditional GET: the ETag and Last-Modified give 304; a retraction
     changes the ETag, and the retracted post leaves the feed;
  5. a post on a presence-model node (the default) is not listed, and an
     unknown account is a 404 with a JSON error.
"""

import asyncio
import json
import urllib.error
import urllib.request

import feedparser
from slixmpp.plugins.xep_0004 import Form
from slixmpp.xmlstream import ET
from starling_interop import Account, ATOM, DOMAIN, NODE, TIMEOUT, check, run_against

HOSTILE = "<script>alert('x')</script> & ]]> \"q\" 'a' <![CDATA[x]]> \u00e9\u2603"


def Client(user):
    return Account(user, "feeds")


def post(title, content=None, published=None):
    e = ET.Element(f"{{{ATOM}}}entry")
    ET.SubElement(e, f"{{{ATOM}}}title").text = title
    if content is not None:
        c = ET.SubElement(e, f"{{{ATOM}}}content")
        c.set("type", "text")
        c.text = content
    if published is not None:
        ET.SubElement(e, f"{{{ATOM}}}id").text = "tag:example.org,2026:first"
        ET.SubElement(e, f"{{{ATOM}}}published").text = published
        ET.SubElement(e, f"{{{ATOM}}}updated").text = published
        a = ET.SubElement(e, f"{{{ATOM}}}author")
        ET.SubElement(a, f"{{{ATOM}}}name").text = "Jane Doe"
    return e


def open_node():
    f = Form()
    f["type"] = "submit"
    f.add_field("FORM_TYPE", value="http://jabber.org/protocol/pubsub#publish-options", ftype="hidden")
    f.add_field("pubsub#access_model", value="open")
    return f


def get(url, headers=None):
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


async def flow(port, http_port):
    jane, joe = Client("jane"), Client("joe")
    for c in (jane, joe):
        c.connect("127.0.0.1", port)
        await asyncio.wait_for(c.ready.wait(), TIMEOUT)
    base = f"http://127.0.0.1:{http_port}"
    url = f"{base}/users/jane/feed.atom"
    pub = jane.plugin["xep_0060"]

    # 1. No posts yet.
    status, headers, body = await asyncio.to_thread(get, url)
    f = feedparser.parse(body)
    check(status == 200 and headers["Content-Type"].startswith("application/atom+xml"),
          "an account's feed is served as application/atom+xml")
    check(f.bozo == 0 and f.version == "atom10" and f.entries == [], "the empty feed is valid Atom")
    links = {l["rel"]: l["href"] for l in f.feed.links}
    check(links.get("self") == url and links.get("alternate") == f"{base}/users/jane",
          "the feed has its self link and an alternate link to the user's page")

    # 2. One post on an open node, with every field set.
    await pub.publish(jane.boundjid.bare, NODE, id="first", options=open_node(),
                      payload=post("First & only", "the body <b>", "2026-12-01T10:00:00Z"),
                      timeout=TIMEOUT)
    _, _, body = await asyncio.to_thread(get, url)
    f = feedparser.parse(body)
    check(f.bozo == 0 and len(f.entries) == 1, "one post, one entry")
    e = f.entries[0]
    check(e.id == "tag:example.org,2026:first" and e.title == "First & only"
          and e.content[0].value == "the body <b>" and e.content[0].type == "text/plain",
          "the entry keeps its atom:id, title and text content")
    check(e.published == "2026-12-01T10:00:00Z" and e.updated == "2026-12-01T10:00:00Z"
          and e.author == "Jane Doe", "published, updated and author as published")
    check(e.link.startswith(f"xmpp:jane@{DOMAIN}?;node={NODE};item=first"),
          "the entry links to its item's XMPP URI")

    # 3. 100 hostile posts: the newest 100 are listed, newest first.
    for i in range(100):
        await pub.publish(jane.boundjid.bare, NODE, id=f"h{i}", payload=post(f"{HOSTILE} #{i}"),
                          timeout=TIMEOUT)
    status, headers, body = await asyncio.to_thread(get, url)
    check("ETag" in headers, "an ETag at once")
    # Last-Modified is sent once its second has ended (a change later in
    # the same second would share its date): a second later, it is there.
    await asyncio.sleep(1.1)
    status, headers, body = await asyncio.to_thread(get, url)
    f = feedparser.parse(body)
    check(f.bozo == 0 and len(f.entries) == 100, "100 of the 101 posts listed (feed_items)")
    check([x.title for x in f.entries] == [f"{HOSTILE} #{i}" for i in range(99, -1, -1)],
          "hostile titles come back exactly, newest first")
    check(b"<script>" not in body, "no markup leaks into the document")
    etag, modified = headers["ETag"], headers["Last-Modified"]

    # 4. Conditional GET, then a retraction.
    status, _, body = await asyncio.to_thread(get, url, {"If-None-Match": etag})
    check(status == 304 and body == b"", "If-None-Match with the ETag gives 304")
    status, _, _ = await asyncio.to_thread(get, url, {"If-Modified-Since": modified})
    check(status == 304, "If-Modified-Since with Last-Modified gives 304")
    f = await asyncio.to_thread(feedparser.parse, url, etag=etag)
    check(f.status == 304, "feedparser's own conditional GET gets 304")
    await pub.retract(jane.boundjid.bare, NODE, "h99", notify=True, timeout=TIMEOUT)
    status, headers, body = await asyncio.to_thread(get, url, {"If-None-Match": etag})
    f = feedparser.parse(body)
    check(status == 200 and headers["ETag"] != etag, "after a retraction the ETag changes")
    check(f.bozo == 0 and "h99" not in " ".join(x.link for x in f.entries)
          and f.entries[0].title == f"{HOSTILE} #98", "the retracted post left the feed")
    status, _, _ = await asyncio.to_thread(get, url, {"If-Modified-Since": modified})
    check(status == 200, "and Last-Modified moved on, though no newer post came")

    # 5. Posts on a presence-model node are not public; unknown accounts.
    await joe.plugin["xep_0060"].publish(joe.boundjid.bare, NODE, id="secret",
                                         payload=post("for contacts"), timeout=TIMEOUT)
    _, _, body = await asyncio.to_thread(get, f"{base}/users/joe/feed.atom")
    f = feedparser.parse(body)
    check(f.bozo == 0 and f.entries == [], "a presence-model node's posts stay out of the feed")
    status, headers, body = await asyncio.to_thread(get, f"{base}/users/nobody/feed.atom")
    check(status == 404 and json.loads(body).get("error"), "an unknown account is a 404 with a JSON error")
    for c in (jane, joe):
        c.disconnect()


if __name__ == "__main__":
    run_against(flow, "feedparser feeds", http=True)
