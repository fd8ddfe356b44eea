#!/usr/bin/env python3
"""Interop: real slixmpp clients against the release `starling` binary.

Usage: slixmpp_microblog.py PATH/TO/starling

Starts the binary on loopback ports with a fresh data directory (TLS
required, registration open), then, with two slixmpp clients:
  1. registers both accounts in-band (XEP-0077), over STARTTLS;
  2. logs in with SCRAM-SHA-1 over STARTTLS and binds;
  3. publishes an Atom entry to an open microblog node (publish-options);
  4. follows it with an explicit XEP-0060 subscribe, as Movim does, and
     receives the last item at once;
  5. receives a live post as a headline pubsub event;
  6. fetches the newest item with max_items;
  7. retracts an item; the follower is notified and history forgets it.
The presence-subscription and caps steps of the flow and RSM paging arrive
with the server's roster and history steps.
Exits non-zero on the first failure. Bounded: every wait has a timeout.
"""

import asyncio
import logging
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile

import slixmpp
from slixmpp.xmlstream import ET

ATOM = "http://www.w3.org/2005/Atom"
NODE = "urn:xmpp:microblog:0"
DOMAIN = "example.org"
TIMEOUT = 20


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def entry(title):
    e = ET.Element(f"{{{ATOM}}}entry")
    t = ET.SubElement(e, f"{{{ATOM}}}title")
    t.text = title
    return e


class Client(slixmpp.ClientXMPP):
    def __init__(self, user, password):
        super().__init__(f"{user}@{DOMAIN}/slixmpp", password, sasl_mech="SCRAM-SHA-1")
        # The server's certificate is the self-signed one it generated.
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        for p in ("xep_0004", "xep_0030", "xep_0060", "xep_0077", "xep_0203"):
            self.register_plugin(p)
        self.plugin["xep_0077"].force_registration = True
        self.ready = asyncio.Event()
        self.events = asyncio.Queue()
        self.add_event_handler("register", self.on_register)
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("pubsub_publish", self.events.put_nowait)
        self.retracts = asyncio.Queue()
        self.add_event_handler("pubsub_retract", self.retracts.put_nowait)

    async def on_register(self, _iq):
        resp = self.Iq()
        resp["type"] = "set"
        resp["register"]["username"] = self.boundjid.user
        resp["register"]["password"] = self.password
        await resp.send()

    async def on_start(self, _event):
        self.send_presence()
        self.ready.set()


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print(f"ok: {what}")


async def flow(port):
    jane, joe = Client("jane", "pw-jane"), Client("joe", "pw-joe")
    for c in (jane, joe):
        c.connect("127.0.0.1", port)
        await asyncio.wait_for(c.ready.wait(), TIMEOUT)
        check("starttls" in c.features, f"{c.boundjid.bare} registered and logged in over STARTTLS")
    form = jane.plugin["xep_0004"].make_form("submit")
    form.add_field("FORM_TYPE", ftype="hidden", value="http://jabber.org/protocol/pubsub#publish-options")
    form.add_field("pubsub#access_model", value="open")
    r = await jane.plugin["xep_0060"].publish(jane.boundjid.bare, NODE, id="first", payload=entry("first post"), options=form, timeout=TIMEOUT)
    check(r["pubsub"]["publish"]["item"]["id"] == "first", "publish acknowledged with its id")

    r = await joe.plugin["xep_0060"].subscribe(jane.boundjid.bare, NODE, bare=False, timeout=TIMEOUT)
    check(r["pubsub"]["subscription"]["subscription"] == "subscribed", "explicit subscribe accepted")
    msg = await asyncio.wait_for(joe.events.get(), TIMEOUT)
    check(msg["pubsub_event"]["items"]["item"]["id"] == "first", "new subscriber got the last item")
    check(msg["delay"]["stamp"] is not None, "the replay carries a delay stamp")

    await jane.plugin["xep_0060"].publish(jane.boundjid.bare, NODE, id="second", payload=entry("second post"), timeout=TIMEOUT)
    msg = await asyncio.wait_for(joe.events.get(), TIMEOUT)
    item = msg["pubsub_event"]["items"]["item"]
    check(msg["type"] == "headline" and item["id"] == "second", "live post delivered as a headline event")
    title = item["payload"].find(f"{{{ATOM}}}title")
    check(title is not None and title.text == "second post", "Atom entry delivered as published")

    r = await joe.plugin["xep_0060"].get_items(jane.boundjid.bare, NODE, max_items=1, timeout=TIMEOUT)
    ids = [i["id"] for i in r["pubsub"]["items"]]
    check(ids == ["second"], "max_items=1 returns the newest item")

    await jane.plugin["xep_0060"].retract(jane.boundjid.bare, NODE, "second", notify=True, timeout=TIMEOUT)
    msg = await asyncio.wait_for(joe.retracts.get(), TIMEOUT)
    check(msg["pubsub_event"]["items"]["retract"]["id"] == "second", "retract notified to the follower")
    r = await joe.plugin["xep_0060"].get_items(jane.boundjid.bare, NODE, timeout=TIMEOUT)
    check([i["id"] for i in r["pubsub"]["items"]] == ["first"], "retracted item gone from history")
    for c in (jane, joe):
        c.disconnect()


def main():
    binary = sys.argv[1]
    logging.basicConfig(level=logging.WARNING)
    port, tls_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as data:
        server = subprocess.Popen(
            [binary, "--data-dir", data, "--domain", DOMAIN, "serve",
             "--c2s-listen", f"127.0.0.1:{port}", "--c2s-tls-listen", f"127.0.0.1:{tls_port}",
             "--allow-registration"],
            stderr=subprocess.PIPE, text=True)
        try:
            for _ in range(100):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    if server.poll() is not None:
                        raise RuntimeError(f"starling exited: {server.stderr.read()}")
                    asyncio.run(asyncio.sleep(0.1))
            asyncio.run(asyncio.wait_for(flow(port), 120))
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                code = server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
                code = "killed"
        check(code == 0, f"starling shut down cleanly on SIGTERM (exit {code})")
    print("slixmpp interop: 1 passed, 0 failed")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # one clear line, non-zero exit
        print(f"slixmpp interop FAILED: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
