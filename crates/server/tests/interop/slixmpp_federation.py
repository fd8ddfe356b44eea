#!/usr/bin/env python3
"""Interop: Starling (a.example) federated with Prosody 0.12 (b.example).

Usage: scripts/federation-netns PATH/TO/starling python3 slixmpp_federation.py

Run inside the namespace scripts/federation-netns sets up: each domain is
found through its SRV record, the servers meet over s2s with STARTTLS and
dialback, and slixmpp clients log in to each side. The flows:
  1. an explicit XEP-0060 subscribe each way between strangers (kim@a and
     lee@b), with open nodes: the subscription is accepted, the last item
     replayed, the next post delivered live;
  2. items retrieval each way;
  3. a presence follow between jane@a and joe@b (subscribe, approved both
     ways by slixmpp), each advertising urn:xmpp:microblog:0+notify in
     XEP-0115 caps; each server learns the other's user's interest by
     asking disco#info across s2s, and a post each way arrives as a
     headline event.
Exits non-zero on the first failure. Bounded: every wait has a timeout.
"""

import asyncio
import logging
import os
import ssl
import sys

import slixmpp
from starling_interop import ATOM, NODE, TIMEOUT, Registering, check, entry, until

STARLING = ("127.0.0.2", 5222)
PROSODY = ("127.0.0.3", 5222)


class Client(Registering, slixmpp.ClientXMPP):
    def __init__(self, jid, password):
        super().__init__(f"{jid}/slixmpp", password)
        # Each server's certificate is self-signed.
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        for p in ["xep_0004", "xep_0030", "xep_0060", "xep_0077", "xep_0115",
                  "xep_0163", "xep_0199", "xep_0203"]:
            self.register_plugin(p)
        self.plugin["xep_0077"].force_registration = True
        self.plugin["xep_0077"].create_account = True
        self.ready = asyncio.Event()
        self.events = asyncio.Queue()
        self.add_event_handler("register", self.on_register)
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("pubsub_publish", self.events.put_nowait)


def open_options(c, max_items=None):
    form = c.plugin["xep_0004"].make_form(ftype="submit")
    form.add_field(var="FORM_TYPE", ftype="hidden",
                   value="http://jabber.org/protocol/pubsub#publish-options")
    form.add_field(var="pubsub#access_model", value="open")
    if max_items:
        # Prosody keeps one item per PEP node unless asked for more.
        form.add_field(var="pubsub#max_items", value=max_items)
    return form


async def publish(c, item_id, options=None):
    r = await c.plugin["xep_0060"].publish(c.boundjid.bare, NODE, id=item_id,
                                           payload=entry(item_id), options=options,
                                           timeout=TIMEOUT)
    check(r["pubsub"]["publish"]["item"]["id"] == item_id,
          f"{c.boundjid.bare} published {item_id!r}")


async def event(c, want, what):
    """Waits for the event carrying item `want`; returns it."""
    async def wait():
        while True:
            msg = await c.events.get()
            if msg["pubsub_event"]["items"]["item"]["id"] == want:
                return msg
    msg = await asyncio.wait_for(wait(), TIMEOUT)
    item = msg["pubsub_event"]["items"]["item"]
    title = item["payload"].find(f"{{{ATOM}}}title")
    check(title is not None and title.text == want, what)
    return msg


async def login(jid, addr):
    c = Client(jid, f"pw-{jid}")
    c.connect(*addr)
    await asyncio.wait_for(c.ready.wait(), TIMEOUT)
    # Prosody pushes roster changes only to resources that asked for the
    # roster (RFC 6121 §2.1.6, "interested resources").
    await c.get_roster(timeout=TIMEOUT)
    check(True, f"{jid} registered and logged in")
    return c


async def explicit(kim, lee):
    ki, le = kim.boundjid.bare, lee.boundjid.bare
    await publish(kim, "kim-1", open_options(kim))
    await publish(lee, "lee-1", open_options(lee, "10"))
    for sub, owner, last in ((lee, ki, "kim-1"), (kim, le, "lee-1")):
        r = await sub.plugin["xep_0060"].subscribe(owner, NODE, bare=False, timeout=TIMEOUT)
        check(r["pubsub"]["subscription"]["subscription"] == "subscribed",
              f"{sub.boundjid.bare} subscribed to {owner} across servers")
        await event(sub, last, f"{sub.boundjid.bare} got {owner}'s last item")
    await publish(kim, "kim-2")
    await event(lee, "kim-2", "Starling's post reached the Prosody subscriber live")
    await publish(lee, "lee-2")
    await event(kim, "lee-2", "Prosody's post reached the Starling subscriber live")
    for c, owner, want in ((lee, ki, {"kim-1", "kim-2"}), (kim, le, {"lee-1", "lee-2"})):
        r = await c.plugin["xep_0060"].get_items(owner, NODE, timeout=TIMEOUT)
        ids = {i["id"] for i in r["pubsub"]["items"]}
        check(ids == want, f"{c.boundjid.bare} read {owner}'s items: {sorted(ids)}")


async def presence_follow(jane, joe):
    ja, jo = jane.boundjid.bare, joe.boundjid.bare
    for c in (jane, joe):
        c.plugin["xep_0163"].add_interest(NODE)
        await c.plugin["xep_0115"].update_caps(broadcast=False)
        c.send_presence()
    # slixmpp approves and subscribes back on its user's behalf.
    joe.send_presence_subscription(pto=ja)
    await until(lambda: joe.client_roster[ja]["subscription"] == "both"
                and jane.client_roster[jo]["subscription"] == "both",
                "a mutual subscription across servers")
    check(True, "presence subscription is 'both' on both servers")
    # Each server asks the other's user for its caps over s2s; allow the
    # answers to land before posting, and take a replay or a live post.
    await asyncio.sleep(2)
    await publish(jane, "jane-1")
    await event(joe, "jane-1", "Starling delivered to a Prosody follower by presence and caps")
    await publish(joe, "joe-1")
    await event(jane, "joe-1", "Prosody delivered to a Starling follower by presence and caps")


async def main():
    logging.basicConfig(level=getattr(logging, os.environ.get("LOG", "WARNING")))
    kim = await login("kim@a.example", STARLING)
    lee = await login("lee@b.example", PROSODY)
    await explicit(kim, lee)
    jane = await login("jane@a.example", STARLING)
    joe = await login("joe@b.example", PROSODY)
    await presence_follow(jane, joe)
    for c in (kim, lee, jane, joe):
        c.disconnect()


if __name__ == "__main__":
    try:
        asyncio.run(asyncio.wait_for(main(), 150))
        print("slixmpp federation interop: 1 passed, 0 failed")
    except Exception as e:  # one clear line, non-zero exit
        print(f"slixmpp federation interop FAILED: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
