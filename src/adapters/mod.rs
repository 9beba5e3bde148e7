//! The adapters: each port of `app::ports` implemented against the real thing (DynamoDB, S3,
//! the HTTP source, MusicGPT's API) and in memory, for fast tests.

pub mod aws;
pub mod dynamodb;
pub mod eventbridge;
pub mod forward;
pub mod memory;
pub mod musicgpt;
pub mod presign;
pub mod s3;
pub mod source;

use crate::app::ports::Ports;

/// The adapters a deployment runs with.
#[derive(Debug, Clone, Copy)]
pub struct AwsPorts;

impl Ports for AwsPorts {
    type Tasks = dynamodb::DynamoTable;
    type Assets = dynamodb::DynamoTable;
    type Source = source::HttpSource;
    type Sink = s3::S3Sink;
    type Api = musicgpt::MusicGptApi;
}
