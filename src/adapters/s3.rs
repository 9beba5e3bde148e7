//! The object sink: writes a stream into S3 without ever holding the whole file. A body that
//! fits one part goes up in one PutObject; anything larger is a multipart upload of 8 MiB parts
//! (the next part is read while the previous one uploads, so at most two are in memory),
//! aborted on any failure so that no parts are left behind.
//!
//! Every object carries its SHA-256 as the tag `sha256` (and, when it went up in one PutObject,
//! as `x-amz-meta-sha256` too): a multipart upload fixes its metadata before the hash is known,
//! and rewriting metadata afterwards would copy the whole object server side.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Tag, Tagging};
use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::time::Instant;
use tracing::warn;

use crate::app::ports::{ChunkSource, ObjectSink, ObjectSpec, Written};
use crate::error::{Error, Result};

/// Part size of multipart uploads, and the largest body sent as one PutObject.
pub const PART_SIZE: usize = 8 * 1024 * 1024;
/// S3's limit; with 8 MiB parts, 80 GiB, far above any sane `MAX_ASSET_BYTES`.
const MAX_PARTS: i32 = 10_000;
/// The object tag (and metadata key) that holds the hex SHA-256 of the stored bytes.
const SHA256_TAG: &str = "sha256";
/// Cleaning up must not depend on the time budget that has just run out.
const ABORT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct S3Sink {
    client: Client,
    bucket: String,
}

impl ObjectSink for S3Sink {
    fn bucket(&self) -> &str {
        &self.bucket
    }

    /// A complete earlier copy of `source_url` at `key`, if there is one: an attempt whose
    /// upload finished but whose STORED write-back was lost. The sink creates an object only
    /// once every byte of its body was verified (a PutObject sent after the end of the body, or
    /// a multipart upload completed after it), so an object whose `source-url` matches is
    /// complete. Its hash comes from its metadata or tag; if the tag write was what failed, the
    /// object is read back and hashed, which still uploads nothing twice.
    async fn existing(
        &self,
        key: &str,
        source_url: &str,
        stop: Option<Instant>,
    ) -> Result<Option<Written>> {
        let head = match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(head) => head,
            Err(err) => {
                let service = err.into_service_error();
                if service.is_not_found() {
                    return Ok(None);
                }
                return Err(Error::sink_from("HeadObject", service));
            }
        };
        let metadata = head.metadata();
        let meta = |name: &str| metadata.and_then(|m| m.get(name)).map(String::as_str);
        let (Some(size), Some(etag)) = (head.content_length(), head.e_tag()) else {
            return Ok(None);
        };
        if meta("source-url") != Some(source_url) || size < 0 {
            return Ok(None);
        }
        let sha256 = match meta(SHA256_TAG) {
            Some(sha256) => sha256.to_owned(),
            None => match self.sha256_tag(key).await? {
                Some(sha256) => sha256,
                None => {
                    let sha256 = within(stop, self.hash_object(key)).await?;
                    self.tag_sha256(key, &sha256).await?;
                    sha256
                }
            },
        };
        Ok(Some(Written {
            etag: etag.to_owned(),
            size: size as u64,
            sha256,
        }))
    }

    /// Streams `body` into `spec.key`. The object appears only once the body has been read to
    /// its verified end; past `stop`, the copy is abandoned and its upload aborted.
    async fn write(
        &self,
        spec: &ObjectSpec,
        body: &mut impl ChunkSource,
        stop: Option<Instant>,
    ) -> Result<Written> {
        let mut reader = PartReader::new(body);
        let (first, last) = within(stop, reader.next_part()).await?;
        if last {
            let sha256 = reader.sha256_hex();
            let size = first.len() as u64;
            let etag = within(stop, self.put_single(spec, first, &sha256)).await?;
            return Ok(Written { etag, size, sha256 });
        }
        let upload_id = self.create_upload(spec).await?;
        let result = within(
            stop,
            self.upload_parts(spec, &upload_id, first, &mut reader),
        )
        .await;
        if result.is_err() {
            self.abort(spec, &upload_id).await;
        }
        result
    }
}

impl S3Sink {
    pub fn new(client: Client, bucket: impl Into<String>) -> S3Sink {
        S3Sink {
            client,
            bucket: bucket.into(),
        }
    }

