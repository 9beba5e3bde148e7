//! AWS SDK clients, set up once at cold start. Emulators are reached through the standard
//! `AWS_ENDPOINT_URL` variables; S3 then needs path-style addressing.

use aws_config::{BehaviorVersion, SdkConfig};

pub async fn load_sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
}

pub fn dynamodb_client(sdk: &SdkConfig) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(sdk)
}

/// Path-style addressing and checksums only when required whenever an endpoint is
/// overridden (emulators); the SDK's defaults otherwise.
pub fn s3_client(sdk: &SdkConfig) -> aws_sdk_s3::Client {
    let mut builder = aws_sdk_s3::config::Builder::from(sdk);
    if sdk.endpoint_url().is_some() || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some() {
        builder = builder.force_path_style(true).request_checksum_calculation(
            aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
        );
    }
    aws_sdk_s3::Client::from_conf(builder.build())
}

pub fn eventbridge_client(sdk: &SdkConfig) -> aws_sdk_eventbridge::Client {
    aws_sdk_eventbridge::Client::new(sdk)
}

pub fn secrets_client(sdk: &SdkConfig) -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::new(sdk)
}
