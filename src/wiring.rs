//! The one builder: configuration read once, SDK clients and adapters built once, and the use
//! cases and front ends the binaries run, assembled from them.

use std::sync::Arc;

use aws_config::SdkConfig;

use crate::adapters::AwsPorts;
use crate::adapters::aws;
use crate::adapters::dynamodb::DynamoTable;
use crate::adapters::eventbridge::EventBridgeBus;
use crate::adapters::forward::{HttpForwarder, secrets_from_manager};
use crate::adapters::musicgpt::MusicGptApi;
use crate::adapters::presign::S3Presigner;
use crate::adapters::s3::{S3Sink, S3SinkOptions};
use crate::adapters::source::{HttpSource, SourceGuard, SourceOptions};
use crate::app::announce::{Announcer, CopyEvents, EventSweep};
use crate::app::copy::CopyEngine;
use crate::app::operate::Operations;
use crate::app::ports::SystemClock;
use crate::app::read::TaskReader;
use crate::app::reconcile::Reconciler;
use crate::app::record::Recorder;
use crate::app::sweep::Sweeper;
use crate::app::verify::Verifier;
use crate::config::{self, Config, ForwardSecrets, ProcessEnv};
use crate::domain::conversion::RateLimit;
use crate::error::{Error, Result};
use crate::lambda::http::Ingest;
use crate::lambda::metrics::Metrics;
use crate::lambda::read_api::ReadApi;
use crate::lambda::schedule::Schedule;
use crate::lambda::stream::StreamCopier;

/// Everything a binary needs, built from the environment at cold start.
pub struct App {
    pub config: Config,
    sdk: SdkConfig,
    table: DynamoTable,
    /// Events for the owner's application, when `EVENT_BUS_NAME` or `FORWARD_URL` is set.
    events: Option<Arc<AwsAnnouncer>>,
}

/// The announcer a deployment runs: the table's outbox, EventBridge, the signed forwarder.
pub type AwsAnnouncer = Announcer<DynamoTable, EventBridgeBus, HttpForwarder>;

impl App {
    pub async fn from_env() -> Result<App> {
        let config = Config::from_env()?;
        let sdk = aws::load_sdk_config().await;
        let table = DynamoTable::new(aws::dynamodb_client(&sdk), &config.table_name);
        let events = announcer(&sdk, &table).await?.map(Arc::new);
        Ok(App {
            config,
            sdk,
            table,
            events,
        })
    }

    /// What the copy engine, the webhook and the sweep announce through, if events are on.
    pub fn events(&self) -> Option<Arc<AwsAnnouncer>> {
        self.events.clone()
    }

    /// The read API (`GET /tasks/{task_id}`, `GET /tasks`): `READ_TOKENS`, presigned URLs
    /// valid for `READ_URL_EXPIRY`.
    pub fn read_api(&self) -> Result<ReadApi<DynamoTable, S3Presigner>> {
        let read = config::read_api(&ProcessEnv)?;
        Ok(ReadApi::new(read.tokens, self.task_reader()?))
    }

    /// The task reader alone (the command line's `tasks` commands).
    pub fn task_reader(&self) -> Result<TaskReader<DynamoTable, S3Presigner>> {
        let read = config::read_api(&ProcessEnv)?;
        Ok(TaskReader::new(
            self.table.clone(),
            S3Presigner::new(aws::s3_client(&self.sdk)),
            read.url_expiry,
        ))
    }

    /// The recorder; with events on, it announces each task it records a callback for.
    pub fn recorder(&self) -> Recorder<DynamoTable> {
        let recorder = Recorder::new(
            self.table.clone(),
            self.config.key_prefix.clone(),
            self.config.callback_retention,
        )
        .with_file_retention(self.config.copy.retry.retention)
        .with_file_hosts(self.config.copy.source_hosts.clone());
        match &self.events {
            Some(events) => recorder.with_events(Arc::clone(events) as Arc<dyn CopyEvents>),
            None => recorder,
        }
    }

    /// Replay, redrive and stuck, for the command line.
    pub fn operations(&self) -> Operations<DynamoTable, DynamoTable> {
        Operations::new(
            self.recorder(),
            self.table.clone(),
            std::sync::Arc::new(SystemClock),
        )
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

    /// The sink's part settings: the configured ones, else its defaults.
    fn sink_options(&self) -> S3SinkOptions {
        let (copy, default) = (&self.config.copy, S3SinkOptions::default());
        S3SinkOptions {
            part_size: copy
                .part_size_mib
                .map_or(default.part_size, |mib| mib * 1024 * 1024),
            parts_in_flight: copy.parts_in_flight.unwrap_or(default.parts_in_flight),
            single_put_max: copy
                .single_put_mib
                .map_or(default.single_put_max, |mib| mib * 1024 * 1024),
        }
        .clamped()
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
            S3Sink::new(aws::s3_client(&self.sdk), bucket).with_options(self.sink_options()),
            self.config.copy.retry.clone(),
        );
        let engine = match &self.events {
            Some(events) => engine.with_events(Arc::clone(events) as Arc<dyn CopyEvents>),
            None => engine,
        };
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
        let schedule = Schedule::new(sweeper, reconciler).with_metrics(Metrics::init("reconciler"));
        Ok(match &self.events {
            Some(events) => schedule.with_events(Arc::clone(events) as Arc<dyn EventSweep>),
            None => schedule,
        })
    }
}

/// The announcer, from `EVENT_BUS_NAME` and `FORWARD_*`; the forward secrets are read from
/// Secrets Manager here, once, when `FORWARD_SECRETS` is a secret's ARN.
async fn announcer(sdk: &SdkConfig, table: &DynamoTable) -> Result<Option<AwsAnnouncer>> {
    let Some(events) = config::events(&ProcessEnv)? else {
        return Ok(None);
    };
    let bus = events
        .bus_name
        .as_ref()
        .map(|name| EventBridgeBus::new(aws::eventbridge_client(sdk), name));
    let forwarder = match &events.forward {
        None => None,
        Some(forward) => {
            let secrets = match &forward.secrets {
                ForwardSecrets::Values(values) => values.clone(),
                ForwardSecrets::SecretArn(arn) => {
                    secrets_from_manager(&aws::secrets_client(sdk), arn).await?
                }
            };
            Some(HttpForwarder::new(&forward.url, &secrets, &forward.hosts)?)
        }
    };
    Ok(Some(
        Announcer::new(table.clone(), bus, forwarder).with_settings(events.settings),
    ))
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
