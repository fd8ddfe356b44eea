#!/usr/bin/env python3
"""Interop: the web page in headless Chromium (Debian's chromium and
chromium-driver, driven by Selenium) against the release binary.

Usage: chromium_web.py PATH/TO/starling   (SCREENSHOTS=DIR keeps the
screenshots there; otherwise they go to a temporary directory)

Accounts are registered in-band by slixmpp clients. Two browsers, each
with its own cookies: alice, who posts, and bob, who follows her.
  1. the home page without a session redirects to the login form; a wrong
     password is refused; both log in;
  2. alice makes her posts public; bob follows her from his page's form;
     carol, a slixmpp client, follows her with an explicit XEP-0060
     subscribe;
  3. alice posts from her page: bob's open home page shows the post
     without a reload, and carol's session gets the headline;
  4. alice posts over XMPP (slixmpp): bob's page shows it live;
  5. a hostile post (script, event handler, javascript: link) shows as
     text in bob's live page, after a reload, and on alice's profile: no
     alert, no script or image element in the lists, nothing executed;
  6. a form posted without its CSRF token is refused, and nothing posted;
  7. a screenshot of bob's home page at 1280x800; bob unfollows alice
     from her profile, and her posts leave his home timeline;
  8. logout: the home page redirects to login again, and the old session
     cookie no longer works (its token was revoked);
  9. alice's profile as a visitor sees it, without a session: her public
     posts, the feed link, and a screenshot at 1280x800.
Every wait is bounded (TIMEOUT seconds).
"""

import asyncio
import http.client
import os
import tempfile
import time

from selenium import webdriver
from selenium.common.exceptions import (NoAlertPresentException, NoSuchElementException,
                                        StaleElementReferenceException, WebDriverException)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from starling_interop import Account, DOMAIN, NODE, TIMEOUT, check, entry, run_against

HOSTILE = ("<script>window.__pwned=1;alert(1)</script>"
           "<img src=x onerror=\"window.__pwned=2;alert(2)\">"
           "<a href=\"javascript:window.__pwned=3\">click</a>")


