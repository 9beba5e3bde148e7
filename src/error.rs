//! The crate's one error type, and what each kind means for the caller.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    /// A missing or bad environment variable, found at cold start.
    #[error("configuration: {0}")]
    Config(String),

    /// The request is not a MusicGPT callback; the text names the problem.
    #[error("{0}")]
    BadCallback(String),

    /// The body is larger than the receiver accepts or than one table item can hold.
    #[error("{0}")]
    TooLarge(String),

    /// The webhook token is missing or unknown. Deliberately says nothing more.
    #[error("not found")]
    UnknownToken,

    #[error("method {0} not allowed")]
    MethodNotAllowed(String),

    /// DynamoDB failed or was unreachable: the sender must retry.
    #[error("storage: {0}")]
    Storage(String),

    /// The source URL breaks the source guard; no request was sent.
    #[error("source refused: {0}")]
    SourceRefused(String),

    /// Downloading the source failed in a way that may pass (5xx, reset, timeout).
    #[error("source: {0}")]
    Source(String),

    /// The source answered something that will not change on retry (404, over the size cap).
    #[error("source rejected: {0}")]
    SourcePermanent(String),

    /// S3 failed while writing the copy.
    #[error("sink: {0}")]
    Sink(String),

    /// The time budget ran out mid-copy; the copy was stopped cleanly and nothing was stored.
    #[error("out of time: {0}")]
    OutOfTime(String),

    /// MusicGPT's API is busy or down (429, 5xx, network): ask again later.
    #[error("musicgpt: {0}")]
    Provider(String),

    /// MusicGPT's API refused the request in a way that will not change.
    #[error("musicgpt: {0}")]
    ProviderRejected(String),
}

impl Error {
    /// Whether trying the same thing again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Storage(_)
                | Error::Source(_)
                | Error::Sink(_)
                | Error::OutOfTime(_)
                | Error::Provider(_)
        )
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Formats an SDK error with its whole cause chain (the SDK's Display alone says only "service error").
pub(crate) fn sdk_message<E: std::error::Error>(err: E) -> String {
    aws_sdk_dynamodb::error::DisplayErrorContext(err).to_string()
}
