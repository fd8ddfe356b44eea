//! Namespace URIs Starling speaks.

/// RFC 6120 client stream content.
pub const CLIENT: &str = "jabber:client";
/// RFC 6120 server stream content.
pub const SERVER: &str = "jabber:server";
/// The stream element.
pub const STREAM: &str = "http://etherx.jabber.org/streams";
/// Stream error conditions.
pub const STREAM_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
/// Stanza error conditions.
pub const STANZA_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
/// STARTTLS.
pub const TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
/// SASL.
pub const SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
/// Resource binding.
pub const BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
/// The legacy session iq (RFC 3921).
pub const SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";
/// XEP-0077 in-band registration, as a query.
pub const REGISTER: &str = "jabber:iq:register";
/// XEP-0077 in-band registration, as a stream feature.
pub const REGISTER_FEATURE: &str = "http://jabber.org/features/iq-register";
/// RFC 6121 roster.
pub const ROSTER: &str = "jabber:iq:roster";
/// XEP-0030 disco#info.
pub const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
/// XEP-0030 disco#items.
pub const DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
/// XEP-0115 entity capabilities.
pub const CAPS: &str = "http://jabber.org/protocol/caps";
/// XEP-0060 pubsub.
pub const PUBSUB: &str = "http://jabber.org/protocol/pubsub";
/// XEP-0060 pubsub events.
pub const PUBSUB_EVENT: &str = "http://jabber.org/protocol/pubsub#event";
/// XEP-0060 pubsub owner use cases.
pub const PUBSUB_OWNER: &str = "http://jabber.org/protocol/pubsub#owner";
/// XEP-0060 application error conditions.
pub const PUBSUB_ERRORS: &str = "http://jabber.org/protocol/pubsub#errors";
/// XEP-0059 result set management.
pub const RSM: &str = "http://jabber.org/protocol/rsm";
/// XEP-0004 data forms.
pub const DATA_FORMS: &str = "jabber:x:data";
/// XEP-0199 ping.
pub const PING: &str = "urn:xmpp:ping";
/// XEP-0203 delayed delivery.
pub const DELAY: &str = "urn:xmpp:delay";
/// XEP-0191 blocking.
pub const BLOCKING: &str = "urn:xmpp:blocking";
/// XEP-0277 microblog node.
pub const MICROBLOG: &str = "urn:xmpp:microblog:0";
/// Atom (RFC 4287), the microblog payload.
pub const ATOM: &str = "http://www.w3.org/2005/Atom";
/// XEP-0220 dialback.
pub const DIALBACK: &str = "jabber:server:dialback";
/// XEP-0033 Extended Stanza Addressing (multicast).
pub const ADDRESS: &str = "http://jabber.org/protocol/address";