def browser():
    o = webdriver.ChromeOptions()
    o.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              "--window-size=1280,800", "--hide-scrollbars", "--lang=en-US"):
        o.add_argument(a)
    # Debian's driver, named: Selenium Manager never looks for another.
    d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)
    d.set_page_load_timeout(TIMEOUT)
    # The viewport itself, not the window around it, is 1280x800.
    d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                      {"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False})
    return d


def wait(d, pred, what):
    """Polls `pred(d)` until true, for at most TIMEOUT seconds; a page
    changing under it (a stale or missing element, or a node of a document
    being replaced) is a false."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        try:
            if pred(d):
                return
        except (NoSuchElementException, StaleElementReferenceException):
            pass
        except WebDriverException as e:
            if "does not belong to the document" not in str(e):
                raise
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def no_alert(d, what):
    try:
        d.switch_to.alert
    except NoAlertPresentException:
        check(True, f"no alert fired: {what}")
        return
    raise AssertionError(f"an alert fired: {what}")


def login(d, base, user, password):
    d.get(base + "/login")
    d.find_element(By.NAME, "username").send_keys(user)
    d.find_element(By.NAME, "password").send_keys(password)
    d.find_element(By.CSS_SELECTOR, "form[action='/login'] button").click()


def texts(d, list_id):
    return [e.text for e in d.find_elements(By.CSS_SELECTOR, f"#{list_id} li.status p.text")]


def live(d):
    wait(d, lambda d: d.find_element(By.ID, "live").get_attribute("data-state") == "live",
         "the home page's stream to connect")


def post_from_page(d, text):
    box = d.find_element(By.NAME, "status")
    # send_keys types `<` and quotes as keys; the value is what a user typed.
    d.execute_script("arguments[0].value = arguments[1];", box, text)
    d.find_element(By.CSS_SELECTOR, "#compose button").click()
    # The form answers with a redirect to a new page: the old box goes.
    wait(d, lambda d: stale(box), "the page after posting")
    wait(d, lambda d: text in texts(d, "timeline"), f"the poster's page to list {text[:30]!r}")


def stale(element):
    """True once `element`'s document is gone. Mid-navigation ChromeDriver
    may say so as an 'unknown error' (a node that does not belong to the
    document) rather than as a stale reference: both mean gone."""
    try:
        element.is_enabled()
        return False
    except WebDriverException:
        return True


def session_cookie(d):
    c = d.get_cookie("starling_session")
    check(c is not None and c.get("httpOnly"), "the session cookie is HTTP-only")
    return c["value"]


def get_status(http_port, path, cookie=None):
    conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=TIMEOUT)
    headers = {"Cookie": f"starling_session={cookie}"} if cookie else {}
    conn.request("GET", path, headers=headers)
    r = conn.getresponse()
    r.read()
    return r.status, r.getheader("Location")


def steps_login(a, b, base, http_port):
    a.get(base + "/")
    check(a.current_url.endswith("/login"), "without a session, / redirects to /login")
    login(a, base, "alice", "wrong")
    wait(a, lambda d: "Wrong username or password" in d.page_source, "the refusal of a wrong password")
    check(a.get_cookie("starling_session") is None, "a wrong password is refused, with no session")
    login(a, base, "alice", "pw-alice")
    wait(a, lambda d: d.current_url == base + "/", "alice's home page")
    login(b, base, "bob", "pw-bob")
    wait(b, lambda d: d.current_url == base + "/", "bob's home page")
    status, _ = get_status(http_port, "/")
    check(status == 303, "the home page needs the session cookie (303 without)")
    # Alice's posts become public: her profile and feed show them.
    a.find_element(By.CSS_SELECTOR, "#privacy input[value='public']").click()
    a.find_element(By.CSS_SELECTOR, "#privacy button").click()
    wait(a, lambda d: d.find_element(By.CSS_SELECTOR, "#privacy input[value='public']").is_selected(),
         "alice's privacy to read public")
    # Bob follows her from his page.
    b.find_element(By.NAME, "account").send_keys("alice")
    b.find_element(By.CSS_SELECTOR, "form[action='/home/follow'] button").click()
    wait(b, lambda d: f"alice@{DOMAIN}" in d.find_element(By.ID, "following").text,
         "bob's page to list alice among those he follows")
    b.execute_script("window.__marker = 'no reload';")
    live(b)


def steps_hostile(a, b, base):
    post_from_page(a, HOSTILE)
    wait(b, lambda d: HOSTILE in texts(d, "timeline"), "the hostile post in bob's live page")
    for where in ("bob's live page", "bob's page after a reload", "alice's profile"):
        if where == "bob's page after a reload":
            b.refresh()
            wait(b, lambda d: HOSTILE in texts(d, "timeline"), "the hostile post after a reload")
        elif where == "alice's profile":
            b.get(base + "/users/alice")
            wait(b, lambda d: HOSTILE in texts(d, "posts"), "the hostile post on the profile")
        no_alert(b, where)
        injected = b.execute_script(
            "return document.querySelectorAll('ol.statuses script, ol.statuses img, "
            "ol.statuses a[href^=\"javascript\"]').length")
        check(injected == 0, f"no script, image or javascript: link in the list: {where}")
        check(b.execute_script("return window.__pwned === undefined"), f"nothing ran: {where}")
        check(len(b.find_elements(By.TAG_NAME, "script")) <= 1,
              f"the page has only its own script: {where}")


def steps_csrf(b, base):
    b.get(base + "/")
    b.execute_script("document.querySelector('#compose input[name=csrf]').remove();")
    b.find_element(By.NAME, "status").send_keys("forged")
    b.find_element(By.CSS_SELECTOR, "#compose button").click()
    wait(b, lambda d: "CSRF" in d.page_source, "the refusal of a form without its CSRF token")
    check("Forbidden" in b.title, "a form without its CSRF token is refused (403)")
    b.get(base + "/")
    check("forged" not in texts(b, "timeline"), "the refused form posted nothing")


def steps_approve(b, base):
    """Bob answers carol's follow request (a presence subscription she
    sent over XMPP) from his home page."""
    def listed(d):
        d.get(base + "/")
        return f"carol@{DOMAIN}" in d.find_element(By.ID, "requests").text
    wait(b, listed, "carol's follow request on bob's home page")
    b.find_element(By.CSS_SELECTOR, "#requests form[action='/home/approve'] button").click()
    wait(b, lambda d: d.current_url == base + "/" and not d.find_elements(By.ID, "requests"),
         "the answered request to leave bob's page")


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def screenshot(d, path):
    check(d.save_screenshot(path) and png_size(path) == (1280, 800),
          f"screenshot {path} (1280x800)")


def steps_home_screenshot(a, b, base, out):
    os.makedirs(out, exist_ok=True)
    post_from_page(a, "Starling is an XMPP server: follow me from Movim, a Mastodon app or a feed reader.")
    post_from_page(b, "Following alice from the web page; her posts arrive live.")
    b.get(base + "/")
    live(b)
    screenshot(b, os.path.join(out, "web-home.png"))


def steps_profile(b, base, out):
    # After logout: the profile as anyone sees it.
    b.get(base + "/users/alice")
    wait(b, lambda d: len(texts(d, "posts")) >= 4, "alice's public posts on her profile")
    check(b.find_element(By.CSS_SELECTOR, "a[href='/login']") is not None,
          "a visitor is offered to log in to follow")
    screenshot(b, os.path.join(out, "web-profile.png"))
    src = b.page_source
    check('type="application/atom+xml"' in src and "/users/alice/feed.atom" in src,
          "the profile links its Atom feed")


def steps_unfollow(b, base):
    b.get(base + "/users/alice")
    b.find_element(By.CSS_SELECTOR, "form[action='/home/unfollow'] button").click()
    wait(b, lambda d: d.find_elements(By.CSS_SELECTOR, "form[action='/home/follow'] button"),
         "the profile to offer to follow again")
    b.get(base + "/")
    check(not b.find_elements(By.ID, "following"), "after unfollowing, bob follows nobody")
    authors = b.execute_script(
        "return [...document.querySelectorAll('#timeline li .author')].map(e => e.textContent)")
    check("bob" in authors and "alice" not in authors, "alice's posts left bob's home timeline")


def steps_logout(b, base, http_port):
    b.get(base + "/")
    cookie = session_cookie(b)
    b.find_element(By.CSS_SELECTOR, "form[action='/logout'] button").click()
    wait(b, lambda d: d.current_url.endswith("/login"), "the login page after logout")
    b.get(base + "/")
    check(b.current_url.endswith("/login"), "after logout, / redirects to /login")
    status, location = get_status(http_port, "/", cookie)
    check(status == 303 and location == "/login", "the old session cookie was revoked")


async def flow(port, http_port):
    base = f"http://127.0.0.1:{http_port}"
    alice, bob, carol = Account("alice", "xmpp"), Account("bob", "xmpp"), Account("carol", "xmpp")
    carol_events = asyncio.Queue()
    carol.add_event_handler("pubsub_publish", carol_events.put_nowait)
    for c in (alice, bob, carol):
        c.connect("127.0.0.1", port)
    await asyncio.wait_for(asyncio.gather(alice.ready.wait(), bob.ready.wait(), carol.ready.wait()),
                           TIMEOUT)
    bob.disconnect()
    a, b = await asyncio.to_thread(browser), await asyncio.to_thread(browser)
    try:
        await asyncio.to_thread(steps_login, a, b, base, http_port)
        await carol.plugin["xep_0060"].subscribe(f"alice@{DOMAIN}", NODE, timeout=TIMEOUT)
        check(True, "carol subscribed to alice's node over XMPP")

        text = "Hello from the page"
        await asyncio.to_thread(post_from_page, a, text)
        await asyncio.to_thread(
            wait, b, lambda d: text in texts(d, "timeline"), "the post in bob's open page")
        check(b.execute_script("return window.__marker") == "no reload",
              "bob's page showed the post live, without a reload")
        while True:
            ev = await asyncio.wait_for(carol_events.get(), TIMEOUT)
            payload = ev["pubsub_event"]["items"]["item"]["payload"]
            if payload is not None and text in "".join(payload.itertext()):
                break
        check(True, "carol's slixmpp session got the page's post as a headline")

        over = "Posted over XMPP"
        await alice.plugin["xep_0060"].publish(f"alice@{DOMAIN}", NODE, payload=entry(over),
                                               timeout=TIMEOUT)
        await asyncio.to_thread(
            wait, b, lambda d: over in texts(d, "timeline"), "the XMPP post in bob's page")
        check(b.execute_script("return window.__marker") == "no reload",
              "an XMPP post appeared in bob's page live")

        await asyncio.to_thread(steps_hostile, a, b, base)
        await asyncio.to_thread(steps_csrf, b, base)

        subscribed = asyncio.Queue()
        carol.add_event_handler("presence_subscribed", subscribed.put_nowait)
        carol.send_presence(pto=f"bob@{DOMAIN}", ptype="subscribe")
        await asyncio.to_thread(steps_approve, b, base)
        ev = await asyncio.wait_for(subscribed.get(), TIMEOUT)
        check(ev["from"].bare == f"bob@{DOMAIN}",
              "carol's slixmpp session heard bob approve her request from his page")
        with tempfile.TemporaryDirectory(prefix="starling-shots-") as tmp:
            out = os.environ.get("SCREENSHOTS") or tmp
            await asyncio.to_thread(steps_home_screenshot, a, b, base, out)
            await asyncio.to_thread(steps_unfollow, b, base)
            await asyncio.to_thread(steps_logout, b, base, http_port)
            await asyncio.to_thread(steps_profile, b, base, out)
    finally:
        for d in (a, b):
            await asyncio.to_thread(d.quit)
        for c in (alice, carol):
            c.disconnect()


if __name__ == "__main__":
    run_against(flow, "chromium_web", http=True)
