//! The owner's side of a PEP node (XEP-0060 §8) and history paging with
//! RSM (XEP-0059, PROTOCOL §7).

mod common;

use common::{error_conditions, Client, TestServer};
use stanza::{ns, Element};

const ACCOUNTS: [(&str, &str); 2] = [("jane", "secret"), ("joe", "secret")];
const NODE: &str = "urn:xmpp:microblog:0";
const PS: &str = "http://jabber.org/protocol/pubsub";
const OWNER: &str = "http://jabber.org/protocol/pubsub#owner";

fn form(fields: &[(&str, &str)]) -> String {
    let mut x = String::from(
        "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>\
         <value>http://jabber.org/protocol/pubsub#node_config</value></field>",
    );
    for (var, value) in fields {
        x.push_str(&format!(
            "<field var='{var}'><value>{value}</value></field>"
        ));
    }
    x + "</x>"
}

async fn publish(c: &mut Client, id: &str, access: &str) {
    let r = c
        .iq(&format!(
            "<iq type='set' id='pub-{id}'><pubsub xmlns='{PS}'><publish node='{NODE}'><item id='{id}'>\
             <entry xmlns='http://www.w3.org/2005/Atom'><title>{id}</title></entry></item></publish>\
             <publish-options>{}</publish-options></pubsub></iq>",
            form(&[("pubsub#access_model", access)]).replace("#node_config", "#publish-options")
        ))
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
}

