//! The owner's webhook (`FORWARD_URL`): each event POSTed as JSON and signed per the Standard
//! Webhooks spec by the `standardwebhooks` crate: `webhook-id` (the stable event id),
//! `webhook-timestamp`, and `webhook-signature` with one `v1,<base64 HMAC-SHA256>` per secret,
//! so a receiver holding either the old or the new secret verifies it during a rotation.
//!
//! The target goes through the source guard (reused, not copied): https, port 443, public
//! addresses only, the connection pinned to the checked address, no redirects, unless
//! `FORWARD_HOSTS` names the host (`127.0.0.1` for local runs and tests, then plain http too).

use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use standardwebhooks::Webhook;

use crate::adapters::source::{SourceGuard, guarded_client, is_public};
use crate::app::ports::{ForwardAnswer, Forwarder};
use crate::domain::token::parse_signing_secrets;
use crate::error::{Error, Result};

const TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Clone)]
pub struct HttpForwarder {
    url: Url,
    guard: Arc<SourceGuard>,
    client: reqwest::Client,
    signers: Arc<Vec<Webhook>>,
}

impl std::fmt::Debug for HttpForwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "HttpForwarder({}, {} secrets)",
            self.url.host_str().unwrap_or_default(),
            self.signers.len()
        )
    }
}

impl HttpForwarder {
    /// `hosts` as in `FORWARD_HOSTS`. The URL's own host is allowed when it is a name (its
    /// addresses must then be public); an address literal or `localhost` must be listed.
    pub fn new(url: &str, secrets: &[String], hosts: &[String]) -> Result<HttpForwarder> {
        let url = Url::parse(url).map_err(|_| Error::Config("FORWARD_URL is not a URL".into()))?;
        let host = url
            .host_str()
            .ok_or_else(|| Error::Config("FORWARD_URL has no host".into()))?
            .to_ascii_lowercase();
        let mut allowed: Vec<String> = hosts.to_vec();
        let literal = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .ok();
        let named = literal.is_none() && host != "localhost";
        if named && !allowed.contains(&host) {
            allowed.push(host.clone());
        }
        if let Some(ip) = literal
            && !is_public(ip)
            && !allowed
                .iter()
                .any(|h| h.trim_start_matches('[').trim_end_matches(']') == ip.to_string())
        {
            return Err(Error::Config(format!(
                "FORWARD_URL: {host} is not a public address; name it in FORWARD_HOSTS to allow it"
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Error::Config(
                "FORWARD_URL must not carry credentials".into(),
            ));
        }
        if named && url.port().is_some_and(|p| p != 443) {
            return Err(Error::Config(
                "FORWARD_URL: a public host is reached on port 443 only".into(),
            ));
        }
        let loopback = literal.is_some_and(|ip| ip.is_loopback()) || host == "localhost";
        if url.scheme() != "https" && !(loopback && url.scheme() == "http") {
            return Err(Error::Config(
                "FORWARD_URL must be https (plain http only to a loopback host in FORWARD_HOSTS)"
                    .into(),
            ));
        }
        if host == "localhost" && !allowed.iter().any(|h| h == "localhost") {
            return Err(Error::Config(
                "FORWARD_URL: localhost must be named in FORWARD_HOSTS".into(),
            ));
        }
        let guard = Arc::new(SourceGuard::new(&allowed)?);
        let signers = secrets
            .iter()
            .map(|s| {
                Webhook::new(s).map_err(|_| {
                    Error::Config("FORWARD_SECRETS: a secret is not whsec_ base64".into())
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if signers.is_empty() {
            return Err(Error::Config("FORWARD_SECRETS names no secret".into()));
        }
        Ok(HttpForwarder {
            client: guarded_client(Arc::clone(&guard), Duration::from_secs(10))?,
            url,
            guard,
            signers: Arc::new(signers),
        })
    }

    /// The `webhook-signature` header: one signature per secret, space-separated.
    pub fn signature(&self, event_id: &str, now: u64, payload: &str) -> Result<String> {
        let timestamp = i64::try_from(now).unwrap_or(i64::MAX);
        let signatures = self
            .signers
            .iter()
            .map(|s| s.sign(event_id, timestamp, payload.as_bytes()))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Config(format!("signing: {e}")))?;
        Ok(signatures.join(" "))
    }
}

impl Forwarder for HttpForwarder {
    async fn forward(&self, event_id: &str, payload: &str, now: u64) -> ForwardAnswer {
        if let Err(err) = self.guard.check(&self.url).await {
            return match err {
                Error::SourceRefused(why) => ForwardAnswer::Refused(why),
                other => ForwardAnswer::Failed(other.to_string()),
            };
        }
        let signature = match self.signature(event_id, now, payload) {
            Ok(signature) => signature,
            Err(err) => return ForwardAnswer::Refused(err.to_string()),
        };
        let sent = self
            .client
            .post(self.url.clone())
            .header("content-type", "application/json")
            .header("webhook-id", event_id)
            .header("webhook-timestamp", now.to_string())
            .header("webhook-signature", signature)
            .body(payload.to_owned())
            .timeout(TIMEOUT)
            .send()
            .await;
        match sent {
            Ok(response) => {
                let status = response.status();
                if status.is_success() {
                    ForwardAnswer::Delivered(status.as_u16())
                } else if status.as_u16() == 410 {
                    ForwardAnswer::Gone
                } else {
                    ForwardAnswer::Failed(format!("answered {status}"))
                }
            }
            // The URL (and so its host) is configuration, but never the query: keep it out.
            Err(err) => ForwardAnswer::Failed(format!("POST failed: {}", err.without_url())),
        }
    }
}

/// The secrets held by a Secrets Manager secret (`FORWARD_SECRETS` set to its ARN): its
/// SecretString, `whsec_` values separated by commas or spaces.
pub async fn secrets_from_manager(
    client: &aws_sdk_secretsmanager::Client,
    arn: &str,
) -> Result<Vec<String>> {
    let out = client
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| {
            Error::Config(format!(
                "FORWARD_SECRETS: reading the secret failed: {}",
                aws_sdk_secretsmanager::error::DisplayErrorContext(e)
            ))
        })?;
    let text = out
        .secret_string()
        .ok_or_else(|| Error::Config("FORWARD_SECRETS: the secret has no SecretString".into()))?;
    parse_signing_secrets(text)
        .map_err(|why| Error::Config(format!("FORWARD_SECRETS (secret) {why}")))
}
