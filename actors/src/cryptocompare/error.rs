//! The errors of the CryptoCompare clients.
//!
//! No error carries the API key: messages that come from the server are
//! redacted before they are stored, and requests never put the key in a URL,
//! so transport errors (which name the URL) cannot hold it either.

/// A frame or body that is not what the protocol says.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// Not JSON, or JSON of the wrong shape.
    #[error("invalid json: {0}")]
    Json(#[from] serde_json::Error),
    /// A field the message type requires is absent.
    #[error("missing field `{0}`")]
    MissingField(&'static str),
    /// A field holds something other than the number it must hold.
    #[error("invalid number in field `{0}`")]
    InvalidNumber(&'static str),
    /// The body is JSON but neither a success nor an error answer.
    #[error("unexpected body: {0}")]
    Unexpected(&'static str),
}

/// What kind of `"Response":"Error"` body the server sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiErrorKind {
    /// `Type` 99: over the rate limit; retried after a back-off.
    RateLimited,
    /// `Type` 2: a parameter is missing or invalid.
    InvalidParameter,
    /// The API key is missing or refused.
    Unauthorized,
    /// The source does not know this pair: the market does not list it, or
    /// there is no such market. CryptoCompare answers `<market> market does
    /// not exist for this coin pair (BASE-QUOTE)` (`Type` 1 from the history
    /// endpoints; `Type` 2 in some multi-pair answers), e.g.
    /// `Kraken market does not exist for this coin pair (FOO-EUR)` or
    /// `CCCAGG market does not exist for this coin pair (FOO-USD)`. Asking
    /// again will not help; see [`ApiError::is_unknown_pair`] and
    /// [`CryptoCompareError::is_unknown_pair`].
    UnknownPair,
    /// `Type` 1: other refusals.
    NotAvailable,
    /// Any other `Type`.
    Other,
}

/// An error answer in a body (`"Response":"Error"`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cryptocompare error (type {code}): {message}")]
pub struct ApiError {
    /// The body's `Type`.
    pub code: i64,
    /// The body's `Message`, with the API key redacted.
    pub message: String,
    /// The body's `ParamWithError`, when present.
    pub param: Option<String>,
}

/// What CryptoCompare's message says when the market does not list the
/// pair (matched without regard to case).
pub const UNKNOWN_PAIR_MESSAGE: &str = "market does not exist for this coin pair";

impl ApiError {
    /// The kind of error, from its `Type` and message.
    pub fn kind(&self) -> ApiErrorKind {
        let lower = self.message.to_ascii_lowercase();
        match self.code {
            99 => ApiErrorKind::RateLimited,
            _ if lower.contains(UNKNOWN_PAIR_MESSAGE) => ApiErrorKind::UnknownPair,
            _ if lower.contains("api key") || lower.contains("auth key") => {
                ApiErrorKind::Unauthorized
            }
            2 => ApiErrorKind::InvalidParameter,
            1 => ApiErrorKind::NotAvailable,
            _ => ApiErrorKind::Other,
        }
    }

    /// Whether the source does not know the pair
    /// ([`ApiErrorKind::UnknownPair`]).
    pub fn is_unknown_pair(&self) -> bool {
        self.kind() == ApiErrorKind::UnknownPair
    }
}

/// Everything that can go wrong talking to CryptoCompare.
#[derive(Debug, thiserror::Error)]
pub enum CryptoCompareError {
    /// The configuration cannot work.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The request cannot be made (e.g. an instrument the API cannot name).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// Still rate limited after every allowed retry.
    #[error("rate limited, gave up after {attempts} attempts")]
    RateLimited {
        /// Requests made, the first included.
        attempts: u32,
    },
    /// The API key is missing or refused.
    #[error("api key refused: {0}")]
    Unauthorized(String),
    /// An error body other than a rate limit or a refused key.
    #[error(transparent)]
    Api(ApiError),
    /// An HTTP status the protocol does not explain.
    #[error("unexpected http status {0}")]
    HttpStatus(u16),
    /// The request could not be sent or its answer not read.
    #[error("transport error: {0}")]
    Transport(#[source] reqwest::Error),
    /// The answer is malformed.
    #[error("malformed answer: {0}")]
    Parse(#[from] ParseError),
    /// The history pages do not join up (a gap or an overlap).
    #[error("history pages do not join up: {0}")]
    Discontinuity(String),
    /// The WebSocket upgrade was refused or invalid.
    #[error("websocket handshake failed: {0}")]
    Handshake(String),
    /// The WebSocket failed after the upgrade.
    #[error("websocket error: {0}")]
    WebSocket(#[source] Box<tokio_tungstenite::tungstenite::Error>),
    /// The server refused the stream with a `401`, `429` or `500` frame.
    #[error("streamer refused (type {code}): {message}")]
    Refused {
        /// The frame's `TYPE`.
        code: u16,
        /// The frame's `MESSAGE`.
        message: String,
    },
    /// Something took longer than its configured limit.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// The server closed the connection.
    #[error("connection closed by the server")]
    Closed,
}

impl CryptoCompareError {
    /// The kind of the server's error body, when the error is one
    /// ([`CryptoCompareError::Api`]).
    pub fn api_kind(&self) -> Option<ApiErrorKind> {
        match self {
            Self::Api(e) => Some(e.kind()),
            _ => None,
        }
    }

    /// Whether the source answered that it does not know the pair (the
    /// market does not list it, or does not exist): a request for it will
    /// never succeed, unlike a rate limit or a transport failure.
    pub fn is_unknown_pair(&self) -> bool {
        self.api_kind() == Some(ApiErrorKind::UnknownPair)
    }

    /// Whether a later attempt may succeed without any change (transport
    /// failures and rate limits), as opposed to errors in the request.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. }
                | Self::Transport(_)
                | Self::WebSocket(_)
                | Self::Timeout(_)
                | Self::Closed
                | Self::Handshake(_)
        ) || matches!(self, Self::HttpStatus(s) if *s >= 500)
    }
}