fn ids(r: &Element) -> Vec<String> {
    r.child("pubsub", ns::PUBSUB)
        .and_then(|p| p.child("items", ns::PUBSUB))
        .map(|i| {
            i.elements()
                .filter_map(|it| it.attr("id").map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// (first, first index, last, count) of an RSM answer.
fn set(r: &Element) -> (Option<String>, Option<String>, Option<String>, String) {
    let s = r
        .child("pubsub", ns::PUBSUB)
        .and_then(|p| p.child("set", ns::RSM))
        .expect("an RSM set");
    let first = s.child("first", ns::RSM);
    (
        first.map(|f| f.text().into_owned()),
        first.and_then(|f| f.attr("index").map(str::to_owned)),
        s.child("last", ns::RSM).map(|l| l.text().into_owned()),
        s.child("count", ns::RSM).unwrap().text().into_owned(),
    )
}

async fn page(c: &mut Client, rsm: &str) -> Element {
    let r = c
        .iq(&format!(
            "<iq type='get' id='page' to='jane@example.org'><pubsub xmlns='{PS}'><items node='{NODE}'/>\
             <set xmlns='http://jabber.org/protocol/rsm'>{rsm}</set></pubsub></iq>"
        ))
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    r
}

#[tokio::test]
async fn rsm_pages_walk_the_history_both_ways() {
    let srv = TestServer::start(&ACCOUNTS, |c| c.allow_plaintext_auth = true).await;
    let (mut jane, _) = Client::login_plain(srv.addr, "jane", "secret", "a").await;
    for i in 1..=7 {
        publish(&mut jane, &format!("p{i}"), "open").await;
    }
    let (mut joe, _) = Client::login_plain(srv.addr, "joe", "secret", "b").await;
    // An empty <before/> is the newest page, oldest first inside it.
    let r = page(&mut joe, "<max>3</max><before/>").await;
    assert_eq!(ids(&r), ["p5", "p6", "p7"]);
    assert_eq!(
        set(&r),
        (
            Some("p5".into()),
            Some("4".into()),
            Some("p7".into()),
            "7".into()
        )
    );
    // Walking back toward older items.
    let r = page(&mut joe, "<max>3</max><before>p5</before>").await;
    assert_eq!(ids(&r), ["p2", "p3", "p4"]);
    let r = page(&mut joe, "<max>3</max><before>p2</before>").await;
    assert_eq!(ids(&r), ["p1"]);
    assert_eq!(set(&r).1.as_deref(), Some("0"));
    // Forward, from the oldest.
    let r = page(&mut joe, "<max>2</max>").await;
    assert_eq!(ids(&r), ["p1", "p2"]);
    let r = page(&mut joe, "<max>4</max><after>p2</after>").await;
    assert_eq!(ids(&r), ["p3", "p4", "p5", "p6"]);
    let r = page(&mut joe, "<max>4</max><after>p7</after>").await;
    assert!(ids(&r).is_empty());
    assert_eq!(set(&r), (None, None, None, "7".into()));
    let r = page(&mut joe, "<max>2</max><index>5</index>").await;
    assert_eq!(ids(&r), ["p6", "p7"]);
    // A count-only request.
    let r = page(&mut joe, "<max>0</max>").await;
    assert!(ids(&r).is_empty());
    assert_eq!(set(&r).3, "7");
    // An unknown anchor is item-not-found; a bad max is bad-request.
    joe.send(&format!(
        "<iq type='get' id='bad' to='jane@example.org'><pubsub xmlns='{PS}'><items node='{NODE}'/>\
         <set xmlns='http://jabber.org/protocol/rsm'><before>nope</before></set></pubsub></iq>"
    ))
    .await;
    let r = joe
        .expect("an error", |e| e.attr("id") == Some("bad"))
        .await;
    assert_eq!(error_conditions(&r), ["item-not-found"]);
    let r = joe
        .iq(&format!(
            "<iq type='get' id='bad2' to='jane@example.org'><pubsub xmlns='{PS}'><items node='{NODE}'/>\
             <set xmlns='http://jabber.org/protocol/rsm'><max>lots</max></set></pubsub></iq>"
        ))
        .await;
    assert_eq!(error_conditions(&r)[0], "bad-request");
    let _ = srv.stop().await;
}

#[tokio::test]
async fn owner_configures_lists_removes_purges_and_deletes() {
    let srv = TestServer::start(&ACCOUNTS, |c| c.allow_plaintext_auth = true).await;
    let (mut jane, _) = Client::login_plain(srv.addr, "jane", "secret", "a").await;
    publish(&mut jane, "one", "open").await;
    let (mut joe, joe_jid) = Client::login_plain(srv.addr, "joe", "secret", "b").await;
    joe.send("<presence/>").await;
    let r = joe
        .iq(&format!(
            "<iq type='set' id='sub' to='jane@example.org'><pubsub xmlns='{PS}'>\
             <subscribe node='{NODE}' jid='{joe_jid}'/></pubsub></iq>"
        ))
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    joe.expect("the last item", |e| e.name == "message").await;

    // The configuration, as a form.
    let r = jane
        .iq(&format!(
            "<iq type='get' id='cfg'><pubsub xmlns='{OWNER}'><configure node='{NODE}'/></pubsub></iq>"
        ))
        .await;
    let x = r
        .child("pubsub", ns::PUBSUB_OWNER)
        .and_then(|p| p.child("configure", ns::PUBSUB_OWNER))
        .and_then(|c| c.child("x", ns::DATA_FORMS))
        .expect("a form");
    let value = |var: &str| {
        x.elements()
            .find(|f| f.attr("var") == Some(var))
            .and_then(|f| f.child("value", ns::DATA_FORMS))
            .map(|v| v.text().into_owned())
    };
    assert_eq!(value("pubsub#access_model").as_deref(), Some("open"));
    assert_eq!(value("pubsub#max_items").as_deref(), Some("1000"));

    // "My followers", and the follower's own view.
    let list = |r: &Element, xmlns: &str| -> Vec<String> {
        r.child("pubsub", xmlns)
            .and_then(|p| p.child("subscriptions", xmlns))
            .map(|s| {
                s.elements()
                    .filter_map(|e| e.attr("jid").map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let subs_q = format!(
        "<iq type='get' id='subs'><pubsub xmlns='{OWNER}'><subscriptions node='{NODE}'/></pubsub></iq>"
    );
    assert_eq!(list(&jane.iq(&subs_q).await, OWNER), [joe_jid.as_str()]);
    let mine = joe
        .iq(&format!(
            "<iq type='get' id='mine' to='jane@example.org'><pubsub xmlns='{PS}'><subscriptions/></pubsub></iq>"
        ))
        .await;
    assert_eq!(list(&mine, PS), [joe_jid.as_str()]);
    // Only the owner may.
    let r = joe
        .iq(&format!(
            "<iq type='get' id='steal' to='jane@example.org'><pubsub xmlns='{OWNER}'><subscriptions node='{NODE}'/></pubsub></iq>"
        ))
        .await;
    assert_eq!(error_conditions(&r), ["forbidden"]);

    // Purge: the follower hears it, and the history is empty.
    let r = jane
        .iq(&format!(
            "<iq type='set' id='purge'><pubsub xmlns='{OWNER}'><purge node='{NODE}'/></pubsub></iq>"
        ))
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    let m = joe.expect("a purge event", |e| e.name == "message").await;
    assert!(m
        .child("event", ns::PUBSUB_EVENT)
        .and_then(|e| e.child("purge", ns::PUBSUB_EVENT))
        .is_some());
    let r = joe
        .iq(&format!(
            "<iq type='get' id='h' to='jane@example.org'><pubsub xmlns='{PS}'><items node='{NODE}'/></pubsub></iq>"
        ))
        .await;
    assert!(ids(&r).is_empty());

    // Whitelist: joe's subscription is no longer allowed and goes.
    let r = jane
        .iq(&format!(
            "<iq type='set' id='cfg2'><pubsub xmlns='{OWNER}'><configure node='{NODE}'>{}</configure></pubsub></iq>",
            form(&[("pubsub#access_model", "whitelist")])
        ))
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    assert!(list(&jane.iq(&subs_q).await, OWNER).is_empty());
    publish(&mut jane, "secret", "whitelist").await;
    joe.quiet().await;
    // A bad form value is not-acceptable.
    let r = jane
        .iq(&format!(
            "<iq type='set' id='cfg3'><pubsub xmlns='{OWNER}'><configure node='{NODE}'>{}</configure></pubsub></iq>",
            form(&[("pubsub#max_items", "-1")])
        ))
        .await;
    assert_eq!(error_conditions(&r), ["not-acceptable"]);

    // Back to open; joe subscribes again; jane removes him as a follower.
    jane.iq(&format!(
        "<iq type='set' id='cfg4'><pubsub xmlns='{OWNER}'><configure node='{NODE}'>{}</configure></pubsub></iq>",
        form(&[("pubsub#access_model", "open")])
    ))
    .await;
    joe.iq(&format!(
        "<iq type='set' id='sub2' to='jane@example.org'><pubsub xmlns='{PS}'>\
         <subscribe node='{NODE}' jid='{joe_jid}'/></pubsub></iq>"
    ))
    .await;
    joe.expect("the last item", |e| e.name == "message").await;
    let r = jane
        .iq(&format!(
            "<iq type='set' id='rm'><pubsub xmlns='{OWNER}'><subscriptions node='{NODE}'>\
             <subscription jid='{joe_jid}' subscription='none'/></subscriptions></pubsub></iq>"
        ))
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    publish(&mut jane, "after-removal", "open").await;
    joe.quiet().await;

    // Delete: subscribers hear it; the node is gone.
    joe.iq(&format!(
        "<iq type='set' id='sub3' to='jane@example.org'><pubsub xmlns='{PS}'>\
         <subscribe node='{NODE}' jid='{joe_jid}'/></pubsub></iq>"
    ))
    .await;
    joe.expect("the last item", |e| e.name == "message").await;
    let r = jane
        .iq(&format!(
            "<iq type='set' id='del'><pubsub xmlns='{OWNER}'><delete node='{NODE}'/></pubsub></iq>"
        ))
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    let m = joe.expect("a delete event", |e| e.name == "message").await;
    assert!(m
        .child("event", ns::PUBSUB_EVENT)
        .and_then(|e| e.child("delete", ns::PUBSUB_EVENT))
        .is_some());
    let r = jane.iq(&subs_q).await;
    assert_eq!(error_conditions(&r), ["item-not-found"]);
    let _ = srv.stop().await;
}

#[tokio::test]
async fn disco_shows_the_server_the_pep_service_and_its_nodes() {
    let srv = TestServer::start(&ACCOUNTS, |c| c.allow_plaintext_auth = true).await;
    let (mut jane, _) = Client::login_plain(srv.addr, "jane", "secret", "a").await;
    publish(&mut jane, "one", "open").await;
    let r = jane
        .iq("<iq type='get' id='d1' to='example.org'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
        .await;
    let features = |r: &Element| -> Vec<String> {
        r.elements()
            .next()
            .map(|q| {
                q.elements()
                    .filter(|f| f.name == "feature")
                    .filter_map(|f| f.attr("var").map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let f = features(&r);
    for want in ["jabber:iq:register", "urn:xmpp:ping", "urn:xmpp:blocking"] {
        assert!(f.iter().any(|x| x == want), "{want} in {f:?}");
    }
    let (mut joe, _) = Client::login_plain(srv.addr, "joe", "secret", "b").await;
    let r = joe
        .iq("<iq type='get' id='d2' to='jane@example.org'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
        .await;
    let q = r.child("query", ns::DISCO_INFO).expect("a query");
    assert!(q.elements().any(|i| i.name == "identity"
        && i.attr("category") == Some("pubsub")
        && i.attr("type") == Some("pep")));
    let f = features(&r);
    for want in [
        "auto-create",
        "auto-subscribe",
        "filtered-notifications",
        "rsm",
        "publish-options",
    ] {
        let var = format!("{PS}#{want}");
        assert!(f.contains(&var), "{var} in {f:?}");
    }
    let r = joe
        .iq("<iq type='get' id='d3' to='jane@example.org'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>")
        .await;
    let nodes: Vec<_> = r
        .child("query", ns::DISCO_ITEMS)
        .unwrap()
        .elements()
        .filter_map(|i| i.attr("node").map(str::to_owned))
        .collect();
    assert_eq!(nodes, [NODE]);
    // Strangers learn nothing: a missing account's disco#info is the same
    // as an existing one's (ids aside), and it lists no items.
    let jane_info = joe
        .iq("<iq type='get' id='d4' to='jane@example.org'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
        .await;
    let r = joe
        .iq("<iq type='get' id='d4' to='nobody@example.org'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    assert_eq!(
        r.child("query", ns::DISCO_INFO),
        jane_info.child("query", ns::DISCO_INFO)
    );
    let r = joe
        .iq("<iq type='get' id='d5' to='nobody@example.org'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>")
        .await;
    assert_eq!(
        r.child("query", ns::DISCO_ITEMS)
            .unwrap()
            .elements()
            .count(),
        0
    );
    let _ = srv.stop().await;
}