    async fn put_single(&self, spec: &ObjectSpec, body: Bytes, sha256: &str) -> Result<String> {
        let out = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&spec.key)
            .content_type(&spec.content_type)
            .content_length(body.len() as i64)
            .set_metadata(Some(with_sha256(spec, sha256)))
            .tagging(format!("{SHA256_TAG}={sha256}"))
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| Error::sink_from("PutObject", e))?;
        Ok(out.e_tag().unwrap_or_default().to_owned())
    }

    async fn create_upload(&self, spec: &ObjectSpec) -> Result<String> {
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(&spec.key)
            .content_type(&spec.content_type)
            .set_metadata(Some(spec.metadata.clone()))
            .send()
            .await
            .map_err(|e| Error::sink_from("CreateMultipartUpload", e))?;
        out.upload_id()
            .map(str::to_owned)
            .ok_or_else(|| Error::sink("CreateMultipartUpload returned no upload id"))
    }

    async fn upload_parts<C: ChunkSource>(
        &self,
        spec: &ObjectSpec,
        upload_id: &str,
        first: Bytes,
        reader: &mut PartReader<'_, C>,
    ) -> Result<Written> {
        let mut parts = Vec::new();
        let mut current = first;
        let mut number = 1;
        loop {
            // Reading the next part while this one uploads keeps both sides busy with at most
            // two parts in memory.
            let (etag, (next, last)) = tokio::try_join!(
                self.upload_part(spec, upload_id, number, current),
                reader.next_part()
            )?;
            parts.push(completed(number, etag));
            number += 1;
            if number > MAX_PARTS {
                return Err(Error::SourcePermanent(format!(
                    "more than {MAX_PARTS} parts of {PART_SIZE} bytes"
                )));
            }
            if last {
                if !next.is_empty() {
                    let etag = self.upload_part(spec, upload_id, number, next).await?;
                    parts.push(completed(number, etag));
                }
                break;
            }
            current = next;
        }
        let completed = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&spec.key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| Error::sink_from("CompleteMultipartUpload", e))?;
        let sha256 = reader.sha256_hex();
        self.tag_sha256(&spec.key, &sha256).await?;
        Ok(Written {
            etag: completed.e_tag().unwrap_or_default().to_owned(),
            size: reader.size,
            sha256,
        })
    }

    async fn upload_part(
        &self,
        spec: &ObjectSpec,
        upload_id: &str,
        number: i32,
        body: Bytes,
    ) -> Result<String> {
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(&spec.key)
            .upload_id(upload_id)
            .part_number(number)
            .content_length(body.len() as i64)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| Error::sink_from(&format!("UploadPart {number}"), e))?;
        Ok(out.e_tag().unwrap_or_default().to_owned())
    }

    async fn tag_sha256(&self, key: &str, sha256: &str) -> Result<()> {
        let tag = Tag::builder()
            .key(SHA256_TAG)
            .value(sha256)
            .build()
            .map_err(|e| Error::sink_from("sha256 tag", e))?;
        let tagging = Tagging::builder()
            .tag_set(tag)
            .build()
            .map_err(|e| Error::sink_from("sha256 tag", e))?;
        self.client
            .put_object_tagging()
            .bucket(&self.bucket)
            .key(key)
            .tagging(tagging)
            .send()
            .await
            .map_err(|e| Error::sink_from("PutObjectTagging", e))?;
        Ok(())
    }

    async fn sha256_tag(&self, key: &str) -> Result<Option<String>> {
        let out = self
            .client
            .get_object_tagging()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| Error::sink_from("GetObjectTagging", e))?;
        Ok(out
            .tag_set()
            .iter()
            .find(|tag| tag.key() == SHA256_TAG)
            .map(|tag| tag.value().to_owned()))
    }

    /// SHA-256 of the stored object, streamed back from S3.
    async fn hash_object(&self, key: &str) -> Result<String> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| Error::sink_from("GetObject", e))?;
        let mut body = out.body;
        let mut hasher = Sha256::new();
        while let Some(chunk) = body
            .try_next()
            .await
            .map_err(|e| Error::sink_from("GetObject body", e))?
        {
            hasher.update(&chunk);
        }
        Ok(hex::encode(hasher.finalize()))
    }

    async fn abort(&self, spec: &ObjectSpec, upload_id: &str) {
        let abort = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(&spec.key)
            .upload_id(upload_id)
            .send();
        match tokio::time::timeout(ABORT_TIMEOUT, abort).await {
            Ok(Ok(_)) => {}
            Ok(Err(err)) => {
                warn!(key = %spec.key, error = %aws_sdk_s3::error::DisplayErrorContext(&err), "abort of multipart upload failed")
            }
            Err(_) => warn!(key = %spec.key, "abort of multipart upload timed out"),
        }
    }
}

