use super::*;
use crate::xep::rsm::{Anchor, Set};

fn parse(ty: IqType, xml: &str) -> Result<Request, Refusal> {
    Request::parse(ty, &Element::parse(xml).unwrap())
}

/// The defined condition and the pubsub application condition.
fn why(r: Result<Request, Refusal>) -> (C, Option<&'static str>) {
    let e = r.unwrap_err();
    (e.condition, e.app.map(|(name, _)| name))
}

const PS: &str = "xmlns='http://jabber.org/protocol/pubsub'";
const OWNER: &str = "xmlns='http://jabber.org/protocol/pubsub#owner'";

#[test]
fn publish_with_options() {
    let r = parse(
        IqType::Set,
        &format!(
            "<pubsub {PS}><publish node='urn:xmpp:microblog:0'><item id='p1'>\
             <entry xmlns='http://www.w3.org/2005/Atom'><title>hi</title></entry></item></publish>\
             <publish-options><x xmlns='jabber:x:data' type='submit'/></publish-options></pubsub>"
        ),
    )
    .unwrap();
    let Request::Publish {
        node,
        id,
        payload,
        options,
    } = &r
    else {
        panic!("{r:?}")
    };
    assert_eq!(
        (node.as_str(), id.as_deref()),
        ("urn:xmpp:microblog:0", Some("p1"))
    );
    assert!(payload.is("entry", ns::ATOM));
    assert!(options.as_ref().is_some_and(|x| x.is("x", ns::DATA_FORMS)));
    assert_eq!(Request::parse(IqType::Set, &r.to_element()).unwrap(), r);
}

#[test]
fn publish_refusals() {
    let cases = [
        (
            "<publish><item><entry xmlns='a'/></item></publish>",
            "nodeid-required",
        ),
        ("<publish node='n'/>", "item-required"),
        (
            "<publish node='n'><item id='x'/></publish>",
            "payload-required",
        ),
    ];
    for (op, want) in cases {
        let got = why(parse(IqType::Set, &format!("<pubsub {PS}>{op}</pubsub>")));
        assert_eq!(got, (C::BadRequest, Some(want)), "{op}");
    }
    // A publish is a set; an empty id is no id.
    let got = why(parse(
        IqType::Get,
        &format!("<pubsub {PS}><publish node='n'><item><a xmlns='b'/></item></publish></pubsub>"),
    ));
    assert_eq!(got, (C::FeatureNotImplemented, Some("unsupported")));
    let r = parse(
        IqType::Set,
        &format!(
            "<pubsub {PS}><publish node='n'><item id=''><a xmlns='b'/></item></publish></pubsub>"
        ),
    )
    .unwrap();
    assert!(matches!(r, Request::Publish { id: None, .. }));
}

#[test]
fn items_by_id_deduplicated_with_rsm() {
    let r = parse(
        IqType::Get,
        &format!(
            "<pubsub {PS}><items node='n' max_items='5'><item id='a'/><item id='b'/><item id='a'/></items>\
             <set xmlns='http://jabber.org/protocol/rsm'><max>2</max><before/></set></pubsub>"
        ),
    )
    .unwrap();
    assert_eq!(
        r,
        Request::Items {
            node: "n".into(),
            ids: vec!["a".into(), "b".into()],
            max_items: Some(5),
            rsm: Some(Set {
                max: Some(2),
                anchor: Anchor::Last
            }),
        }
    );
    assert_eq!(Request::parse(IqType::Get, &r.to_element()).unwrap(), r);
    let got = why(parse(
        IqType::Get,
        &format!("<pubsub {PS}><items node='n' max_items='many'/></pubsub>"),
    ));
    assert_eq!(got, (C::BadRequest, None));
    let got = why(parse(
        IqType::Get,
        &format!("<pubsub {PS}><items/></pubsub>"),
    ));
    assert_eq!(got, (C::BadRequest, Some("nodeid-required")));
}

