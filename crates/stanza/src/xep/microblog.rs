//! XEP-0277 microblog entries: the Atom (RFC 4287) `<entry/>` a post is on
//! the `urn:xmpp:microblog:0` node.
//!
//! [`Entry::parse`] reads what the web side needs from any client's entry
//! (Movim, Libervia, slixmpp scripts, our own API) and is lenient where
//! clients differ: a missing title falls back to the content, a missing
//! `published` to the time the server stored the item. [`Entry::to_element`]
//! writes the entry the Mastodon-compatible API publishes, in the shape
//! XEP-0277 §3 gives, so XMPP clients read it as their own.

use crate::element::{Element, Node};
use crate::ns;

/// The threading extension (RFC 4685), for replies.
pub const THREADING: &str = "http://purl.org/syndication/thread/1.0";

/// One microblog post, as the web side reads and writes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Entry {
    /// `atom:id`, when the entry has one.
    pub id: Option<String>,
    /// `atom:title` as plain text.
    pub title: String,
    /// The post's text: `atom:content` of type `text` when present, else
    /// the title (XEP-0277 puts short posts in the title alone).
    pub content: String,
    /// `atom:published` as written (RFC 3339).
    pub published: Option<String>,
    /// `atom:updated` as written (RFC 3339).
    pub updated: Option<String>,
    /// `atom:author/name`.
    pub author_name: Option<String>,
    /// `atom:author/uri` (`xmpp:user@host` in XEP-0277).
    pub author_uri: Option<String>,
    /// `thr:in-reply-to`: the `ref` (the parent's `atom:id`) and `href`
    /// (its XMPP URI), for replies.
    pub in_reply_to: Option<InReplyTo>,
}

/// A reply's parent (RFC 4685 §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InReplyTo {
    /// The parent's `atom:id`.
    pub reference: String,
    /// Where the parent is, when given.
    pub href: Option<String>,
}

/// Why a payload is not a microblog entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// The payload is not `{http://www.w3.org/2005/Atom}entry`.
    #[error("the payload is not an Atom entry")]
    NotAnEntry,
}

impl Entry {
    /// Reads an `<entry xmlns='http://www.w3.org/2005/Atom'/>`.
    pub fn parse(el: &Element) -> Result<Self, EntryError> {
        if !el.is("entry", ns::ATOM) {
            return Err(EntryError::NotAnEntry);
        }
        let text = |name: &str| el.child(name, ns::ATOM).map(plain);
        let title = text("title").unwrap_or_default();
        // A post's text: `text` content first; XEP-0277 allows a second,
        // `xhtml` or `html`, copy which the plain one stands for.
        let contents: Vec<&Element> = el
            .elements()
            .filter(|e| e.is("content", ns::ATOM))
            .collect();
        let content = contents
            .iter()
            .find(|c| matches!(c.attr("type"), None | Some("text")))
            .or(contents.first())
            .map(|c| plain(c))
            .unwrap_or_else(|| title.clone());
        let author = el.child("author", ns::ATOM);
        let author_text = |name: &str| {
            author
                .and_then(|a| a.child(name, ns::ATOM))
                .map(|e| e.text().trim().to_owned())
                .filter(|s| !s.is_empty())
        };
        let in_reply_to = el.child("in-reply-to", THREADING).and_then(|r| {
            Some(InReplyTo {
                reference: r.attr("ref")?.to_owned(),
                href: r.attr("href").map(str::to_owned),
            })
        });
        let nonempty = |s: Option<String>| s.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
        Ok(Self {
            id: nonempty(text("id")),
            title,
            content,
            published: nonempty(text("published")),
            updated: nonempty(text("updated")),
            author_name: author_text("name"),
            author_uri: author_text("uri"),
            in_reply_to,
        })
    }

    /// The entry as XEP-0277 §3 writes it: title and text content, author,
    /// id, published and updated, and the reply's `thr:in-reply-to`.
    pub fn to_element(&self) -> Element {
        let atom = |name: &str, text: &str| Element::new(name, ns::ATOM).with_text(text);
        let mut e = Element::new("entry", ns::ATOM);
        e = e.with_child(atom("title", &self.title).with_attr("type", "text"));
        if self.content != self.title {
            e = e.with_child(atom("content", &self.content).with_attr("type", "text"));
        }
        if self.author_name.is_some() || self.author_uri.is_some() {
            let mut a = Element::new("author", ns::ATOM);
            if let Some(n) = &self.author_name {
                a = a.with_child(atom("name", n));
            }
            if let Some(u) = &self.author_uri {
                a = a.with_child(atom("uri", u));
            }
            e = e.with_child(a);
        }
        for (name, v) in [
            ("id", &self.id),
            ("published", &self.published),
            ("updated", &self.updated),
        ] {
            if let Some(v) = v {
                e = e.with_child(atom(name, v));
            }
        }
        if let Some(r) = &self.in_reply_to {
            let mut t = Element::new("in-reply-to", THREADING).with_attr("ref", &r.reference);
            if let Some(h) = &r.href {
                t = t.with_attr("href", h);
            }
            e = e.with_child(t);
        }
        e
    }
}

