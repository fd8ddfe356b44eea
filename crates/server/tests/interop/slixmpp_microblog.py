#!/usr/bin/env python3
"""Interop: real slixmpp clients against the release `starling` binary.

Usage: slixmpp_microblog.py PATH/TO/starling

Starts the binary on loopback ports with a fresh data directory (TLS
required, registration open), then, with two slixmpp clients, the flow the
server issue names:
  1. registers both accounts in-band (XEP-0077), over STARTTLS;
  2. logs in with SCRAM-SHA-1 over STARTTLS and binds;
  3. subscribes to presence both ways (slixmpp approves and subscribes
     back on the user's behalf), and each sees the other online;
  4. advertises urn:xmpp:microblog:0+notify through XEP-0115 caps (the
     server queries disco#info, verifies the hash, and replays the last
     post with a delay stamp);
  5. publishes an Atom entry to the default (presence) node, which the
     follower receives as a live headline event;
  6. follows with an explicit XEP-0060 subscribe as well, receives the
     last item, and still gets each later post once;
  7. pages the history with RSM: an empty <before/> gives the newest page,
     then walks back;
  8. retracts an item; the follower is notified and history forgets it;
  9. explicit subscribers get no +notify filter (PROTOCOL §6): with the node
     open, a stranger whose client advertises no caps subscribes with its
     bare JID, as Movim does, and so does a `both` contact without caps;
     each gets the next post live, once, and the stranger gets the last
     item replayed when it comes online again.
Exits non-zero on the first failure. Bounded: every wait has a timeout.
"""

import asyncio
import ssl

import slixmpp
from starling_interop import Registering, ATOM, DOMAIN, NODE, TIMEOUT, check, entry, run_against, until
from slixmpp.plugins.xep_0059 import Set as RsmSet
from slixmpp.plugins.xep_0060.stanza import Pubsub
from slixmpp.xmlstream import register_stanza_plugin

# slixmpp pages disco#items with RSM but does not attach RSM to pubsub
# queries; XEP-0059 allows it there, and Starling serves it.
register_stanza_plugin(Pubsub, RsmSet)


class Client(Registering, slixmpp.ClientXMPP):
    def __init__(self, user, password, caps=True, register=True):
        super().__init__(f"{user}@{DOMAIN}/slixmpp", password, sasl_mech="SCRAM-SHA-1")
        # The server's certificate is the self-signed one it generated.
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        plugins = ["xep_0004", "xep_0030", "xep_0059", "xep_0060", "xep_0077",
                   "xep_0199", "xep_0203"]
        # Without caps the client's presence carries no <c/>: the server
        # knows no +notify interest for it at all.
        if caps:
            plugins += ["xep_0115", "xep_0163"]
        for p in plugins:
            self.register_plugin(p)
        self.plugin["xep_0077"].force_registration = register
        self.plugin["xep_0077"].create_account = register
        self.ready = asyncio.Event()
        self.events = asyncio.Queue()
        self.add_event_handler("register", self.on_register)
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("pubsub_publish", self.events.put_nowait)
        self.retracts = asyncio.Queue()
        self.add_event_handler("pubsub_retract", self.retracts.put_nowait)
        self.online = set()
        self.add_event_handler("got_online", lambda p: self.online.add(str(p["from"])))


async def publish(c, item_id, title, options=None):
    r = await c.plugin["xep_0060"].publish(c.boundjid.bare, NODE, id=item_id, payload=entry(title),
                                           options=options, timeout=TIMEOUT)
    check(r["pubsub"]["publish"]["item"]["id"] == item_id, f"publish {item_id!r} acknowledged")


async def rsm_page(c, owner, before):
    iq = c.Iq(stype="get", sto=owner)
    iq["pubsub"]["items"]["node"] = NODE
    iq["pubsub"]["rsm"]["max"] = "2"
    iq["pubsub"]["rsm"]["before"] = before
    r = await iq.send(timeout=TIMEOUT)
    return [i["id"] for i in r["pubsub"]["items"]], r["pubsub"]["rsm"]


