//! What a client's own broadcast presence says (RFC 6121 §4): whether it
//! is available, its priority, and its entity capabilities (XEP-0115),
//! which decide what the fan-out sends it.

use crate::element::Element;
use crate::ns;

/// Longest caps `ver` worth asking about (a SHA-1 one is 28 bytes).
pub const MAX_VER_LEN: usize = 64;
/// Longest caps `node` worth asking about.
pub const MAX_CAPS_NODE_LEN: usize = 1024;

/// A broadcast presence (no `to`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Broadcast {
    /// Available, with its priority and caps.
    Available(Available),
    /// `type='unavailable'`.
    Unavailable,
}

/// An available presence.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Available {
    /// `<priority/>`, clamped to -128..=127; 0 when absent or not a number.
    pub priority: i8,
    /// SHA-1 caps within the length limits; `None` otherwise.
    pub caps: Option<Caps>,
}

/// XEP-0115 caps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caps {
    /// The software's node URI.
    pub node: String,
    /// The verification string.
    pub ver: String,
}

impl Caps {
    /// The disco node to query: `node#ver`.
    pub fn disco_node(&self) -> String {
        format!("{}#{}", self.node, self.ver)
    }
}

impl Broadcast {
    /// Reads a presence without `to`. `None` for types a client's
    /// broadcast does not use (probe, error, subscriptions).
    pub fn parse(presence: &Element) -> Option<Self> {
        match presence.attr("type") {
            None => {}
            Some("unavailable") => return Some(Self::Unavailable),
            Some(_) => return None,
        }
        let priority = presence
            .child("priority", ns::CLIENT)
            .and_then(|p| p.text().trim().parse::<i32>().ok())
            .map_or(0, |p| p.clamp(-128, 127) as i8);
        // A SHA-1 ver is 28 characters; anything much longer is not one,
        // and is not worth a query or a cache slot.
        let caps = presence
            .child("c", ns::CAPS)
            .filter(|c| c.attr("hash") == Some("sha-1"))
            .and_then(|c| {
                let ver = c.attr("ver").filter(|v| v.len() <= MAX_VER_LEN)?;
                let node = c.attr("node").unwrap_or("");
                (node.len() <= MAX_CAPS_NODE_LEN).then(|| Caps {
                    node: node.to_owned(),
                    ver: ver.to_owned(),
                })
            });
        Some(Self::Available(Available { priority, caps }))
    }

    /// The `<presence/>` element.
    pub fn to_element(&self) -> Element {
        let p = Element::new("presence", ns::CLIENT);
        match self {
            Self::Unavailable => p.with_attr("type", "unavailable"),
            Self::Available(a) => {
                let mut p = p;
                if a.priority != 0 {
                    p = p.with_child(
                        Element::new("priority", ns::CLIENT).with_text(a.priority.to_string()),
                    );
                }
                match &a.caps {
                    Some(c) => p.with_child(
                        Element::new("c", ns::CAPS)
                            .with_attr("hash", "sha-1")
                            .with_attr("node", c.node.clone())
                            .with_attr("ver", c.ver.clone()),
                    ),
                    None => p,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(xml: &str) -> Option<Broadcast> {
        Broadcast::parse(&Element::from_stanza(xml.as_bytes()).unwrap())
    }

    #[test]
    fn parses_round_trips_and_ignores() {
        let b = parse(
            "<presence><priority>300</priority><c xmlns='http://jabber.org/protocol/caps' \
             hash='sha-1' node='http://movim.eu' ver='QgayPKawpkPSDYmwT/WM94uAlu0='/></presence>",
        )
        .unwrap();
        let want = Broadcast::Available(Available {
            priority: 127,
            caps: Some(Caps {
                node: "http://movim.eu".into(),
                ver: "QgayPKawpkPSDYmwT/WM94uAlu0=".into(),
            }),
        });
        assert_eq!(b, want);
        assert_eq!(Broadcast::parse(&want.to_element()), Some(want));
        assert_eq!(
            parse("<presence type='unavailable'/>"),
            Some(Broadcast::Unavailable)
        );
        assert_eq!(parse("<presence type='probe'/>"), None);
        // Not sha-1, an over-long ver, a priority that is not a number.
        let b = parse(
            "<presence><priority>high</priority><c xmlns='http://jabber.org/protocol/caps' hash='md5' node='n' ver='v'/></presence>",
        );
        assert_eq!(b, Some(Broadcast::Available(Available::default())));
        let long = parse(&format!(
            "<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n' ver='{}'/></presence>",
            "v".repeat(MAX_VER_LEN + 1)
        ));
        assert_eq!(long, Some(Broadcast::Available(Available::default())));
    }
}
