//! RFC 6120 error conditions: stream errors (§4.9.3) and stanza errors (§8.3.3).
//!
//! Every typed error elsewhere in the crate maps to one of these, so the
//! server can always answer bad input with the right element on the wire.

/// A defined stream error condition (RFC 6120 §4.9.3). A stream error is
/// fatal: the server sends it and closes the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamErrorCondition {
    /// The entity sent XML that cannot be processed.
    BadFormat,
    /// The namespace prefix is not supported (e.g. not `stream`).
    BadNamespacePrefix,
    /// A new stream for this entity replaced the old one.
    Conflict,
    /// The peer was silent for too long.
    ConnectionTimeout,
    /// The `to` address names no domain served here.
    HostUnknown,
    /// A `from` the sender may not use: on a server-to-server stream, a
    /// domain it has not been verified for (RFC 6120 §4.9.3.9).
    InvalidFrom,
    /// The stream namespace is not the one RFC 6120 defines.
    InvalidNamespace,
    /// The server hit an internal error.
    InternalServerError,
    /// The entity tried to send data before authenticating.
    NotAuthorized,
    /// The XML is not well-formed.
    NotWellFormed,
    /// A local policy was violated (size, rate, queue limits).
    PolicyViolation,
    /// The server lacks the resources to serve the stream.
    ResourceConstraint,
    /// The server closes the stream because something security-relevant
    /// changed, such as the account's credentials (RFC 6120 §4.9.3.16).
    Reset,
    /// The XML uses a feature RFC 6120 §11.1 forbids.
    RestrictedXml,
    /// The server is shutting down.
    SystemShutdown,
    /// A condition not covered by the others.
    UndefinedCondition,
    /// The stream version is not supported.
    UnsupportedVersion,
    /// A first-level child that the server does not understand.
    UnsupportedStanzaType,
}

impl StreamErrorCondition {
    /// The element name of the condition, in `urn:ietf:params:xml:ns:xmpp-streams`.
    pub fn as_str(self) -> &'static str {
        use StreamErrorCondition::*;
        match self {
            BadFormat => "bad-format",
            BadNamespacePrefix => "bad-namespace-prefix",
            Conflict => "conflict",
            ConnectionTimeout => "connection-timeout",
            HostUnknown => "host-unknown",
            InvalidFrom => "invalid-from",
            InvalidNamespace => "invalid-namespace",
            InternalServerError => "internal-server-error",
            NotAuthorized => "not-authorized",
            NotWellFormed => "not-well-formed",
            PolicyViolation => "policy-violation",
            ResourceConstraint => "resource-constraint",
            Reset => "reset",
            RestrictedXml => "restricted-xml",
            SystemShutdown => "system-shutdown",
            UndefinedCondition => "undefined-condition",
            UnsupportedVersion => "unsupported-version",
            UnsupportedStanzaType => "unsupported-stanza-type",
        }
    }
}

/// The `type` of a stanza error (RFC 6120 §8.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StanzaErrorType {
    /// Retry after providing credentials.
    Auth,
    /// Do not retry: the error cannot be remedied.
    Cancel,
    /// Proceed: the condition was only a warning.
    Continue,
    /// Retry after changing the data sent.
    Modify,
    /// Retry after waiting: the error is temporary.
    Wait,
}

impl StanzaErrorType {
    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auth => "auth",
            Self::Cancel => "cancel",
            Self::Continue => "continue",
            Self::Modify => "modify",
            Self::Wait => "wait",
        }
    }
}

/// A defined stanza error condition (RFC 6120 §8.3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StanzaErrorCondition {
    /// The request was malformed.
    BadRequest,
    /// The request conflicts with existing state.
    Conflict,
    /// The feature is not implemented.
    FeatureNotImplemented,
    /// The requester may not do this.
    Forbidden,
    /// The recipient no longer exists at this address.
    Gone,
    /// The server failed internally.
    InternalServerError,
    /// The addressed item does not exist.
    ItemNotFound,
    /// The JID is malformed.
    JidMalformed,
    /// The request does not meet the recipient's criteria.
    NotAcceptable,
    /// No entity may do this.
    NotAllowed,
    /// Credentials are needed first.
    NotAuthorized,
    /// A local policy was violated.
    PolicyViolation,
    /// The recipient is temporarily unavailable.
    RecipientUnavailable,
    /// The server lacks resources.
    ResourceConstraint,
    /// The service is not offered.
    ServiceUnavailable,
    /// A subscription is required first.
    SubscriptionRequired,
    /// None of the others.
    UndefinedCondition,
    /// The request was not expected now.
    UnexpectedRequest,
    /// The recipient's server cannot be reached.
    RemoteServerNotFound,
    /// The recipient's server did not answer in time.
    RemoteServerTimeout,
}

impl StanzaErrorCondition {
    /// The element name, in `urn:ietf:params:xml:ns:xmpp-stanzas`.
    pub fn as_str(self) -> &'static str {
        use StanzaErrorCondition::*;
        match self {
            BadRequest => "bad-request",
            Conflict => "conflict",
            FeatureNotImplemented => "feature-not-implemented",
            Forbidden => "forbidden",
            Gone => "gone",
            InternalServerError => "internal-server-error",
            ItemNotFound => "item-not-found",
            JidMalformed => "jid-malformed",
            NotAcceptable => "not-acceptable",
            NotAllowed => "not-allowed",
            NotAuthorized => "not-authorized",
            PolicyViolation => "policy-violation",
            RecipientUnavailable => "recipient-unavailable",
            ResourceConstraint => "resource-constraint",
            ServiceUnavailable => "service-unavailable",
            SubscriptionRequired => "subscription-required",
            UndefinedCondition => "undefined-condition",
            UnexpectedRequest => "unexpected-request",
            RemoteServerNotFound => "remote-server-not-found",
            RemoteServerTimeout => "remote-server-timeout",
        }
    }

    /// The error type RFC 6120 §8.3.3 suggests for this condition.
    pub fn default_type(self) -> StanzaErrorType {
        use StanzaErrorCondition::*;
        match self {
            BadRequest | JidMalformed | NotAcceptable | PolicyViolation => StanzaErrorType::Modify,
            NotAuthorized | Forbidden | SubscriptionRequired => StanzaErrorType::Auth,
            InternalServerError | RecipientUnavailable | ResourceConstraint | UnexpectedRequest
            | RemoteServerTimeout => StanzaErrorType::Wait,
            _ => StanzaErrorType::Cancel,
        }
    }
}