async def flow(port):
    jane, joe = Client("jane", "pw-jane"), Client("joe", "pw-joe")
    for c in (jane, joe):
        c.connect("127.0.0.1", port)
        await asyncio.wait_for(c.ready.wait(), TIMEOUT)
        check("starttls" in c.features, f"{c.boundjid.bare} registered and logged in over STARTTLS")
    ja, jo = jane.boundjid.bare, joe.boundjid.bare

    # 3. Presence subscriptions both ways.
    joe.send_presence_subscription(pto=ja)
    await until(lambda: joe.client_roster[ja]["subscription"] == "both"
                and jane.client_roster[jo]["subscription"] == "both", "a mutual subscription")
    check(True, "presence subscription is 'both' in both rosters")
    await until(lambda: str(jane.boundjid) in joe.online and str(joe.boundjid) in jane.online,
                "each other's presence")
    check(True, "each sees the other available")

    # 4. Caps with +notify; the last post is replayed once it is verified.
    await publish(jane, "first", "first post")
    joe.plugin["xep_0163"].add_interest(NODE)
    # add_interest recomputes caps without broadcasting; announce them.
    await joe.plugin["xep_0115"].update_caps(broadcast=False)
    joe.send_presence()
    msg = await asyncio.wait_for(joe.events.get(), TIMEOUT)
    check(msg["pubsub_event"]["items"]["item"]["id"] == "first" and msg["delay"]["stamp"] is not None,
          "+notify learnt from verified caps: the last post replayed with a delay stamp")

    # 5. A live post through the presence follow.
    await publish(jane, "second", "second post")
    msg = await asyncio.wait_for(joe.events.get(), TIMEOUT)
    item = msg["pubsub_event"]["items"]["item"]
    check(msg["type"] == "headline" and item["id"] == "second", "live post delivered as a headline event")
    title = item["payload"].find(f"{{{ATOM}}}title")
    check(title is not None and title.text == "second post", "Atom entry delivered as published")

    # 6. An explicit subscribe too, as Movim follows.
    r = await joe.plugin["xep_0060"].subscribe(ja, NODE, bare=False, timeout=TIMEOUT)
    check(r["pubsub"]["subscription"]["subscription"] == "subscribed", "explicit subscribe accepted")
    msg = await asyncio.wait_for(joe.events.get(), TIMEOUT)
    check(msg["pubsub_event"]["items"]["item"]["id"] == "second", "new subscriber got the last item")
    await publish(jane, "third", "third post")
    msg = await asyncio.wait_for(joe.events.get(), TIMEOUT)
    check(msg["pubsub_event"]["items"]["item"]["id"] == "third", "next post delivered")
    await joe.plugin["xep_0199"].ping(DOMAIN, timeout=TIMEOUT)
    check(joe.events.empty(), "delivered once although two routes qualify")

    # 7. RSM paging over five posts.
    for i in (4, 5):
        await publish(jane, f"p{i}", f"post {i}")
    for _ in range(2):
        await asyncio.wait_for(joe.events.get(), TIMEOUT)
    ids, rsm = await rsm_page(joe, ja, True)
    check(ids == ["p4", "p5"] and str(rsm["count"]) == "5" and str(rsm["first_index"]) == "3",
          f"empty <before/> gives the newest page, oldest first: {ids}")
    ids, rsm = await rsm_page(joe, ja, rsm["first"])
    check(ids == ["second", "third"], f"<before>p4</before> walks back: {ids}")
    ids, _ = await rsm_page(joe, ja, "second")
    check(ids == ["first"], f"the oldest page: {ids}")
    r = await joe.plugin["xep_0060"].get_items(ja, NODE, max_items=1, timeout=TIMEOUT)
    check([i["id"] for i in r["pubsub"]["items"]] == ["p5"], "max_items=1 returns the newest item")

    # 8. Retract.
    await jane.plugin["xep_0060"].retract(ja, NODE, "p5", notify=True, timeout=TIMEOUT)
    msg = await asyncio.wait_for(joe.retracts.get(), TIMEOUT)
    check(msg["pubsub_event"]["items"]["retract"]["id"] == "p5", "retract notified to the follower")
    ids, _ = await rsm_page(joe, ja, True)
    check(ids == ["third", "p4"], f"retracted item gone from history: {ids}")

    # 9. Explicit subscribers without caps (Movim-style bare subscriptions).
    await open_node(jane, ja)
    kim, lee = Client("kim", "pw-kim", caps=False), Client("lee", "pw-lee", caps=False)
    for c in (kim, lee):
        c.connect("127.0.0.1", port)
        await asyncio.wait_for(c.ready.wait(), TIMEOUT)
    ki, le = kim.boundjid.bare, lee.boundjid.bare
    lee.send_presence_subscription(pto=ja)
    await until(lambda: lee.client_roster[ja]["subscription"] == "both"
                and jane.client_roster[le]["subscription"] == "both", "lee and jane mutual")
    for c in (kim, lee):
        r = await c.plugin["xep_0060"].subscribe(ja, NODE, bare=True, timeout=TIMEOUT)
        check(r["pubsub"]["subscription"]["jid"] == c.boundjid.bare,
              f"{c.boundjid.bare} subscribed with its bare JID, no caps")
        msg = await asyncio.wait_for(c.events.get(), TIMEOUT)
        check(msg["pubsub_event"]["items"]["item"]["id"] == "p4", f"{c.boundjid.bare} got the last item")
    await publish(jane, "p6", "post 6")
    for c in (kim, lee):
        msg = await asyncio.wait_for(c.events.get(), TIMEOUT)
        check(msg["pubsub_event"]["items"]["item"]["id"] == "p6" and msg["type"] == "headline",
              f"{c.boundjid.bare} (no caps, bare subscription) got the next post live")
        await c.plugin["xep_0199"].ping(DOMAIN, timeout=TIMEOUT)
        check(c.events.empty(), f"{c.boundjid.bare} got it once")
    # Coming online again without caps: the last item is replayed.
    await asyncio.wait_for(kim.disconnect(), TIMEOUT)
    kim2 = Client("kim", "pw-kim", caps=False, register=False)
    kim2.connect("127.0.0.1", port)
    await asyncio.wait_for(kim2.ready.wait(), TIMEOUT)
    msg = await asyncio.wait_for(kim2.events.get(), TIMEOUT)
    check(msg["pubsub_event"]["items"]["item"]["id"] == "p6" and msg["delay"]["stamp"] is not None,
          f"{ki} coming online without caps got the last item replayed")
    for c in (jane, joe, lee, kim2):
        c.disconnect()


async def open_node(c, owner):
    """Sets the microblog node's access model to open (#owner configure)."""
    form = c.plugin["xep_0004"].make_form(ftype="submit")
    form.add_field(var="FORM_TYPE", ftype="hidden",
                   value="http://jabber.org/protocol/pubsub#node_config")
    form.add_field(var="pubsub#access_model", value="open")
    await c.plugin["xep_0060"].set_node_config(owner, NODE, form, timeout=TIMEOUT)
    check(True, "node configured open")


if __name__ == "__main__":
    run_against(flow, "slixmpp interop")
