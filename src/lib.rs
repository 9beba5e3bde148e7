//! MusicGPT webhook receiver: records callbacks in DynamoDB and copies their files into S3.
//! `bin/` only wires; the use cases (`ingest`, `copy`) know nothing of Lambda or HTTP.

pub mod assets;
pub mod aws;
pub mod callback;
pub mod cli;
pub mod config;
pub mod copier;
pub mod copy;
pub mod error;
pub mod http;
pub mod ids;
pub mod ingest;
pub mod keys;
pub mod musicgpt;
pub mod reconcile;
pub mod records;
pub mod sink;
pub mod source;
pub mod store;
pub mod submit;
pub mod telemetry;
pub mod token;
pub mod verify;

pub use error::{Error, Result};
