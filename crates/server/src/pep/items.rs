//! Items retrieval (XEP-0060 §6.5), by id, newest first, or by RSM page
//! (XEP-0059).

use std::sync::Arc;

use stanza::ser::{StanzaError, XmlWriter};
use stanza::{ns, BareJid, FullJid, StanzaErrorCondition as C};

use crate::pubsub::StoredItem;
use crate::store::Budget;
use crate::Shared;
use stanza::xep::rsm;

use super::access::readable_node;
use super::Reply;

/// Largest RSM page served, whatever `<max/>` asks.
const MAX_PAGE: usize = 500;

/// What an items request reads.
enum Read {
    /// Items by id, or the newest `max_items` (or all).
    List(Vec<StoredItem>),
    /// One RSM page.
    Page(crate::store::Page),
}

/// Items by id (`wanted`), the newest `max`, or one RSM page, within the
/// reply budget, if the requester may read the node.
pub(super) async fn items(
    shared: &Arc<Shared>,
    me: &FullJid,
    owner: &BareJid,
    node: String,
    wanted: Vec<String>,
    max: Option<usize>,
    rsm: Option<rsm::Set>,
) -> Reply {
    let (o, n) = (owner.clone(), node.clone());
    let requester = me.to_bare();
    let budget = shared.config.limits.reply_budget();
    let read = shared
        .db(move |store| {
            if let Err(e) = readable_node(store, &o, &n, &requester)? {
                return Ok(Err(e));
            }
            let read = if !wanted.is_empty() {
                let mut v: Vec<StoredItem> = Vec::new();
                let mut used = 0;
                for id in &wanted {
                    let Some(it) = store.item(&o, &n, id)? else {
                        continue;
                    };
                    if !budget.fits(v.len(), used, it.payload.len()) {
                        break;
                    }
                    used += it.payload.len();
                    v.push(it);
                }
                Read::List(v)
            } else if let Some(rsm) = rsm {
                let page = rsm.max.unwrap_or(MAX_PAGE).min(MAX_PAGE);
                let max = max.map_or(page, |m| m.min(page));
                let b = Budget {
                    items: max.min(budget.items),
                    ..budget
                };
                match store.items_page(&o, &n, &rsm.anchor, b)? {
                    Some(p) => Read::Page(p),
                    None => return Ok(Err(StanzaError::new(C::ItemNotFound))),
                }
            } else {
                let b = Budget {
                    items: max.unwrap_or(usize::MAX).min(budget.items),
                    ..budget
                };
                Read::List(store.items(&o, &n, b)?)
            };
            Ok::<_, crate::StoreError>(Ok(read))
        })
        .await;
    let read = match read {
        Ok(r) => r?,
        Err(_) => return Err(StanzaError::new(C::InternalServerError)),
    };
    let (list, page) = match read {
        Read::List(l) => (l, None),
        Read::Page(p) => (p.items, Some((p.first_index, p.count))),
    };
    let mut w =
        XmlWriter::with_capacity(256 + list.iter().map(|i| i.payload.len() + 64).sum::<usize>());
    w.open("pubsub").attr("xmlns", ns::PUBSUB).close_start();
    w.open("items").attr("node", &node).close_start();
    // Oldest first, within a page too (PROTOCOL §7).
    for it in &list {
        w.open("item")
            .attr("id", &it.id)
            .attr("publisher", &it.publisher)
            .close_start()
            .raw(it.payload.as_bytes())
            .end("item");
    }
    w.end("items");
    if let Some((first_index, count)) = page {
        w.open("set").attr("xmlns", ns::RSM).close_start();
        if let (Some(first), Some(last)) = (list.first(), list.last()) {
            w.open("first")
                .attr("index", &first_index.to_string())
                .close_start()
                .text(&first.id)
                .end("first");
            w.text_element("last", None, &last.id);
        }
        w.text_element("count", None, &count.to_string());
        w.end("set");
    }
    w.end("pubsub");
    Ok(w.as_bytes().to_vec())
}
