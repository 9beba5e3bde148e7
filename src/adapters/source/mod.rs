//! The audio source: downloads a URL as a stream, behind the source guard.
//!
//! The URL comes from an unauthenticated request body, so before a byte is sent the guard
//! checks scheme, userinfo, host and port, resolves the host itself and refuses addresses that
//! are not public. The HTTP client connects only through the same checking resolver, so a DNS
//! answer that changes in between (rebinding) is refused as well. Redirects are followed here,
//! one hop at a time, each hop checked like the first URL.

mod guard;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::{StatusCode, Url, header};

use guard::{GuardedResolver, Refused, refused};
pub use guard::{Lookup, LookupFuture, SourceGuard, SystemLookup, is_public};

use crate::app::ports::{AudioSource, ChunkSource, Download};
use crate::error::{Error, Result};

pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_REDIRECTS: usize = 3;

/// How the source talks to the network. Timeouts are per step, not per file: a 2 GiB file
/// may take minutes, a stalled one must not.
#[derive(Debug, Clone)]
pub struct SourceOptions {
    pub connect_timeout: Duration,
    /// Longest wait for the response headers (connecting included) and for each next piece
    /// of the body.
    pub read_timeout: Duration,
    pub max_redirects: usize,
    /// `MAX_ASSET_BYTES`: refused from Content-Length, or stopped while streaming.
    pub max_bytes: u64,
}

impl SourceOptions {
    /// The default timeouts and redirects, with `MAX_ASSET_BYTES`.
    pub fn with_max_bytes(max_bytes: u64) -> SourceOptions {
        SourceOptions {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            read_timeout: DEFAULT_READ_TIMEOUT,
            max_redirects: DEFAULT_MAX_REDIRECTS,
            max_bytes,
        }
    }
}

/// Fetches source files; cheap to clone.
#[derive(Clone)]
pub struct HttpSource {
    guard: Arc<SourceGuard>,
    client: reqwest::Client,
    options: SourceOptions,
}

impl HttpSource {
    pub fn new(guard: SourceGuard, options: SourceOptions) -> Result<HttpSource> {
        let guard = Arc::new(guard);
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .referer(false)
            // The read timeout is applied here per wait, not by the client: the client's
            // clock also runs while we hold off reading because S3 is still taking a part.
            .connect_timeout(options.connect_timeout)
            .dns_resolver(GuardedResolver(Arc::clone(&guard)))
            .user_agent(concat!("musicgpt-webhook/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Config(format!("HTTP client: {e}")))?;
        Ok(HttpSource {
            guard,
            client,
            options,
        })
    }

    fn accept(&self, response: reqwest::Response) -> Result<HttpDownload> {
        let status = response.status();
        if !status.is_success() || status == StatusCode::PARTIAL_CONTENT {
            let retryable = status.is_server_error()
                || matches!(status.as_u16(), 408 | 425 | 429)
                || status.is_informational();
            let why = format!("answered {status}");
            // S3 answers 403 for a missing object when the bucket cannot be listed.
            let not_found = matches!(status.as_u16(), 403 | 404 | 410);
            return Err(if retryable {
                Error::source(why)
            } else if not_found {
                Error::SourceNotFound(why)
            } else {
                Error::SourcePermanent(why)
            });
        }
        let expected = response.content_length();
        if let Some(len) = expected.filter(|len| *len > self.options.max_bytes) {
            return Err(Error::SourcePermanent(format!(
                "{len} bytes is over MAX_ASSET_BYTES ({})",
                self.options.max_bytes
            )));
        }
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(useful_content_type);
        Ok(HttpDownload {
            response,
            expected,
            received: 0,
            max_bytes: self.options.max_bytes,
            read_timeout: self.options.read_timeout,
            content_type,
            done: false,
        })
    }
}

/// An HTTP client that connects only to addresses `guard` approves, follows no redirect and
/// uses no proxy: the source's own client, for other outgoing requests under the same rules
/// (the event forwarder).
pub fn guarded_client(
    guard: Arc<SourceGuard>,
    connect_timeout: Duration,
) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .referer(false)
        .connect_timeout(connect_timeout)
        .dns_resolver(GuardedResolver(guard))
        .user_agent(concat!("musicgpt-webhook/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Error::Config(format!("HTTP client: {e}")))
}

impl AudioSource for HttpSource {
    type Download = HttpDownload;

    /// Starts the download: checks every hop, follows redirects, and returns once the headers
    /// of a successful answer are in. Nothing is sent for a URL the guard refuses.
    async fn open(&self, url: &str) -> Result<HttpDownload> {
        let mut url = Url::parse(url).map_err(|_| refused("not a valid URL"))?;
        let mut hops = 0;
        loop {
            self.guard.check(&url).await?;
            let send = self
                .client
                .get(url.clone())
                .header(header::ACCEPT_ENCODING, "identity")
                .send();
            // Connecting has its own, shorter timeout inside; the headers must follow in time.
            let response = tokio::time::timeout(
                self.options.read_timeout.max(self.options.connect_timeout),
                send,
            )
            .await
            .map_err(|_| Error::source("timed out waiting for the response headers"))?
            .map_err(request_error)?;
            let status = response.status();
            if !status.is_redirection() {
                return self.accept(response);
            }
            if !matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308) {
                return Err(Error::SourcePermanent(format!("answered {status}")));
            }
            hops += 1;
            if hops > self.options.max_redirects {
                return Err(Error::SourcePermanent(format!(
                    "more than {} redirects",
                    self.options.max_redirects
                )));
            }
            let location = response
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| Error::SourcePermanent(format!("{status} without a Location")))?;
            url = url
                .join(location)
                .map_err(|_| refused("redirect to an invalid URL"))?;
        }
    }
}

/// A response body being read: counted, capped, and checked against Content-Length at its end.
pub struct HttpDownload {
    response: reqwest::Response,
    expected: Option<u64>,
    received: u64,
    max_bytes: u64,
    read_timeout: Duration,
    content_type: Option<String>,
    done: bool,
}

impl HttpDownload {
    pub fn content_length(&self) -> Option<u64> {
        self.expected
    }

