"""What the slixmpp interop scripts share: constants, small helpers, and
running one flow against the release `starling` binary on loopback.

Each script is run as `python3 SCRIPT.py PATH/TO/starling`; this module
sits beside them, so it is importable from there.
"""

import asyncio
import logging
import ssl
import os
import signal
import socket
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


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print(f"ok: {what}")


async def until(pred, what):
    for _ in range(TIMEOUT * 10):
        if pred():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class Registering:
    """For a slixmpp client: answers in-band registration with its own name
    and password, and sends presence (then sets `ready`) at session start.
    Mixed in before `slixmpp.ClientXMPP`; the client makes `ready` and
    subscribes these handlers."""

    async def on_register(self, _iq):
        resp = self.Iq()
        resp["type"] = "set"
        resp["register"]["username"] = self.boundjid.user
        resp["register"]["password"] = self.password
        await resp.send()

    async def on_start(self, _event):
        self.send_presence()
        self.ready.set()


class Account(Registering, slixmpp.ClientXMPP):
    """A slixmpp client for `user` (password `pw-USER`) that registers its
    account in-band (XEP-0077) over STARTTLS, logs in with SCRAM-SHA-1 and
    sets `ready` once available. The server's certificate is the
    self-signed one it generated, so it is not checked."""

    def __init__(self, user, resource, plugins=("xep_0004", "xep_0030", "xep_0060", "xep_0077")):
        super().__init__(f"{user}@{DOMAIN}/{resource}", f"pw-{user}", sasl_mech="SCRAM-SHA-1")
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        for p in plugins:
            self.register_plugin(p)
        self.plugin["xep_0077"].force_registration = True
        self.plugin["xep_0077"].create_account = True
        self.ready = asyncio.Event()
        self.add_event_handler("register", self.on_register)
        self.add_event_handler("session_start", self.on_start)


def run_against(flow, name, http=False):
    """Starts the binary named on the command line (TLS required,
    registration open), runs `flow(port)` within 120 s, stops the server
    with SIGTERM and checks it exits cleanly. One clear line and a non-zero
    exit on the first failure. With `http`, the server also listens for
    HTTP and the flow is called as `flow(port, http_port)`."""
    try:
        binary = sys.argv[1]
        logging.basicConfig(level=getattr(logging, os.environ.get("LOG", "WARNING")))
        port, tls_port = free_port(), free_port()
        extra, args = [], (port,)
        if http:
            http_port = free_port()
            extra, args = ["--http-listen", f"127.0.0.1:{http_port}"], (port, http_port)
        with tempfile.TemporaryDirectory() as data:
            server = subprocess.Popen(
                [binary, "--data-dir", data, "--domain", DOMAIN, "serve", "--no-s2s-listen",
                 "--c2s-listen", f"127.0.0.1:{port}", "--c2s-tls-listen", f"127.0.0.1:{tls_port}",
                 "--allow-registration", *extra],
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
                asyncio.run(asyncio.wait_for(flow(*args), 120))
            finally:
                server.send_signal(signal.SIGTERM)
                try:
                    code = server.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    server.kill()
                    code = "killed"
            check(code == 0, f"starling shut down cleanly on SIGTERM (exit {code})")
        print(f"{name}: 1 passed, 0 failed")
    except Exception as e:  # one clear line, non-zero exit
        if os.environ.get("TRACEBACK"):
            import traceback
            traceback.print_exc()
        print(f"{name} FAILED: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