#[test]
fn subscribe_unsubscribe_retract_subscriptions() {
    let r = parse(
        IqType::Set,
        &format!("<pubsub {PS}><subscribe node='n' jid='joe@example.org/r'/></pubsub>"),
    )
    .unwrap();
    assert_eq!(
        r,
        Request::Subscribe {
            node: "n".into(),
            jid: Jid::new("joe@example.org/r").unwrap()
        }
    );
    for req in [
        r,
        Request::Unsubscribe {
            node: "n".into(),
            jid: Jid::new("joe@example.org").unwrap(),
        },
        Request::Retract {
            node: "n".into(),
            id: "p1".into(),
            notify: Some(true),
        },
        Request::Subscriptions { node: None },
        Request::Subscriptions {
            node: Some("n".into()),
        },
    ] {
        let back = Request::parse(req.iq_type(), &req.to_element()).unwrap();
        assert_eq!(back, req);
    }
    let got = why(parse(
        IqType::Set,
        &format!("<pubsub {PS}><subscribe node='n'/></pubsub>"),
    ));
    assert_eq!(got, (C::BadRequest, Some("jid-required")));
    let got = why(parse(
        IqType::Set,
        &format!("<pubsub {PS}><subscribe node='n' jid='@@'/></pubsub>"),
    ));
    assert_eq!(got, (C::BadRequest, Some("invalid-jid")));
    let got = why(parse(
        IqType::Set,
        &format!("<pubsub {PS}><retract node='n'/></pubsub>"),
    ));
    assert_eq!(got, (C::BadRequest, Some("item-required")));
}

#[test]
fn owner_use_cases() {
    let form = "<x xmlns='jabber:x:data' type='submit'><field var='pubsub#max_items'><value>5</value></field></x>";
    let r = parse(
        IqType::Set,
        &format!("<pubsub {OWNER}><configure node='n'>{form}</configure></pubsub>"),
    )
    .unwrap();
    assert!(
        matches!(&r, Request::Owner(Owner::Configure { node, form }) if node == "n" && form.is("x", ns::DATA_FORMS))
    );
    let joe = Jid::new("joe@example.org").unwrap();
    for o in [
        Owner::GetConfiguration { node: "n".into() },
        Owner::GetSubscribers { node: "n".into() },
        Owner::RemoveSubscribers {
            node: "n".into(),
            jids: vec![joe],
        },
        Owner::Purge { node: "n".into() },
        Owner::Delete { node: "n".into() },
    ] {
        let req = Request::Owner(o);
        assert_eq!(
            Request::parse(req.iq_type(), &req.to_element()).unwrap(),
            req
        );
    }
    assert_eq!(Request::parse(r.iq_type(), &r.to_element()).unwrap(), r);
    let got = why(parse(
        IqType::Set,
        &format!("<pubsub {OWNER}><subscriptions node='n'><subscription jid='joe@example.org' subscription='subscribed'/></subscriptions></pubsub>"),
    ));
    assert_eq!(got, (C::NotAcceptable, None));
    let got = why(parse(
        IqType::Set,
        &format!("<pubsub {OWNER}><purge/></pubsub>"),
    ));
    assert_eq!(got, (C::BadRequest, Some("nodeid-required")));
    let got = why(parse(
        IqType::Get,
        &format!("<pubsub {OWNER}><purge node='n'/></pubsub>"),
    ));
    assert_eq!(got, (C::FeatureNotImplemented, Some("unsupported")));
    let got = why(parse(
        IqType::Get,
        &format!("<pubsub {OWNER}><affiliations node='n'/></pubsub>"),
    ));
    assert_eq!(got, (C::FeatureNotImplemented, Some("unsupported")));
}

#[test]
fn unknown_and_empty() {
    let got = why(parse(
        IqType::Get,
        &format!("<pubsub {PS}><affiliations/></pubsub>"),
    ));
    assert_eq!(got, (C::FeatureNotImplemented, Some("unsupported")));
    let got = why(parse(IqType::Get, &format!("<pubsub {PS}/>")));
    assert_eq!(got, (C::BadRequest, None));
}