    pub fn received(&self) -> u64 {
        self.received
    }
}

impl Download for HttpDownload {
    fn content_type(&self) -> Option<&str> {
        self.content_type.as_deref()
    }
}

impl ChunkSource for HttpDownload {
    fn announced_len(&self) -> Option<u64> {
        self.expected
    }

    async fn next_chunk(&mut self) -> Result<Option<Bytes>> {
        if self.done {
            return Ok(None);
        }
        let next = tokio::time::timeout(self.read_timeout, self.response.chunk())
            .await
            .map_err(|_| {
                Error::source(format!(
                    "body after {} bytes: timed out waiting for more",
                    self.received
                ))
            })?;
        match next {
            Ok(Some(chunk)) => {
                self.received += chunk.len() as u64;
                if self.received > self.max_bytes {
                    return Err(Error::SourcePermanent(format!(
                        "over MAX_ASSET_BYTES ({}) while streaming",
                        self.max_bytes
                    )));
                }
                if let Some(expected) = self.expected.filter(|e| self.received > *e) {
                    return Err(Error::source(format!(
                        "more than the {expected} bytes of Content-Length"
                    )));
                }
                Ok(Some(chunk))
            }
            Ok(None) => {
                self.done = true;
                match self.expected {
                    Some(expected) if expected != self.received => Err(Error::source(format!(
                        "body ended after {} of {expected} bytes",
                        self.received
                    ))),
                    _ => Ok(None),
                }
            }
            Err(err) => Err(Error::source_from(
                &format!("body after {} bytes", self.received),
                err.without_url(),
            )),
        }
    }
}

/// The type as the source sent it, unless it is missing, malformed or says only "bytes".
fn useful_content_type(value: &str) -> Option<String> {
    let value = value.trim();
    let essence = value.split(';').next().unwrap_or_default().trim();
    let generic = essence.eq_ignore_ascii_case("application/octet-stream")
        || essence.eq_ignore_ascii_case("binary/octet-stream");
    let well_formed = value.len() <= 128
        && essence.contains('/')
        && value.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
    (well_formed && !generic).then(|| value.to_owned())
}

/// Maps a client error, finding a refusal from the guarded resolver if there is one. URLs are
/// dropped from the text: presigned ones carry credentials.
fn request_error(err: reqwest::Error) -> Error {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(e) = cause {
        // An io::Error reports its inner error's source, not the inner error: look inside.
        let inner = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|inner| inner as &(dyn std::error::Error + 'static));
        for candidate in [Some(e), inner].into_iter().flatten() {
            if let Some(Refused(why)) = candidate.downcast_ref::<Refused>() {
                return refused(why.clone());
            }
        }
        cause = e.source();
    }
    let what = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    Error::source_from(what, err.without_url())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_that_say_nothing_are_dropped() {
        assert_eq!(useful_content_type("audio/mpeg"), Some("audio/mpeg".into()));
        assert_eq!(useful_content_type("binary/octet-stream"), None);
        assert_eq!(useful_content_type("mpeg"), None);
        assert_eq!(useful_content_type("audio/mpeg\u{7f}"), None);
    }
}
