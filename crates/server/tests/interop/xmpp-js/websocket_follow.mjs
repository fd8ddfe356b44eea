// Interop: @xmpp/client over WebSocket (RFC 7395) against the release
// starling binary.
//
// Usage: node websocket_follow.mjs PATH/TO/starling
//
// Starts the binary on loopback with a fresh data directory and an HTTP
// listener, then:
//   1. joe logs in over ws://…/xmpp-websocket (SCRAM through @xmpp/client),
//      advertising urn:xmpp:microblog:0+notify in XEP-0115 caps and
//      answering the server's disco#info query for them;
//   2. jane logs in over TCP (xmpp://), and joe follows her by presence
//      (subscribe, approved; jane subscribes back);
//   3. jane publishes an Atom entry over TCP; joe receives it live, once,
//      as a headline event on the WebSocket.
// Exits non-zero on the first failure; every wait is bounded.

import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { client, xml } from "@xmpp/client";

const DOMAIN = "example.org";
const NODE = "urn:xmpp:microblog:0";
const CAPS_NODE = "https://starling.example/interop";
const TIMEOUT_MS = 20000;
const binary = process.argv[2];
if (!binary) {
  console.error("usage: websocket_follow.mjs PATH/TO/starling");
  process.exit(2);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on("error", reject);
  });
}

function within(ms, what, promise) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

let failures = 0;
function check(ok, what) {
  console.log(`${ok ? "ok" : "FAIL"}: ${what}`);
  if (!ok) failures += 1;
  return ok;
}

// XEP-0115 §5.1: the verification string of one identity and features.
function capsVer(identity, features) {
  let s = `${identity.category}/${identity.type}//${identity.name}<`;
  for (const f of [...features].sort()) s += `${f}<`;
  return createHash("sha1").update(s, "utf8").digest("base64");
}

const IDENTITY = { category: "client", type: "web", name: "starling interop" };
const FEATURES = [
  "http://jabber.org/protocol/caps",
  "http://jabber.org/protocol/disco#info",
  `${NODE}+notify`,
];
const VER = capsVer(IDENTITY, FEATURES);

