//! Subscribe and unsubscribe (XEP-0060 §6.1, §6.2).

use std::sync::Arc;

use bytes::Bytes;
use stanza::ser::{StanzaError, XmlWriter};
use stanza::{ns, BareJid, FullJid, StanzaErrorCondition as C};

use crate::pubsub::SendLast;
use crate::store::Budget;
use crate::Shared;

use super::access::readable_node;
use super::{app, own_jid, replay, Reply};

pub(crate) async fn subscribe(
    shared: &Arc<Shared>,
    me: &FullJid,
    owner: &BareJid,
    node: String,
    jid: stanza::Jid,
    after: &mut Option<Bytes>,
) -> Reply {
    let jid = own_jid(me, jid)?;
    let (o, n, j) = (owner.clone(), node.clone(), jid.clone());
    let requester = me.to_bare();
    let done = shared
        .db(move |store| {
            let rec = match readable_node(store, &o, &n, &requester)? {
                Ok(rec) => rec,
                Err(e) => return Ok(Err(e)),
            };
            store.subscribe(&o, &n, &j)?;
            let last = match rec.config.send_last {
                SendLast::Never => None,
                SendLast::OnSub | SendLast::OnSubAndPresence => {
                    store.items(&o, &n, Budget::items(1))?.pop()
                }
            };
            Ok::<_, crate::StoreError>(Ok(last))
        })
        .await;
    let last = match done {
        Ok(Ok(last)) => last,
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err(StanzaError::new(C::InternalServerError)),
    };
    shared.fanout.registry().subscribe(owner, &node, &jid);
    // The new subscriber gets the last item at once, marked as a replay.
    if let Some(it) = last {
        *after = Some(replay(owner, me, &node, &it));
    }
    let mut w = XmlWriter::with_capacity(160);
    w.open("pubsub").attr("xmlns", ns::PUBSUB).close_start();
    w.open("subscription")
        .attr("node", &node)
        .attr("jid", jid.as_str())
        .attr("subscription", "subscribed")
        .close_empty();
    w.end("pubsub");
    Ok(w.as_bytes().to_vec())
}

pub(crate) async fn unsubscribe(
    shared: &Arc<Shared>,
    me: &FullJid,
    owner: &BareJid,
    node: String,
    jid: stanza::Jid,
) -> Reply {
    let jid = own_jid(me, jid)?;
    let (o, n, j) = (owner.clone(), node.clone(), jid.clone());
    match shared.db(move |s| s.unsubscribe(&o, &n, &j)).await {
        Ok(true) => {}
        Ok(false) => return Err(app(C::UnexpectedRequest, "not-subscribed")),
        Err(_) => return Err(StanzaError::new(C::InternalServerError)),
    }
    shared.fanout.registry().unsubscribe(owner, &node, &jid);
    Ok(Vec::new())
}
