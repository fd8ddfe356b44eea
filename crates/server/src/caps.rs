//! XEP-0115 entity capabilities: the verification string, and the cache of
//! verified answers.
//!
//! A client's presence names its capabilities by a hash (`ver`). For an
//! unknown `ver` the server asks that resource for `disco#info` on
//! `node#ver`, **recomputes the hash** from the answer (§5.1), and caches the
//! answer under `ver` only when they match: otherwise one client could
//! poison the cache for every client claiming the same `ver`. The features
//! ending in `+notify` are the resource's PEP interests (XEP-0163 §4).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use sha1::Digest as _;
use stanza::{ns, Element};

/// The `+notify` node names of one verified `ver`.
pub type Interests = Arc<[String]>;

/// Verified capabilities by `ver`, shared by every session, holding at most
/// `capacity` answers: past it the least recently used is forgotten (the
/// next presence with that `ver` is simply asked again).
#[derive(Debug)]
pub struct CapsCache {
    inner: Mutex<Lru>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct Lru {
    /// ver -> (interests, last use).
    by_ver: HashMap<String, (Interests, u64)>,
    clock: u64,
}

impl Default for CapsCache {
    fn default() -> Self {
        Self::new(10_000)
    }
}

impl CapsCache {
    /// A cache of at most `capacity` verified answers.
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Lru::default()),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru> {
        // Nothing panics while the lock is held.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The interests of a verified `ver`.
    pub fn get(&self, ver: &str) -> Option<Interests> {
        let mut lru = self.lock();
        lru.clock += 1;
        let now = lru.clock;
        lru.by_ver.get_mut(ver).map(|(v, used)| {
            *used = now;
            v.clone()
        })
    }

    /// Answers cached now.
    pub fn len(&self) -> usize {
        self.lock().by_ver.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks a disco#info answer against `ver`; caches and returns the
    /// interests when the hash matches, `None` when it does not.
    pub fn verify(&self, ver: &str, query: &Element) -> Option<Interests> {
        if verification_string_hash(query) != ver {
            return None;
        }
        let interests: Interests = notify_nodes(query).into();
        let mut lru = self.lock();
        lru.clock += 1;
        let now = lru.clock;
        if lru.by_ver.len() >= self.capacity && !lru.by_ver.contains_key(ver) {
            // Evict the least recently used eighth at once, so a stream of
            // new vers pays the O(n) scan once per capacity/8 inserts.
            let mut ages: Vec<u64> = lru.by_ver.values().map(|(_, u)| *u).collect();
            let cut = (self.capacity / 8).max(1).min(ages.len() - 1);
            let (_, &mut oldest_kept, _) = ages.select_nth_unstable(cut);
            lru.by_ver.retain(|_, (_, u)| *u >= oldest_kept);
            while lru.by_ver.len() >= self.capacity {
                let Some(k) = lru
                    .by_ver
                    .iter()
                    .min_by_key(|(_, (_, u))| *u)
                    .map(|(k, _)| k.clone())
                else {
                    break;
                };
                lru.by_ver.remove(&k);
            }
        }
        lru.by_ver.insert(ver.to_owned(), (interests.clone(), now));
        Some(interests)
    }
}

/// Nodes with `NODE+notify` among the features.
pub fn notify_nodes(query: &Element) -> Vec<String> {
    query
        .elements()
        .filter(|e| e.is("feature", ns::DISCO_INFO))
        .filter_map(|f| f.attr("var")?.strip_suffix("+notify").map(str::to_owned))
        .collect()
}

/// A form field: its `var` and its values.
type Field = (String, Vec<String>);

/// base64(SHA-1(S)) of the verification string S of a disco#info `<query/>`
/// (XEP-0115 §5.1, including extended service discovery forms).
pub fn verification_string_hash(query: &Element) -> String {
    let mut s = String::new();
    let mut identities: Vec<[&str; 4]> = query
        .elements()
        .filter(|e| e.is("identity", ns::DISCO_INFO))
        .map(|i| {
            let lang = i
                .attrs
                .iter()
                .find(|a| a.prefix.as_deref() == Some("xml") && a.name == "lang")
                .map_or("", |a| a.value.as_str());
            [
                i.attr("category").unwrap_or(""),
                i.attr("type").unwrap_or(""),
                lang,
                i.attr("name").unwrap_or(""),
            ]
        })
        .collect();
    identities.sort();
    for [c, t, l, n] in identities {
        s.push_str(&format!("{c}/{t}/{l}/{n}<"));
    }
    let mut features: Vec<&str> = query
        .elements()
        .filter(|e| e.is("feature", ns::DISCO_INFO))
        .filter_map(|f| f.attr("var"))
        .collect();
    features.sort_unstable();
    for f in features {
        s.push_str(f);
        s.push('<');
    }
    let mut forms: Vec<(String, Vec<Field>)> = query
        .elements()
        .filter(|e| e.is("x", ns::DATA_FORMS))
        .filter_map(|x| {
            let mut form_type = None;
            let mut fields = Vec::new();
            for f in x.elements().filter(|f| f.is("field", ns::DATA_FORMS)) {
                let var = f.attr("var").unwrap_or("").to_owned();
                let mut values: Vec<String> = f
                    .elements()
                    .filter(|v| v.is("value", ns::DATA_FORMS))
                    .map(|v| v.text().into_owned())
                    .collect();
                if var == "FORM_TYPE" {
                    form_type = values.pop();
                } else {
                    values.sort();
                    fields.push((var, values));
                }
            }
            fields.sort();
            // Forms without a FORM_TYPE are ignored (§5.4, step 3.6).
            Some((form_type?, fields))
        })
        .collect();
    forms.sort();
    for (form_type, fields) in forms {
        s.push_str(&form_type);
        s.push('<');
        for (var, values) in fields {
            s.push_str(&var);
            s.push('<');
            for v in values {
                s.push_str(&v);
                s.push('<');
            }
        }
    }
    B64.encode(sha1::Sha1::digest(s.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(xml: &str) -> Element {
        Element::parse(xml).unwrap()
    }

    /// XEP-0115 §5.2, the simple example.
    #[test]
    fn simple_example() {
        let q = query(
            "<query xmlns='http://jabber.org/protocol/disco#info' node='http://code.google.com/p/exodus#QgayPKawpkPSDYmwT/WM94uAlu0='>\
             <identity category='client' name='Exodus 0.9.1' type='pc'/>\
             <feature var='http://jabber.org/protocol/caps'/>\
             <feature var='http://jabber.org/protocol/disco#info'/>\
             <feature var='http://jabber.org/protocol/disco#items'/>\
             <feature var='http://jabber.org/protocol/muc'/></query>",
        );
        assert_eq!(verification_string_hash(&q), "QgayPKawpkPSDYmwT/WM94uAlu0=");
    }

    /// XEP-0115 §5.3, the complex example with identities in two languages
    /// and an extended form.
    #[test]
    fn complex_example() {
        let q = query(
            "<query xmlns='http://jabber.org/protocol/disco#info' node='http://psi-im.org#q07IKJEyjvHSyhy//CH0CxmKi8w='>\
             <identity xml:lang='en' category='client' name='Psi 0.11' type='pc'/>\
             <identity xml:lang='el' category='client' name='Ψ 0.11' type='pc'/>\
             <feature var='http://jabber.org/protocol/caps'/>\
             <feature var='http://jabber.org/protocol/disco#info'/>\
             <feature var='http://jabber.org/protocol/disco#items'/>\
             <feature var='http://jabber.org/protocol/muc'/>\
             <x xmlns='jabber:x:data' type='result'>\
             <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:dataforms:softwareinfo</value></field>\
             <field var='ip_version' type='text-multi'><value>ipv4</value><value>ipv6</value></field>\
             <field var='os'><value>Mac</value></field>\
             <field var='os_version'><value>10.5.1</value></field>\
             <field var='software'><value>Psi</value></field>\
             <field var='software_version'><value>0.11</value></field></x></query>",
        );
        assert_eq!(verification_string_hash(&q), "q07IKJEyjvHSyhy//CH0CxmKi8w=");
    }

    #[test]
    fn cache_only_accepts_matching_answers() {
        let cache = CapsCache::default();
        let q = query(
            "<query xmlns='http://jabber.org/protocol/disco#info'>\
             <identity category='client' type='pc' name='t'/>\
             <feature var='urn:xmpp:microblog:0+notify'/><feature var='http://jabber.org/protocol/caps'/></query>",
        );
        let ver = verification_string_hash(&q);
        // A lying client claims someone else's ver: not cached.
        assert!(cache.verify("QgayPKawpkPSDYmwT/WM94uAlu0=", &q).is_none());
        assert!(cache.get("QgayPKawpkPSDYmwT/WM94uAlu0=").is_none());
        let interests = cache.verify(&ver, &q).unwrap();
        assert_eq!(&*interests, ["urn:xmpp:microblog:0".to_owned()]);
        assert_eq!(cache.get(&ver).unwrap(), interests);
    }

    #[test]
    fn the_cache_is_bounded_and_keeps_what_is_used() {
        let cache = CapsCache::new(8);
        let answer = |i: usize| {
            query(&format!(
                "<query xmlns='http://jabber.org/protocol/disco#info'>\
                 <identity category='client' type='pc' name='c{i}'/></query>"
            ))
        };
        let first = verification_string_hash(&answer(0));
        cache.verify(&first, &answer(0)).unwrap();
        for i in 1..100 {
            let q = answer(i);
            cache.verify(&verification_string_hash(&q), &q).unwrap();
            // The first one is in use all along: it stays.
            assert!(cache.get(&first).is_some(), "evicted at {i}");
            assert!(cache.len() <= 8, "{}", cache.len());
        }
        let old = answer(1);
        assert!(
            cache.get(&verification_string_hash(&old)).is_none(),
            "least recent gone"
        );
    }
}
