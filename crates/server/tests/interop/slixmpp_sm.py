"""Interop: slixmpp's XEP-0198 against the release `starling` binary.

Usage: slixmpp_sm.py PATH/TO/starling

Starts the binary on loopback (registration open, TLS required), then:
  1. jane and joe register and log in (SCRAM-SHA-1 over STARTTLS); joe's
     client has stream management (xep_0198), which it enables with
     resumption after binding; jane opens her microblog node and joe
     subscribes to it;
  2. joe's TCP connection is killed from outside the client, with
     `ss -K` on its local port (a dead connection, as when a phone changes
     networks);
  3. jane publishes two posts while joe is gone;
  4. joe's client reconnects and resumes the session (XEP-0198 §5), and
     gets both posts, once each.
Exits non-zero on the first failure. Bounded: every wait has a timeout.
"""

import asyncio
import ssl
import subprocess

import slixmpp
from starling_interop import Registering, DOMAIN, NODE, TIMEOUT, check, entry, run_against, until


class Client(Registering, slixmpp.ClientXMPP):
    def __init__(self, user, sm):
        super().__init__(f"{user}@{DOMAIN}/slixmpp", f"pw-{user}", sasl_mech="SCRAM-SHA-1")
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        for p in ["xep_0004", "xep_0030", "xep_0060", "xep_0077", "xep_0199"]:
            self.register_plugin(p)
        if sm:
            self.register_plugin("xep_0198")
        self.plugin["xep_0077"].force_registration = True
        self.plugin["xep_0077"].create_account = True
        self.ready = asyncio.Event()
        self.posts = []
        self.sm_enabled = asyncio.Event()
        self.resumed = asyncio.Event()
        self.add_event_handler("register", self.on_register)
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("sm_enabled", lambda _: self.sm_enabled.set())
        self.add_event_handler("session_resumed", lambda _: self.resumed.set())
        self.add_event_handler(
            "pubsub_publish", lambda m: self.posts.append(m["pubsub_event"]["items"]["item"]["id"]))


async def flow(port):
    jane, joe = Client("jane", sm=False), Client("joe", sm=True)
    for c in (jane, joe):
        c.connect("127.0.0.1", port)
        await asyncio.wait_for(c.ready.wait(), TIMEOUT)
    check(True, "jane and joe registered and logged in over STARTTLS")
    await asyncio.wait_for(joe.sm_enabled.wait(), TIMEOUT)
    sm = joe.plugin["xep_0198"]
    check(bool(sm.sm_id), "joe's client enabled stream management with resumption")

    form = jane.plugin["xep_0004"].make_form(ftype="submit")
    form.add_field("FORM_TYPE", ftype="hidden",
                   value="http://jabber.org/protocol/pubsub#publish-options")
    form.add_field("pubsub#access_model", value="open")
    await jane.plugin["xep_0060"].publish(jane.boundjid.bare, NODE, id="p0",
                                         payload=entry("p0"), options=form, timeout=TIMEOUT)
    await joe.plugin["xep_0060"].subscribe(jane.boundjid.bare, NODE, subscribee=joe.boundjid.bare,
                                           timeout=TIMEOUT)
    check(True, "joe subscribed to jane's node")
    await until(lambda: "p0" in joe.posts, "the last item on subscribe")

    # Registered now: a reconnection only logs in again.
    joe.plugin["xep_0077"].force_registration = False
    joe.plugin["xep_0077"].create_account = False
    joe.del_event_handler("register", joe.on_register)
    # Reconnect when the connection is lost, as a client on a phone would.
    lost = asyncio.Event()

    def on_disconnected(_):
        lost.set()
        joe.connect("127.0.0.1", port)

    joe.add_event_handler("disconnected", on_disconnected)
    local_port = joe.transport.get_extra_info("sockname")[1]
    killed = subprocess.run(["ss", "-K", "src", f"127.0.0.1:{local_port}"],
                            capture_output=True, text=True)
    check(killed.returncode == 0, f"joe's connection (port {local_port}) killed with ss -K")
    await asyncio.wait_for(lost.wait(), TIMEOUT)
    check(True, "joe's client saw the connection drop")

    for pid in ("p1", "p2"):
        await jane.plugin["xep_0060"].publish(jane.boundjid.bare, NODE, id=pid,
                                             payload=entry(pid), timeout=TIMEOUT)
    check(True, "jane published p1 and p2 while joe was gone")

    await asyncio.wait_for(joe.resumed.wait(), TIMEOUT)
    check(True, "joe's client resumed the session")
    await until(lambda: "p1" in joe.posts and "p2" in joe.posts, "p1 and p2 after the resume")
    await asyncio.sleep(0.5)
    check(joe.posts.count("p1") == 1 and joe.posts.count("p2") == 1,
          f"each post once: {joe.posts}")
    joe.del_event_handler("disconnected", on_disconnected)
    for c in (jane, joe):
        c.disconnect()


if __name__ == "__main__":
    run_against(flow, "slixmpp XEP-0198 interop")