/// An Atom text construct as plain text: `text` and `html` are their
/// character content (markup in `html` is escaped text, kept as written);
/// `xhtml` is the text of its elements, tags dropped.
fn plain(el: &Element) -> String {
    fn walk(el: &Element, out: &mut String) {
        for n in &el.children {
            match n {
                Node::Text(t) => out.push_str(t),
                Node::Element(e) => walk(e, out),
            }
        }
    }
    let mut s = String::new();
    walk(el, &mut s);
    s.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(xml: &str) -> Result<Entry, EntryError> {
        Entry::parse(&Element::parse(xml).unwrap())
    }

    #[test]
    fn reads_a_movim_style_entry() {
        let e = parse(
            "<entry xmlns='http://www.w3.org/2005/Atom' xmlns:thr='http://purl.org/syndication/thread/1.0'>\
             <title type='text'>Hello &amp; welcome</title>\
             <content type='xhtml'><div xmlns='http://www.w3.org/1999/xhtml'><p>rich</p></div></content>\
             <content type='text'>the body</content>\
             <author><name>Jane</name><uri>xmpp:jane@a.example</uri></author>\
             <id>tag:a.example,2026:1</id><published>2026-12-01T10:00:00Z</published>\
             <updated>2026-12-01T11:00:00Z</updated>\
             <thr:in-reply-to ref='tag:b.example,2026:9' href='xmpp:joe@b.example?;node=urn:xmpp:microblog:0;item=9'/>\
             </entry>",
        )
        .unwrap();
        assert_eq!(e.title, "Hello & welcome");
        assert_eq!(e.content, "the body");
        assert_eq!(e.author_name.as_deref(), Some("Jane"));
        assert_eq!(e.author_uri.as_deref(), Some("xmpp:jane@a.example"));
        assert_eq!(e.id.as_deref(), Some("tag:a.example,2026:1"));
        assert_eq!(e.published.as_deref(), Some("2026-12-01T10:00:00Z"));
        assert_eq!(e.updated.as_deref(), Some("2026-12-01T11:00:00Z"));
        let r = e.in_reply_to.unwrap();
        assert_eq!(r.reference, "tag:b.example,2026:9");
        assert!(r.href.unwrap().starts_with("xmpp:joe@b.example"));
    }

    #[test]
    fn a_title_only_post_is_its_content() {
        let e = parse("<entry xmlns='http://www.w3.org/2005/Atom'><title>short</title></entry>")
            .unwrap();
        assert_eq!(e.content, "short");
        assert_eq!(e.id, None);
        assert_eq!(e.published, None);
    }

    #[test]
    fn xhtml_content_alone_is_read_as_its_text() {
        let e = parse(
            "<entry xmlns='http://www.w3.org/2005/Atom'><title/>\
             <content type='xhtml'><div xmlns='http://www.w3.org/1999/xhtml'>a <b>b</b></div></content></entry>",
        )
        .unwrap();
        assert_eq!(e.content, "a b");
    }

    #[test]
    fn rejects_what_is_not_an_atom_entry() {
        assert_eq!(
            parse("<entry xmlns='urn:other'/>"),
            Err(EntryError::NotAnEntry)
        );
        assert_eq!(
            parse("<feed xmlns='http://www.w3.org/2005/Atom'/>"),
            Err(EntryError::NotAnEntry)
        );
    }

    #[test]
    fn round_trips_through_xml() {
        let e = Entry {
            id: Some("tag:a.example,2026:x<y".into()),
            title: "<script>alert('x')</script>".into(),
            content: "<script>alert('x')</script>".into(),
            published: Some("2026-12-01T10:00:00.000Z".into()),
            updated: Some("2026-12-01T10:00:00.000Z".into()),
            author_name: Some("J & J".into()),
            author_uri: Some("xmpp:jane@a.example".into()),
            in_reply_to: Some(InReplyTo {
                reference: "tag:b,1".into(),
                href: None,
            }),
        };
        let xml = e.to_element().to_bytes();
        let back = Entry::parse(&Element::parse(std::str::from_utf8(&xml).unwrap()).unwrap());
        assert_eq!(back.unwrap(), e);
        // A long post keeps its title and a separate content.
        let long = Entry {
            title: "first line".into(),
            content: "first line\nand more".into(),
            ..Entry::default()
        };
        let xml = long.to_element().to_bytes();
        let back = Entry::parse(&Element::parse(std::str::from_utf8(&xml).unwrap()).unwrap());
        assert_eq!(back.unwrap(), long);
    }
}
