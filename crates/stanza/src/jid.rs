//! JIDs (RFC 7622), validated and normalised by the `jid` crate with RFC 6122
//! stringprep, the same profiles Prosody applies.
//!
//! Routing tables copy JIDs into every follower list and session entry, so the
//! types here wrap the parsed value in an `Arc`: a clone is one atomic
//! increment, never a string copy.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;
use std::sync::Arc;

/// Why a JID was rejected.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum JidError {
    /// The text is not a valid JID (stringprep failure, empty or over-long part).
    #[error("invalid JID: {0}")]
    Invalid(#[from] jid::Error),
    /// A bare JID was required but the text carries a resource.
    #[error("expected a bare JID, got a resource part")]
    UnexpectedResource,
    /// A full JID was required but the text has no resource.
    #[error("expected a full JID, the resource part is missing")]
    MissingResource,
}

macro_rules! arc_jid {
    ($(#[$m:meta])* $name:ident, $inner:ty) => {
        $(#[$m])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
        pub struct $name(Arc<$inner>);

        impl Hash for $name {
            fn hash<H: Hasher>(&self, state: &mut H) {
                // Hash the normalised text only, so a `BareJid` and the `str`
                // it prints as agree (needed for `Borrow<str>` lookups).
                self.as_str().hash(state)
            }
        }

        impl $name {
            /// The normalised text form.
            pub fn as_str(&self) -> &str {
                self.0.as_str()
            }
            /// The domain part.
            pub fn domain(&self) -> &str {
                self.0.domain().as_str()
            }
            /// The localpart, when there is one.
            pub fn node(&self) -> Option<&str> {
                self.0.node().map(|n| n.as_str())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.as_str())
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                self.as_str()
            }
        }
    };
}

arc_jid!(
    /// Any JID: bare or full.
    Jid,
    jid::Jid
);
arc_jid!(
    /// A JID without a resource: an account or a domain.
    BareJid,
    jid::BareJid
);
arc_jid!(
    /// A JID with a resource: one session.
    FullJid,
    jid::FullJid
);

impl Jid {
    /// Parses and normalises `s`.
    pub fn new(s: &str) -> Result<Self, JidError> {
        Ok(Self(Arc::new(jid::Jid::new(s)?)))
    }
    /// The resource part, when there is one.
    pub fn resource(&self) -> Option<&str> {
        self.0.resource().map(|r| r.as_str())
    }
    /// The bare form. Allocates only when `self` is full.
    pub fn to_bare(&self) -> BareJid {
        BareJid(Arc::new(self.0.to_bare()))
    }
    /// This JID as a full JID, when it has a resource.
    pub fn to_full(&self) -> Option<FullJid> {
        (*self.0)
            .clone()
            .try_into_full()
            .ok()
            .map(|f| FullJid(Arc::new(f)))
    }
    /// Whether a resource part is present.
    pub fn is_full(&self) -> bool {
        self.0.is_full()
    }
}

impl BareJid {
    /// Parses `s`, which must not carry a resource.
    pub fn new(s: &str) -> Result<Self, JidError> {
        let j = jid::Jid::new(s)?;
        match j.try_into_full() {
            Ok(_) => Err(JidError::UnexpectedResource),
            Err(bare) => Ok(Self(Arc::new(bare))),
        }
    }
    /// Builds `node@domain`, or a domain JID when `node` is `None`.
    pub fn from_parts(node: Option<&str>, domain: &str) -> Result<Self, JidError> {
        match node {
            Some(n) => Self::new(&format!("{n}@{domain}")),
            None => Self::new(domain),
        }
    }
    /// This account's session with `resource`.
    pub fn with_resource(&self, resource: &str) -> Result<FullJid, JidError> {
        Ok(FullJid(Arc::new(self.0.with_resource_str(resource)?)))
    }
    /// As the general [`Jid`] type.
    pub fn to_jid(&self) -> Jid {
        Jid(Arc::new(jid::Jid::from((*self.0).clone())))
    }
}

impl FullJid {
    /// Parses `s`, which must carry a resource.
    pub fn new(s: &str) -> Result<Self, JidError> {
        jid::Jid::new(s)?
            .try_into_full()
            .map(|f| Self(Arc::new(f)))
            .map_err(|_| JidError::MissingResource)
    }
    /// The resource part.
    pub fn resource(&self) -> &str {
        self.0.resource().as_str()
    }
    /// The account this session belongs to.
    pub fn to_bare(&self) -> BareJid {
        BareJid(Arc::new(self.0.to_bare()))
    }
    /// As the general [`Jid`] type.
    pub fn to_jid(&self) -> Jid {
        Jid(Arc::new(jid::Jid::from((*self.0).clone())))
    }
}

impl FromStr for Jid {
    type Err = JidError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}
impl FromStr for BareJid {
    type Err = JidError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}
impl FromStr for FullJid {
    type Err = JidError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_with_stringprep() {
        let j = Jid::new("Jane@Example.ORG/Phone").unwrap();
        // nodeprep and nameprep case-fold; resourceprep keeps case.
        assert_eq!(j.as_str(), "jane@example.org/Phone");
        assert_eq!(j.to_bare().as_str(), "jane@example.org");
        assert_eq!(j.resource(), Some("Phone"));
    }

    #[test]
    fn bare_and_full_are_distinguished() {
        assert_eq!(
            BareJid::new("a@b/c").unwrap_err(),
            JidError::UnexpectedResource
        );
        assert_eq!(FullJid::new("a@b").unwrap_err(), JidError::MissingResource);
        let f = FullJid::new("a@b/c").unwrap();
        assert_eq!(f.resource(), "c");
        assert_eq!(f.to_bare(), BareJid::new("A@B").unwrap());
    }

    #[test]
    fn rejects_bad_jids() {
        for bad in ["", "@example.org", "a@", "a@b/", "a b@example.org"] {
            assert!(Jid::new(bad).is_err(), "{bad:?} should be rejected");
        }
        let long = format!("{}@example.org", "a".repeat(1024));
        assert!(Jid::new(&long).is_err());
        let ok = format!("{}@example.org", "a".repeat(1023));
        assert!(Jid::new(&ok).is_ok());
    }

    #[test]
    fn clones_share_storage() {
        let j = BareJid::new("jane@example.org").unwrap();
        let k = j.clone();
        assert!(std::ptr::eq(j.as_str(), k.as_str()));
        assert_eq!(std::mem::size_of::<BareJid>(), std::mem::size_of::<usize>());
    }

    #[test]
    fn hash_agrees_with_str() {
        use std::collections::HashSet;
        let mut set = HashSet::new();
        set.insert(BareJid::new("jane@example.org").unwrap());
        assert!(set.contains("jane@example.org"));
    }
}