async function main() {
  const data = mkdtempSync(join(tmpdir(), "starling-xmpp-js-"));
  const c2s = await freePort();
  const http = await freePort();
  // Loopback only, without TLS (the self-signed certificate would need
  // trusting): SCRAM and PLAIN on plain streams.
  const config = join(data, "starling.toml");
  writeFileSync(config, "tls = false\nrequire_encryption = false\nallow_plaintext_auth = true\n");
  const base = [binary, "--config", config, "--data-dir", data, "--domain", DOMAIN];
  for (const user of ["jane", "joe"]) {
    const r = spawnSync(base[0], [...base.slice(1), "adduser", `${user}@${DOMAIN}`], {
      input: "secret\n",
      encoding: "utf8",
    });
    if (r.status !== 0) throw new Error(`adduser ${user}: ${r.stderr}`);
  }
  const server = spawn(
    base[0],
    [...base.slice(1), "serve", "--no-s2s-listen", "--c2s-listen", `127.0.0.1:${c2s}`,
     "--http-listen", `127.0.0.1:${http}`],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let log = "";
  server.stderr.on("data", (d) => { log += d; });
  const stopped = new Promise((resolve) => server.on("exit", resolve));
  try {
    await run(c2s, http);
  } catch (e) {
    check(false, e.message);
    console.error(log.split("\n").slice(-20).join("\n"));
  } finally {
    server.kill("SIGTERM");
    const code = await within(10000, "the server to stop", stopped).catch(() => null);
    check(code === 0, `starling shut down cleanly on SIGTERM (exit ${code})`);
    rmSync(data, { recursive: true, force: true });
  }
}

async function connected(service, user, resource) {
  // The server may still be starting: retry the first connection briefly.
  for (let i = 0; ; i++) {
    const x = client({ service, domain: DOMAIN, username: user, password: "secret", resource });
    x.on("error", () => {});
    try {
      await within(TIMEOUT_MS, `${user} online`, x.start());
      return x;
    } catch (e) {
      await x.stop().catch(() => {});
      if (i >= 20) throw e;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

async function run(c2s, http) {
  const joe = await connected(`ws://127.0.0.1:${http}/xmpp-websocket`, "joe", "web");
  check(true, "joe logged in over WebSocket");
  // The server asks about our caps; answer as a client does.
  joe.iqCallee.get("http://jabber.org/protocol/disco#info", "query", () =>
    xml("query", { xmlns: "http://jabber.org/protocol/disco#info", node: `${CAPS_NODE}#${VER}` },
      xml("identity", IDENTITY),
      ...FEATURES.map((f) => xml("feature", { var: f }))));

  const jane = await connected(`xmpp://127.0.0.1:${c2s}`, "jane", "tcp");
  check(true, "jane logged in over TCP");

  // Presence follow: joe asks, jane approves and asks back, joe approves.
  const janeGotAsk = new Promise((resolve) => jane.on("stanza", (s) => {
    if (s.is("presence") && s.attrs.type === "subscribe") resolve(s.attrs.from);
  }));
  const joeGotAsk = new Promise((resolve) => joe.on("stanza", (s) => {
    if (s.is("presence") && s.attrs.type === "subscribe") resolve(s.attrs.from);
  }));
  await jane.send(xml("presence"));
  await joe.send(xml("presence", {}, xml("c", {
    xmlns: "http://jabber.org/protocol/caps", hash: "sha-1", node: CAPS_NODE, ver: VER })));
  await joe.send(xml("presence", { to: `jane@${DOMAIN}`, type: "subscribe" }));
  const asker = await within(TIMEOUT_MS, "jane to get joe's request", janeGotAsk);
  check(asker.startsWith(`joe@${DOMAIN}`), `jane got the request from ${asker}`);
  await jane.send(xml("presence", { to: `joe@${DOMAIN}`, type: "subscribed" }));
  await jane.send(xml("presence", { to: `joe@${DOMAIN}`, type: "subscribe" }));
  await within(TIMEOUT_MS, "joe to get jane's request", joeGotAsk);
  await joe.send(xml("presence", { to: `jane@${DOMAIN}`, type: "subscribed" }));

  const posts = [];
  joe.on("stanza", (s) => {
    if (!s.is("message")) return;
    const item = s.getChild("event", "http://jabber.org/protocol/pubsub#event")
      ?.getChild("items")?.getChild("item");
    if (item && !s.getChild("delay", "urn:xmpp:delay")) posts.push({ id: item.attrs.id, type: s.attrs.type });
  });
  // Let the caps query round trip and the follow settle: wait for jane's
  // presence at joe, which comes once joe's subscription is approved.
  await new Promise((r) => setTimeout(r, 500));

  const id = `ws-${Date.now()}`;
  const result = await within(TIMEOUT_MS, "the publish result", jane.iqCaller.set(
    xml("pubsub", { xmlns: "http://jabber.org/protocol/pubsub" },
      xml("publish", { node: NODE },
        xml("item", { id },
          xml("entry", { xmlns: "http://www.w3.org/2005/Atom" },
            xml("title", {}, "hello over WebSocket")))))));
  check(result !== undefined, "jane published over TCP");
  const deadline = Date.now() + TIMEOUT_MS;
  while (!posts.some((p) => p.id === id) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
  }
  const got = posts.filter((p) => p.id === id);
  check(got.length >= 1, "joe got the post live over WebSocket");
  check(got[0]?.type === "headline", "as a headline message");
  await new Promise((r) => setTimeout(r, 300));
  check(posts.filter((p) => p.id === id).length === 1, "exactly once");
  await joe.stop();
  await jane.stop();
}

await main();
console.log(`@xmpp/client interop: ${failures === 0 ? 1 : 0} passed, ${failures === 0 ? 0 : 1} failed`);
process.exit(failures === 0 ? 0 : 1);