/// Cuts a body into parts, hashing and counting as it goes. Peeks one chunk past a full part
/// so that a body of exactly one part is known to be complete.
struct PartReader<'a, C> {
    body: &'a mut C,
    carry: Option<Bytes>,
    ended: bool,
    hasher: Sha256,
    size: u64,
}

impl<'a, C: ChunkSource> PartReader<'a, C> {
    fn new(body: &'a mut C) -> Self {
        PartReader {
            body,
            carry: None,
            ended: false,
            hasher: Sha256::new(),
            size: 0,
        }
    }

    /// The next part and whether it is the last one.
    async fn next_part(&mut self) -> Result<(Bytes, bool)> {
        let mut buf = Vec::with_capacity(PART_SIZE);
        while buf.len() < PART_SIZE {
            let mut chunk = match self.take_chunk().await? {
                Some(chunk) => chunk,
                None => break,
            };
            let room = PART_SIZE - buf.len();
            if chunk.len() > room {
                self.carry = Some(chunk.split_off(room));
            }
            buf.extend_from_slice(&chunk);
        }
        if self.carry.is_none() && !self.ended {
            self.carry = self.take_chunk().await?;
        }
        self.hasher.update(&buf);
        self.size += buf.len() as u64;
        Ok((Bytes::from(buf), self.carry.is_none()))
    }

    /// The next non-empty chunk, or `None` at the verified end of the body.
    async fn take_chunk(&mut self) -> Result<Option<Bytes>> {
        if let Some(chunk) = self.carry.take() {
            return Ok(Some(chunk));
        }
        while !self.ended {
            match self.body.next_chunk().await? {
                Some(chunk) if chunk.is_empty() => continue,
                Some(chunk) => return Ok(Some(chunk)),
                None => self.ended = true,
            }
        }
        Ok(None)
    }

    fn sha256_hex(&self) -> String {
        hex::encode(self.hasher.clone().finalize())
    }
}

async fn within<T>(stop: Option<Instant>, work: impl Future<Output = Result<T>>) -> Result<T> {
    match stop {
        None => work.await,
        Some(stop) => tokio::time::timeout_at(stop, work)
            .await
            .unwrap_or_else(|_| Err(Error::OutOfTime("time budget spent mid-copy".into()))),
    }
}

fn completed(number: i32, etag: String) -> CompletedPart {
    CompletedPart::builder()
        .part_number(number)
        .e_tag(etag)
        .build()
}

fn with_sha256(spec: &ObjectSpec, sha256: &str) -> HashMap<String, String> {
    let mut metadata = spec.metadata.clone();
    metadata.insert("sha256".into(), sha256.to_owned());
    metadata
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body of given chunks, for checking how parts are cut without any network.
    struct Chunks(Vec<Bytes>);

    impl ChunkSource for Chunks {
        async fn next_chunk(&mut self) -> Result<Option<Bytes>> {
            Ok(if self.0.is_empty() {
                None
            } else {
                Some(self.0.remove(0))
            })
        }
    }

    async fn cut(chunk_sizes: &[usize]) -> Vec<(usize, bool)> {
        let mut body = Chunks(
            chunk_sizes
                .iter()
                .map(|n| Bytes::from(vec![7u8; *n]))
                .collect(),
        );
        let mut reader = PartReader::new(&mut body);
        let mut parts = Vec::new();
        loop {
            let (part, last) = reader.next_part().await.expect("in-memory body");
            parts.push((part.len(), last));
            if last {
                return parts;
            }
        }
    }

    #[tokio::test]
    async fn parts_are_full_except_the_last_and_the_end_is_seen_early() {
        assert_eq!(cut(&[]).await, vec![(0, true)]);
        assert_eq!(cut(&[0, 1, 0]).await, vec![(1, true)]);
        assert_eq!(cut(&[PART_SIZE]).await, vec![(PART_SIZE, true)]);
        assert_eq!(
            cut(&[PART_SIZE / 2, PART_SIZE / 2, 0]).await,
            vec![(PART_SIZE, true)]
        );
        assert_eq!(
            cut(&[PART_SIZE - 1, 2, PART_SIZE]).await,
            vec![(PART_SIZE, false), (PART_SIZE, false), (1, true)]
        );
    }
}
