//! Presigned S3 GET URLs for the read API: signed offline with the function's credentials,
//! valid for the configured time (`READ_URL_EXPIRY`, 15 minutes).

use std::time::Duration;

use aws_sdk_s3::presigning::PresigningConfig;

use crate::app::ports::Presigner;
use crate::error::{Error, Result};

#[derive(Clone)]
pub struct S3Presigner {
    client: aws_sdk_s3::Client,
}

impl S3Presigner {
    pub fn new(client: aws_sdk_s3::Client) -> S3Presigner {
        S3Presigner { client }
    }
}

impl Presigner for S3Presigner {
    async fn presign_get(&self, bucket: &str, key: &str, expires: Duration) -> Result<String> {
        let config = PresigningConfig::expires_in(expires)
            .map_err(|e| Error::Config(format!("presigned URL expiry: {e}")))?;
        let request = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .presigned(config)
            .await
            .map_err(|e| Error::sink_from("presigning GetObject", e))?;
        Ok(request.uri().to_owned())
    }
}
