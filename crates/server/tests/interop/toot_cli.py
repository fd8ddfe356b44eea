#!/usr/bin/env python3
"""Interop: toot, the Mastodon command-line client, against the release
binary's client API. toot parses every entity into strict dataclasses, so a
missing field fails its commands.

Usage: toot_cli.py PATH/TO/starling

  1. two accounts (registered over XMPP) log in with `toot login_cli`
     (the password grant, the username sent as "email"), each in its own
     config directory;
  2. joe follows jane (a locked account: a follow request); jane lists and
     accepts it with `toot follow-requests`;
  3. jane posts five statuses with `toot post`; joe's home timeline has
     them, and pages with --limit and --max-id;
  4. `toot status` reads one; `toot delete` deletes it, and it leaves the
     timeline; following and followers list the follow.
toot has no command that streams; the streaming API is tested with
Mastodon.py.
"""

import asyncio
import json
import os
import subprocess
import tempfile

from starling_interop import Account, DOMAIN, TIMEOUT, check, run_against


def Client(user):
    return Account(user, "toot-test", plugins=("xep_0077",))


def toot(cfg, *args, stdin=None):
    env = {**os.environ, "XDG_CONFIG_HOME": cfg}
    r = subprocess.run(["toot", "--no-color", *args], input=stdin, capture_output=True, text=True,
                       env=env, timeout=TIMEOUT)
    if r.returncode != 0:
        raise AssertionError(f"toot {' '.join(args)} failed: {r.stdout}{r.stderr}")
    return r.stdout


def home(cfg, *extra):
    return json.loads(toot(cfg, "timelines", "home", "--json", "--no-pager", *extra))


def flow_sync(base):
    with tempfile.TemporaryDirectory() as jane, tempfile.TemporaryDirectory() as joe:
        out = toot(jane, "login_cli", "-i", base, "-e", "jane", stdin="pw-jane\n")
        check("Successfully logged in" in out, "toot login_cli (password grant)")
        toot(joe, "login_cli", "-i", base, "-e", f"joe@{DOMAIN}", stdin="pw-joe\n")
        who = toot(jane, "whoami")
        check("@jane" in who, "toot whoami parses verify_credentials")
        check("Starling" in toot(jane, "instance"), "toot instance parses the instance")

        toot(joe, "follow", "jane")
        check("joe" in toot(jane, "follow-requests", "list"), "jane sees joe's follow request")
        toot(jane, "follow-requests", "accept", "joe")
        check("@jane" in toot(joe, "following", "joe") and "@joe" in toot(jane, "followers", "jane"),
              "accepted: following and followers list the follow")

        for i in range(5):
            out = toot(jane, "post", f"toot {i} <b>&")
            check(f"/users/jane/statuses/" in out, f"toot post {i}")
        page = home(joe, "--limit", "2")
        check([s["content"] for s in page] == ["<p>toot 4 &lt;b&gt;&amp;</p>", "<p>toot 3 &lt;b&gt;&amp;</p>"],
              "joe's home timeline, newest first, two per page")
        more = home(joe, "--limit", "2", "--max-id", page[-1]["id"])
        check([s["content"] for s in more] == ["<p>toot 2 &lt;b&gt;&amp;</p>", "<p>toot 1 &lt;b&gt;&amp;</p>"],
              "the next page with --max-id")
        one = toot(joe, "status", page[0]["id"])
        check("toot 4 <b>&" in one, "toot status shows the text")
        toot(jane, "delete", page[0]["id"])
        after = home(joe, "--limit", "40")
        check(page[0]["id"] not in [s["id"] for s in after] and len(after) == 4,
              "toot delete: the status left the timeline")


async def flow(port, http_port):
    clients = [Client("jane"), Client("joe")]
    for c in clients:
        c.connect("127.0.0.1", port)
        await asyncio.wait_for(c.ready.wait(), TIMEOUT)
        # toot does the rest; the XMPP sessions only made the accounts.
        c.disconnect()
    await asyncio.to_thread(flow_sync, f"http://127.0.0.1:{http_port}")


if __name__ == "__main__":
    run_against(flow, "toot", http=True)
