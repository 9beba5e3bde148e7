//! The one builder: configuration read once, SDK clients and adapters built once, and the use
//! cases and front ends the binaries run, assembled from them.

use aws_config::SdkConfig;

use crate::adapters::AwsPorts;
use crate::adapters::aws;
use crate::adapters::dynamodb::DynamoTable;
use crate::adapters::musicgpt::MusicGptApi;
use crate::adapters::s3::S3Sink;
use crate::adapters::source::{HttpSource, SourceGuard, SourceOptions};
use crate::app::copy::CopyEngine;
use crate::app::reconcile::Reconciler;
use crate::app::record::Recorder;
use crate::app::sweep::Sweeper;
use crate::app::verify::Verifier;
use crate::config::{self, Config, ProcessEnv};
use crate::domain::conversion::RateLimit;
use crate::error::{Error, Result};
use crate::lambda::http::Ingest;
use crate::lambda::metrics::Metrics;
use crate::lambda::schedule::Schedule;
use crate::lambda::stream::StreamCopier;

/// Everything a binary needs, built from the environment at cold start.
pub struct App {
    pub config: Config,
    sdk: SdkConfig,
    table: DynamoTable,
}

impl App {
    pub async fn from_env() -> Result<App> {
        let config = Config::from_env()?;
        let sdk = aws::load_sdk_config().await;
        let table = DynamoTable::new(aws::dynamodb_client(&sdk), &config.table_name);
        Ok(App { config, sdk, table })
    }

    pub fn recorder(&self) -> Recorder<DynamoTable> {
        Recorder::new(
            self.table.clone(),
            self.config.key_prefix.clone(),
            self.config.callback_retention,
        )
        .with_file_retention(self.config.copy.retry.retention)
        .with_file_hosts(self.config.copy.source_hosts.clone())
    }

    /// The webhook's admission, with `WEBHOOK_TOKENS`.
    pub fn ingest(&self) -> Result<Ingest<DynamoTable>> {
        Ok(Ingest::new(
            config::webhook_tokens(&ProcessEnv)?,
            self.recorder(),
        ))
    }

    /// MusicGPT's API, when `MUSICGPT_API_KEY` is set; its lookups keep to the plan's rate.
    pub fn api(&self) -> Result<Option<MusicGptApi>> {
        let rate = musicgpt_rate_limit()?;
        self.config
            .musicgpt
            .as_ref()
            .map(|m| Ok(MusicGptApi::new(&m.api_url, &m.api_key)?.with_rate_limit(rate)))
            .transpose()
    }

    pub fn require_api(&self, who: &str) -> Result<MusicGptApi> {
        self.api()?
            .ok_or_else(|| Error::Config(format!("MUSICGPT_API_KEY is required by {who}")))
    }

    /// The copy engine: the table, `BUCKET_NAME`, the source guard, and verification through
    /// byId when MusicGPT's API is configured.
    pub fn copy_engine(&self) -> Result<CopyEngine<AwsPorts>> {
        let bucket = self.config.require_bucket()?;
        let engine = CopyEngine::<AwsPorts>::new(
            self.table.clone(),
            HttpSource::new(
                SourceGuard::new(&self.config.copy.source_hosts)?,
                SourceOptions::with_max_bytes(self.config.copy.max_asset_bytes),
            )?,
            S3Sink::new(aws::s3_client(&self.sdk), bucket),
            self.config.copy.retry.clone(),
        );
        Ok(match self.api()? {
            Some(api) => engine.with_verifier(Verifier::new(api, self.table.clone())),
            None => engine,
        })
    }

    pub fn stream_copier(&self) -> Result<StreamCopier<AwsPorts>> {
        Ok(StreamCopier::new(self.copy_engine()?))
    }

    /// The sweep always; reconciliation too when MusicGPT's API is configured.
    pub fn schedule(&self) -> Result<Schedule<AwsPorts>> {
        let sweeper = Sweeper::new(self.copy_engine()?, config::sweep_settings(&ProcessEnv)?);
        let reconciler = match self.api()? {
            Some(api) => {
                let settings = config::reconcile_settings(&ProcessEnv)?;
                Some(
                    Reconciler::new(self.recorder(), api, settings)
                        .with_copier(self.copy_engine()?),
                )
            }
            None => None,
        };
        Ok(Schedule::new(sweeper, reconciler).with_metrics(Metrics::init("reconciler")))
    }
}

/// How fast MusicGPT lookups may go: `MUSICGPT_RATE_PER_MINUTE`, else the byId limit of
/// `MUSICGPT_PLAN` (free|plus|pro), else 200 a minute; the plan also names the limits a 429
/// reports.
pub fn musicgpt_rate_limit() -> Result<RateLimit> {
    config::musicgpt_rate_limit(&ProcessEnv)
}

/// MusicGPT's API alone, without the table: the command line's lookups.
pub fn musicgpt_api() -> Result<MusicGptApi> {
    let config = config::musicgpt(&ProcessEnv)?
        .ok_or_else(|| Error::Config("MUSICGPT_API_KEY is required".into()))?;
    Ok(MusicGptApi::new(&config.api_url, &config.api_key)?.with_rate_limit(musicgpt_rate_limit()?))
}
