// Live updates for the home page: the account's streaming API (SSE),
// each post rendered as text. Nothing here uses innerHTML: a post is
// data, whatever it contains.
"use strict";
(function () {
  const list = document.getElementById("timeline");
  const badge = document.getElementById("live");
  if (!list || !window.EventSource) return;

  function setState(state) {
    if (badge) { badge.dataset.state = state; badge.textContent = state; }
  }

  // Mastodon's `content` is escaped HTML in a paragraph: parsed inertly
  // (a parsed document runs no script and loads nothing) to get the text.
  function textOf(html) {
    const doc = new DOMParser().parseFromString(html, "text/html");
    doc.querySelectorAll("br").forEach(function (br) { br.replaceWith("\n"); });
    return doc.body.textContent;
  }

  // Only this site's own links are followed; anything else stays text.
  function sameOrigin(url) {
    try { return new URL(url, location.href).origin === location.origin; } catch (e) { return false; }
  }

  function when(iso) {
    const d = new Date(iso);
    if (isNaN(d)) return "";
    const months = ["Jan","Feb","Mar","Apr","May","Jun","Jul","Aug","Sep","Oct","Nov","Dec"];
    const p = function (n) { return String(n).padStart(2, "0"); };
    return p(d.getUTCDate()) + " " + months[d.getUTCMonth()] + " " + d.getUTCFullYear() + " " +
      p(d.getUTCHours()) + ":" + p(d.getUTCMinutes()) + " UTC";
  }

  function link(cls, href, text) {
    const a = document.createElement(sameOrigin(href) ? "a" : "span");
    a.className = cls;
    if (a.tagName === "A") a.href = new URL(href, location.href).pathname;
    a.textContent = text;
    return a;
  }

  function render(status) {
    const li = document.createElement("li");
    li.className = "status fresh";
    li.dataset.id = status.id;
    const meta = document.createElement("div");
    meta.className = "meta";
    const acct = (status.account && status.account.acct) || "";
    meta.append(link("author", (status.account && status.account.url) || "", acct));
    meta.append(" · ");
    const t = document.createElement("time");
    t.textContent = when(status.created_at);
    const time = link("time", status.url || "", "");
    time.append(t);
    meta.append(time);
    const p = document.createElement("p");
    p.className = "text";
    p.textContent = textOf(status.content || "");
    li.append(meta, p);
    return li;
  }

  function find(id) {
    return Array.prototype.find.call(list.children, function (li) { return li.dataset.id === String(id); });
  }

  const source = new EventSource("/home/stream");
  source.onopen = function () { setState("live"); };
  source.onerror = function () { setState(source.readyState === EventSource.CLOSED ? "offline" : "connecting"); };
  source.addEventListener("update", function (ev) {
    let status;
    try { status = JSON.parse(ev.data); } catch (e) { return; }
    const old = find(status.id);
    const li = render(status);
    if (old) { old.replaceWith(li); } else { list.prepend(li); }
    const empty = document.getElementById("empty");
    if (empty) empty.remove();
  });
  source.addEventListener("delete", function (ev) {
    const old = find(ev.data);
    if (old) old.remove();
  });
})();
