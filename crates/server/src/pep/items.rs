//! Items retrieval (XEP-0060 §6.5), by id, newest first, or by RSM page
//! (XEP-0059).

use std::sync::Arc;

use stanza::ser::{StanzaError, XmlWriter};
use stanza::{ns, BareJid, Element, FullJid, StanzaErrorCondition as C};

use std::collections::HashSet;

use crate::pubsub::StoredItem;
use crate::store::{Anchor, Budget};
use crate::Shared;

use super::access::readable_node;
use super::{app, Reply};

/// An RSM request (XEP-0059 §2) on items retrieval.
struct Rsm {
    max: usize,
    anchor: Anchor,
}

/// Largest RSM page served, whatever `<max/>` asks.
const MAX_PAGE: usize = 500;

fn parse_rsm(set: &Element) -> Result<Rsm, StanzaError<'static>> {
    let bad = |t: &'static str| StanzaError::new(C::BadRequest).with_text(t);
    let max = match set.child("max", ns::RSM) {
        None => MAX_PAGE,
        Some(m) => m
            .text()
            .trim()
            .parse::<usize>()
            .map_err(|_| bad("<max/> must be a number"))?
            .min(MAX_PAGE),
    };
    let anchor = if let Some(b) = set.child("before", ns::RSM) {
        let id = b.text().trim().to_owned();
        if id.is_empty() {
            Anchor::Last
        } else {
            Anchor::Before(id)
        }
    } else if let Some(a) = set.child("after", ns::RSM) {
        Anchor::After(a.text().trim().to_owned())
    } else if let Some(i) = set.child("index", ns::RSM) {
        Anchor::Index(
            i.text()
                .trim()
                .parse()
                .map_err(|_| bad("<index/> must be a number"))?,
        )
    } else {
        Anchor::First
    };
    Ok(Rsm { max, anchor })
}

/// What an items request reads.
enum Read {
    /// Items by id, or the newest `max_items` (or all).
    List(Vec<StoredItem>),
    /// One RSM page.
    Page(crate::store::Page),
}

pub(super) async fn items(
    shared: &Arc<Shared>,
    me: &FullJid,
    owner: &BareJid,
    pubsub: &Element,
    items: &Element,
) -> Reply {
    let Some(node) = items.attr("node").map(str::to_owned) else {
        return Err(app(C::BadRequest, "nodeid-required"));
    };
    // Each id once, in request order: a request repeating one id thousands
    // of times must not get thousands of copies (reply amplification), nor
    // cost a quadratic scan to find that out.
    let mut seen = HashSet::new();
    let wanted: Vec<String> = items
        .elements()
        .filter(|i| i.is("item", ns::PUBSUB))
        .filter_map(|i| i.attr("id"))
        .filter(|id| seen.insert(*id))
        .map(str::to_owned)
        .collect();
    let max = match items.attr("max_items").map(str::parse::<usize>) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => {
            return Err(StanzaError::new(C::BadRequest).with_text("max_items must be a number"))
        }
    };
    // The RSM <set/> is a sibling of <items/> inside <pubsub/>.
    let rsm = match pubsub.child("set", ns::RSM) {
        Some(set) => Some(parse_rsm(set)?),
        None => None,
    };
    read_items(shared, me, owner, node, wanted, max, rsm).await
}

async fn read_items(
    shared: &Arc<Shared>,
    me: &FullJid,
    owner: &BareJid,
    node: String,
    wanted: Vec<String>,
    max: Option<usize>,
    rsm: Option<Rsm>,
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
                let max = max.map_or(rsm.max, |m| m.min(rsm.max));
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
