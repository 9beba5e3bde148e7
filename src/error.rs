//! The crate's one error type, and what each kind means for the caller: whether trying again
//! may help (here) and which HTTP status a front end answers with (`lambda::response`).

use thiserror::Error;

/// Any underlying error (an SDK's, the HTTP client's, a decoder's), kept as the source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

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
    #[error("storage: {message}")]
    Storage {
        message: String,
        #[source]
        source: Option<BoxError>,
    },

    /// The source URL breaks the source guard; no request was sent.
    #[error("source refused: {0}")]
    SourceRefused(String),

    /// Downloading the source failed in a way that may pass (5xx, reset, timeout).
    #[error("source: {message}")]
    Source {
        message: String,
        #[source]
        source: Option<BoxError>,
    },

    /// The source answered something that will not change on retry (over the size cap, a 4xx
    /// other than not found).
    #[error("source rejected: {0}")]
    SourcePermanent(String),

    /// The source says the file is not there (403, 404, 410): believed only after a grace
    /// window, since MusicGPT's bucket may lag its callback.
    #[error("source: not found: {0}")]
    SourceNotFound(String),

    /// S3 failed while writing the copy.
    #[error("sink: {message}")]
    Sink {
        message: String,
        #[source]
        source: Option<BoxError>,
    },

    /// The time budget ran out mid-copy; the copy was stopped cleanly and nothing was stored.
    #[error("out of time: {0}")]
    OutOfTime(String),

    /// MusicGPT's API is busy or down (429, 5xx, network): ask again later.
    #[error("musicgpt: {message}")]
    Provider {
        message: String,
        #[source]
        source: Option<BoxError>,
    },

    /// The store refused the write for good (an item over DynamoDB's size limit): retrying the
    /// same callback cannot help.
    #[error("storage refused: {0}")]
    StorageRejected(String),

    /// MusicGPT's API refused the request in a way that will not change.
    #[error("musicgpt: {0}")]
    ProviderRejected(String),

    /// A request to MusicGPT fails its checks before anything is sent (a missing field, a
    /// value out of range, a file that cannot be read); the text names the field.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

impl Error {
    /// Whether trying the same thing again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Storage { .. }
                | Error::Source { .. }
                | Error::Sink { .. }
                | Error::OutOfTime(_)
                | Error::Provider { .. }
        )
    }

    /// A storage failure described by `message` alone.
    pub fn storage(message: impl Into<String>) -> Error {
        Error::Storage {
            message: message.into(),
            source: None,
        }
    }

    /// A storage failure caused by `source`; `context` says what was being done.
    pub fn storage_from(context: &str, source: impl Into<BoxError>) -> Error {
        let source = source.into();
        Error::Storage {
            message: with_causes(context, source.as_ref()),
            source: Some(source),
        }
    }

    pub fn source(message: impl Into<String>) -> Error {
        Error::Source {
            message: message.into(),
            source: None,
        }
    }

    pub fn source_from(context: &str, source: impl Into<BoxError>) -> Error {
        let source = source.into();
        Error::Source {
            message: with_causes(context, source.as_ref()),
            source: Some(source),
        }
    }

    pub fn sink(message: impl Into<String>) -> Error {
        Error::Sink {
            message: message.into(),
            source: None,
        }
    }

    pub fn sink_from(context: &str, source: impl Into<BoxError>) -> Error {
        let source = source.into();
        Error::Sink {
            message: with_causes(context, source.as_ref()),
            source: Some(source),
        }
    }

    pub fn provider(message: impl Into<String>) -> Error {
        Error::Provider {
            message: message.into(),
            source: None,
        }
    }

    pub fn provider_from(context: &str, source: impl Into<BoxError>) -> Error {
        let source = source.into();
        Error::Provider {
            message: with_causes(context, source.as_ref()),
            source: Some(source),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `context: error: cause: cause ...`; SDK errors say only "service error" at the top, so the
/// whole chain goes into the message that logs show.
fn with_causes(context: &str, err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = format!("{context}: {err}");
    let mut cause = err.source();
    while let Some(e) = cause {
        let next = e.to_string();
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        cause = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn sources_are_kept_and_named_in_the_message() {
        let err = Error::storage_from("PutItem", Outer(std::io::Error::other("reset")));
        assert_eq!(err.to_string(), "storage: PutItem: outer: reset");
        assert!(std::error::Error::source(&err).is_some());
        assert!(err.is_retryable());
        assert!(!Error::ProviderRejected("no".into()).is_retryable());
    }
}
