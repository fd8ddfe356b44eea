//! # starling-stanza
//!
//! Everything Starling knows about XMPP bytes, with no I/O and no clock:
//! the server feeds it what it read and writes what it returns.
//!
//! # Layout
//! - [`jid`]: JIDs, stringprep-normalised, `Arc`-shared so routing tables
//!   copy them for the price of a reference count.
//! - [`framer`]: the incremental stream framer. Bytes in (any chunking),
//!   stream header / stanzas / stream close out, with limits and RFC 6120
//!   §11.1 restricted-XML checks. Each error maps to its stream error.
//! - [`stanza`]: the stanza model: message, presence, iq with their routing
//!   fields read in place; the payload stays raw bytes.
//! - [`element`]: a namespace-aware tree (quick-xml) for payloads the server
//!   must read, with namespace-complete serialization.
//! - [`ser`]: builders for every stanza the server sends.
//! - [`notify`]: pubsub event notifications serialized once per publish and
//!   completed per recipient by a vectored write.
//! - [`xep`]: typed requests, parsed once, one module per specification
//!   (pubsub with RSM, roster, blocking, disco, register, ping, presence).
//! - [`escape`], [`error`], [`ns`]: escaping, RFC 6120 error conditions,
//!   namespace constants.

pub mod element;
pub mod error;
pub mod escape;
pub mod framer;
pub mod jid;
pub mod notify;
pub mod ns;
pub mod ser;
pub mod stanza;
pub mod xep;

pub use element::{Element, ElementError, Node, NsContext};
pub use error::{StanzaErrorCondition, StanzaErrorType, StreamErrorCondition};
pub use framer::{Event, FrameError, Framer, Limits, StreamHeader};
pub use jid::{BareJid, FullJid, Jid, JidError};
pub use notify::{
    escape_jid, event_message, event_message_multicast, EventItem, EventKind, Notification,
    PubsubEvent,
};
pub use stanza::{Kind, Stanza, StanzaError};
