//! Server-to-server streams (RFC 6120 with `jabber:server`, XEP-0220
//! dialback), issue #12.
//!
//! - [`incoming`]: an incoming stream's negotiation as a state machine
//!   without I/O (header, STARTTLS, dialback) and the rule every stanza on
//!   it passes: its from-domain was verified for its to-domain.
//! - [`outgoing`]: an outgoing stream's negotiation: our header, STARTTLS,
//!   our dialback key, and the `<db:verify/>` questions we ask the peer as
//!   the authoritative server of a domain that claimed to send to us.
//! - [`resolve`]: where to connect for a domain: the static host map, then
//!   SRV records in RFC 2782's order, then the domain on 5269.
//!
//! The transports (the 5269 listener, one outgoing stream per remote
//! domain) come next, on the same stream layer as c2s.

pub mod incoming;
pub mod outgoing;
pub mod resolve;
