//! The object sink: writes a stream into S3 without ever holding the whole file (see
//! [`S3SinkOptions`] for the memory this takes). When the source announced the body's length
//! (a Content-Length it is held to) and it is over 256 KiB, the bytes go up while they are read,
//! each request fed chunk by chunk (the chunks are the download's own buffers, never copied): up
//! to `single_put_max` as one PutObject, whose last bytes S3 gets only once the body is known to
//! end there (so that a body short, long or refused creates nothing); anything larger as a
//! multipart upload, created at once, whose parts go up several at once while the download goes
//! on being read, hashed and counted in order. A smaller body, or one without a length that
//! fits one part, is read whole and sent in one PutObject; a larger one without a length goes
//! up in parts, each read whole first since only then is its length known. A failed request is
//! retried on its own by the SDK, which sends its body again from its start; once a part fails
//! for good the whole upload is aborted, after every part still in flight has been stopped, so
//! that no parts are left behind.
//!
//! Every object carries its SHA-256 as the tag `sha256` (and, when it was read whole before its
//! PutObject, as `x-amz-meta-sha256` too): an object sent while it is read fixes its metadata
//! before the hash is known, and rewriting metadata afterwards would copy it server side, so
//! its tag goes on once it exists ([`ObjectSink::tag`]).
//!
//! Bodies are sent with an unsigned payload (`UNSIGNED-PAYLOAD`): with the SDK's default
//! checksums, which the sink gets in AWS, that is what the SDK sends anyway (a CRC32 trailer
//! protects the bytes, TLS the rest); only the emulators' configuration (checksums when
//! required) would otherwise SHA-256 every part a second time just to sign it.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Tag, Tagging};
use aws_smithy_types::body::SdkBody;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio::task::{JoinError, JoinSet};
use tokio::time::Instant;
use tracing::warn;

use crate::app::ports::{ChunkSource, ObjectSink, ObjectSpec, Written};
use crate::error::{Error, Result};

/// Default part size of multipart uploads, and the largest body of unknown length sent as one
/// PutObject.
pub const PART_SIZE: usize = 8 * 1024 * 1024;
/// Default largest body of announced length sent as one PutObject: AWS's transfer managers
/// switch to multipart at 16 MiB too, since below it a multipart upload's two extra round trips
/// (create, complete) cost more than its parallel parts save.
pub const SINGLE_PUT_MAX: usize = 16 * 1024 * 1024;
/// A body of announced length up to this is read whole before its PutObject, so that the
/// request carries its hash too: waiting for so few bytes costs less than the tag's request.
pub const READ_WHOLE_MAX: usize = 256 * 1024;
/// Default number of parts uploading at once (benchmarked in docs/benchmarks.md: 4 reached
/// moto's ceiling, more added memory and nothing else).
pub const DEFAULT_PARTS_IN_FLIGHT: usize = 4;
/// S3's smallest part (but the last) and largest part.
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;
pub const MAX_PART_SIZE: usize = 5 * 1024 * 1024 * 1024;
/// More parts in flight than this buys nothing but memory.
pub const MAX_PARTS_IN_FLIGHT: usize = 64;
/// S3's limit on the parts of one upload.
const MAX_PARTS: i32 = 10_000;
/// The part size doubles after every this many parts, so that 10,000 parts hold far more than
/// S3's largest object (5 TiB): with 8 MiB parts, the first 7.8 GiB go up in 8 MiB parts.
const PARTS_PER_SIZE: i32 = 1_000;
/// The object tag (and metadata key) that holds the hex SHA-256 of the stored bytes.
const SHA256_TAG: &str = "sha256";
/// Cleaning up must not depend on the time budget that has just run out.
const ABORT_TIMEOUT: Duration = Duration::from_secs(10);

/// How the sink cuts a body into parts and how many it sends at once.
///
/// Memory: the parts the sink holds never exceed `(parts_in_flight + 1) x part_size` bytes, 40
/// MiB with the defaults: with the body's length announced, `parts_in_flight` parts, the one
/// being read among them (32 MiB); otherwise that many uploading and the next being read.
/// Parts grow past `part_size` only for files larger than 1,000 parts (7.8 GiB with 8 MiB
/// parts): they double every 1,000 parts, and fewer of them go up at once so that the bound
/// still holds; only once a single part is over the bound may the sink hold it alone (or two of
/// them, one uploading while the next is read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct S3SinkOptions {
    /// Bytes per part; also the largest body of unknown length sent as one PutObject. Kept
    /// within S3's limits (5 MiB to 5 GiB).
    pub part_size: usize,
    /// Parts uploading at once while the next one is read (1 to 64).
    pub parts_in_flight: usize,
    /// The largest body of announced length sent as one PutObject (held whole until S3 has
    /// it, for the SDK's retries): kept within the memory bound.
    pub single_put_max: usize,
}

impl Default for S3SinkOptions {
    fn default() -> Self {
        S3SinkOptions {
            part_size: PART_SIZE,
            parts_in_flight: DEFAULT_PARTS_IN_FLIGHT,
            single_put_max: SINGLE_PUT_MAX,
        }
    }
}

impl S3SinkOptions {
    /// The same, moved within S3's limits and the sink's.
    pub fn clamped(self) -> S3SinkOptions {
        let part_size = self.part_size.clamp(MIN_PART_SIZE, MAX_PART_SIZE);
        let parts_in_flight = self.parts_in_flight.clamp(1, MAX_PARTS_IN_FLIGHT);
        let bound = (parts_in_flight + 1).saturating_mul(part_size);
        S3SinkOptions {
            part_size,
            parts_in_flight,
            single_put_max: self.single_put_max.min(bound).min(MAX_PART_SIZE),
        }
    }

    /// The most bytes of parts the sink holds at once while parts keep their first size.
    pub fn memory_bound(&self) -> usize {
        let options = self.clamped();
        (options.parts_in_flight + 1) * options.part_size
    }

    fn plan(&self) -> PartPlan {
        let options = self.clamped();
        PartPlan {
            base: options.part_size,
            max: MAX_PART_SIZE.max(options.part_size),
            in_flight: options.parts_in_flight,
            parts_per_size: PARTS_PER_SIZE,
        }
    }
}

/// Part sizes and the memory bound of one upload.
#[derive(Debug, Clone, Copy)]
struct PartPlan {
    base: usize,
    max: usize,
    in_flight: usize,
    parts_per_size: i32,
}

impl PartPlan {
    /// The size of part `number` (from 1).
    fn size_of(&self, number: i32) -> usize {
        let doublings = ((number.max(1) - 1) / self.parts_per_size).clamp(0, 20) as u32;
        self.base.saturating_mul(1 << doublings).min(self.max)
    }

    /// The bytes that may be held while a part of `size` is read: the parts uploading and it.
    fn budget_for(&self, size: usize) -> usize {
        ((self.in_flight + 1) * self.base).max(2 * size)
    }

    /// The bytes that may be held, a part of `size` included, when parts go up as they are
    /// read: as many parts as may be in flight, or this one alone once it is larger.
    fn streamed_budget(&self, size: usize) -> usize {
        (self.in_flight * self.base).max(size)
    }
}

#[derive(Clone)]
pub struct S3Sink {
    client: Client,
    bucket: String,
    options: S3SinkOptions,
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
            tagged: true,
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
        let plan = self.options.plan();
        let first_size = plan.size_of(1);
        let announced = body.announced_len();
        let mut reader = PartReader::new(body);
        match announced {
            Some(total) if total <= READ_WHOLE_MAX as u64 => {
                let whole = PartFill::default();
                within(stop, reader.fill_to_verified_end(&whole, total)).await?;
                let sha256 = reader.sha256_hex();
                let etag = within(stop, self.put_single(spec, &whole, &sha256)).await?;
                return Ok(Written {
                    etag,
                    size: total,
                    sha256,
                    tagged: true,
                });
            }
            Some(total) if total <= self.options.single_put_max as u64 => {
                return self.put_streamed(spec, total, &mut reader, stop).await;
            }
            // Cut at known lengths: the upload is created at once and every part goes up
            // while it is being read.
            Some(total) => {
                let started = self.start_upload(spec);
                let cut = Cut::Announced(total);
                return self
                    .upload_in_parts(spec, started, plan, cut, None, &mut reader, stop)
                    .await;
            }
            None => {}
        }
        let first = PartFill::default();
        let last = within(stop, reader.fill(&first, first_size, true)).await?;
        first.end(FillState::Complete);
        if last {
            let sha256 = reader.sha256_hex();
            let size = first.len() as u64;
            let etag = within(stop, self.put_single(spec, &first, &sha256)).await?;
            return Ok(Written {
                etag,
                size,
                sha256,
                tagged: true,
            });
        }
        // More follows: the upload is created while the second part is read.
        let started = self.start_upload(spec);
        self.upload_in_parts(
            spec,
            started,
            plan,
            Cut::AsRead,
            Some(first),
            &mut reader,
            stop,
        )
        .await
    }

    async fn tag(&self, key: &str, sha256: &str) -> Result<()> {
        self.tag_sha256(key, sha256).await
    }
}

/// The upload's id as its parts wait for it (an error's text if it could not be created).
type UploadId = watch::Receiver<Option<std::result::Result<String, String>>>;
/// An upload being created in its own task, so that the parts it wakes start at once rather
/// than once the task reading the body yields; and the id its parts wait for.
type StartedUpload = (AbortOnDrop<Result<String>>, UploadId);

impl S3Sink {
    fn start_upload(&self, spec: &ObjectSpec) -> StartedUpload {
        let (id_sender, upload_id) = watch::channel(None);
        let (sink, spec) = (self.clone(), spec.clone());
        let create = AbortOnDrop(tokio::spawn(async move {
            let created = sink.create_upload(&spec).await;
            let shared = created
                .as_ref()
                .map(Clone::clone)
                .map_err(ToString::to_string);
            let _ = id_sender.send(Some(shared));
            created
        }));
        (create, upload_id)
    }

    /// The multipart upload of the body: its parts (`first` already read, if any), then its
    /// completion once the body has been read to its verified end. Whatever fails, or past
    /// `stop`, every part still uploading is stopped, and seen to have stopped, and the upload
    /// aborted, so that no parts are left behind.
    #[allow(clippy::too_many_arguments)]
    async fn upload_in_parts<C: ChunkSource>(
        &self,
        spec: &ObjectSpec,
        (mut create, upload_id): StartedUpload,
        plan: PartPlan,
        cut: Cut,
        first: Option<PartFill>,
        reader: &mut PartReader<'_, C>,
        stop: Option<Instant>,
    ) -> Result<Written> {
        let create = async {
            (&mut create.0)
                .await
                .map_err(|e| Error::sink(format!("CreateMultipartUpload stopped: {e}")))?
        };
        // Owned here rather than by the timed future, so that it can be emptied after it.
        let mut uploads = JoinSet::new();
        let parts = within(
            stop,
            self.upload_parts(spec, upload_id, plan, cut, first, reader, &mut uploads),
        );
        let (created, parts) = tokio::join!(create, parts);
        let upload_id = match created {
            Ok(upload_id) => upload_id,
            Err(err) => {
                uploads.abort_all();
                while uploads.join_next().await.is_some() {}
                return Err(err);
            }
        };
        let result = match parts {
            Ok(parts) => {
                let (sha256, size) = (reader.sha256_hex(), reader.size);
                within(stop, self.complete(spec, &upload_id, parts, sha256, size)).await
            }
            Err(err) => Err(err),
        };
        if result.is_err() {
            uploads.abort_all();
            while uploads.join_next().await.is_some() {}
            self.abort(spec, &upload_id).await;
        }
        result
    }

    /// A sink with the default part size and parts in flight.
    pub fn new(client: Client, bucket: impl Into<String>) -> S3Sink {
        S3Sink {
            client,
            bucket: bucket.into(),
            options: S3SinkOptions::default(),
        }
    }

    /// The same sink with other part settings (kept within S3's limits).
    pub fn with_options(mut self, options: S3SinkOptions) -> S3Sink {
        self.options = options.clamped();
        self
    }

    pub fn options(&self) -> S3SinkOptions {
        self.options
    }

    /// A PutObject of `spec` whose `len` bytes are those of `body`.
    fn put_request(
        &self,
        spec: &ObjectSpec,
        body: &PartFill,
        len: usize,
    ) -> PutObjectFluentBuilder {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&spec.key)
            .content_type(&spec.content_type)
            .content_length(len as i64)
            .body(body.body(len))
    }

    async fn put_single(&self, spec: &ObjectSpec, body: &PartFill, sha256: &str) -> Result<String> {
        let out = self
            .put_request(spec, body, body.len())
            .set_metadata(Some(with_sha256(spec, sha256)))
            .tagging(format!("{SHA256_TAG}={sha256}"))
            .customize()
            .disable_payload_signing()
            .send()
            .await
            .map_err(|e| Error::sink_from("PutObject", e))?;
        Ok(out.e_tag().unwrap_or_default().to_owned())
    }

    /// One PutObject of a body announced at `total` bytes, sent while it is read. Its last
    /// chunk is held back until the body has reached its verified end: S3 creates the object
    /// only once it has every announced byte, so a body that fails, falls short, goes on past
    /// its length or is refused by its source's gate leaves nothing behind. Tagged afterwards.
    async fn put_streamed<C: ChunkSource>(
        &self,
        spec: &ObjectSpec,
        total: u64,
        reader: &mut PartReader<'_, C>,
        stop: Option<Instant>,
    ) -> Result<Written> {
        let fill = PartFill::default();
        let request = self
            .put_request(spec, &fill, total as usize)
            .set_metadata(Some(spec.metadata.clone()))
            .customize()
            .disable_payload_signing();
        let mut put = AbortOnDrop(tokio::spawn(request.send()));
        let sent = |joined: std::result::Result<_, JoinError>| match joined {
            Ok(Ok(out)) => Ok::<_, Error>(out),
            Ok(Err(err)) => Err(Error::sink_from("PutObject", err)),
            Err(err) => Err(Error::sink(format!("PutObject stopped: {err}"))),
        };
        let read = {
            let read = within(stop, reader.fill_to_verified_end(&fill, total));
            tokio::pin!(read);
            tokio::select! {
                read = &mut read => read,
                // S3 answered before it had every byte: only an error can come that early.
                joined = &mut put.0 => {
                    fill.fail();
                    sent(joined)?;
                    return Err(Error::sink("PutObject answered before its body was sent"));
                }
            }
        };
        if let Err(err) = read {
            // Dropping the request (with its last chunk unsent) ends it without an object.
            fill.fail();
            return Err(err);
        }
        // S3 takes the object in meanwhile: the hash costs the copy no time.
        let sha256 = reader.sha256_hex();
        let out = within(stop, async { sent((&mut put.0).await) }).await?;
        Ok(Written {
            etag: out.e_tag().unwrap_or_default().to_owned(),
            size: total,
            sha256,
            tagged: false,
        })
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

    /// Every part of the body, `first` already read, each sent once the upload's id is in.
    #[allow(clippy::too_many_arguments)]
    async fn upload_parts<C: ChunkSource>(
        &self,
        spec: &ObjectSpec,
        upload_id: UploadId,
        plan: PartPlan,
        cut: Cut,
        first: Option<PartFill>,
        reader: &mut PartReader<'_, C>,
        uploads: &mut JoinSet<Result<UploadedPart>>,
    ) -> Result<Vec<UploadedPart>> {
        let send = |number: i32, body: PartFill, len: usize| {
            let (client, bucket, key) =
                (self.client.clone(), self.bucket.clone(), spec.key.clone());
            let mut upload_id = upload_id.clone();
            async move {
                let id = upload_id
                    .wait_for(Option::is_some)
                    .await
                    .ok()
                    .and_then(|id| id.clone());
                match id {
                    Some(Ok(id)) => upload_part(client, bucket, key, id, number, body, len).await,
                    Some(Err(err)) => Err(Error::sink(format!("UploadPart {number}: {err}"))),
                    None => Err(Error::sink(format!("UploadPart {number}: no upload id"))),
                }
            }
        };
        pipeline(plan, reader, cut, first, uploads, send).await
    }

    /// Completes the upload from its parts; the object is tagged with its SHA-256 afterwards
    /// ([`ObjectSink::tag`]), beside the STORED write.
    async fn complete(
        &self,
        spec: &ObjectSpec,
        upload_id: &str,
        parts: Vec<UploadedPart>,
        sha256: String,
        size: u64,
    ) -> Result<Written> {
        let completed = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&spec.key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts.into_iter().map(completed).collect()))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| Error::sink_from("CompleteMultipartUpload", e))?;
        Ok(Written {
            etag: completed.e_tag().unwrap_or_default().to_owned(),
            size,
            sha256,
            tagged: false,
        })
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

    /// Aborts the upload; every part request of ours has ended by now. S3 may still finish a
    /// part whose request it had already read in full, so its parts are listed afterwards and
    /// the abort repeated while any are left (the upload is gone once nothing remains).
    async fn abort(&self, spec: &ObjectSpec, upload_id: &str) {
        for _ in 0..3 {
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
                    let service = err.into_service_error();
                    if service.is_no_such_upload() {
                        return;
                    }
                    warn!(key = %spec.key, error = %aws_sdk_s3::error::DisplayErrorContext(&service), "abort of multipart upload failed");
                }
                Err(_) => warn!(key = %spec.key, "abort of multipart upload timed out"),
            }
            let listed = self
                .client
                .list_parts()
                .bucket(&self.bucket)
                .key(&spec.key)
                .upload_id(upload_id)
                .send();
            match tokio::time::timeout(ABORT_TIMEOUT, listed).await {
                Ok(Ok(out)) if out.parts().is_empty() => return,
                Ok(Ok(_)) => {}
                Ok(Err(err)) => {
                    if err.as_service_error().and_then(|e| e.code()) == Some("NoSuchUpload") {
                        return;
                    }
                }
                Err(_) => {}
            }
        }
        warn!(key = %spec.key, upload_id, "multipart upload may still hold parts after 3 aborts");
    }
}

/// Aborts a spawned task that is dropped before it ends.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One part that S3 has.
#[derive(Debug, Clone, PartialEq, Eq)]
struct UploadedPart {
    number: i32,
    etag: String,
    len: usize,
}

/// One UploadPart of `len` bytes, sent while `body` is still being read if it is; retried by
/// the SDK on its own (each retry sends the part again from its start) before it fails.
async fn upload_part(
    client: Client,
    bucket: String,
    key: String,
    upload_id: String,
    number: i32,
    body: PartFill,
    len: usize,
) -> Result<UploadedPart> {
    let out = client
        .upload_part()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .part_number(number)
        .content_length(len as i64)
        .body(body.body(len))
        .customize()
        .disable_payload_signing()
        .send()
        .await
        .map_err(|e| Error::sink_from(&format!("UploadPart {number}"), e))?;
    Ok(UploadedPart {
        number,
        etag: out.e_tag().unwrap_or_default().to_owned(),
        len,
    })
}

/// How a multipart body is cut into parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// At lengths known from the start (the body's announced length, which it is held to):
    /// each part goes up while it is read, and counts among the parts in flight from then.
    Announced(u64),
    /// As the body comes: each part is read whole, then sent (only then is its length known),
    /// while the next one is read.
    AsRead,
}

/// Reads parts in order and hands each to `send` (with its length) with up to
/// `plan.in_flight` uploading at once: with lengths announced, as soon as it starts being read;
/// otherwise once it is read, and only once the parts uploading with it leave room in the
/// memory bound for reading the next. Parts already read come first (`first`). The first part
/// that fails ends it (the caller stops the others). Returns the parts in order.
async fn pipeline<C, F, Fut>(
    plan: PartPlan,
    reader: &mut PartReader<'_, C>,
    cut: Cut,
    mut first: Option<PartFill>,
    uploads: &mut JoinSet<Result<UploadedPart>>,
    send: F,
) -> Result<Vec<UploadedPart>>
where
    C: ChunkSource,
    F: Fn(i32, PartFill, usize) -> Fut,
    Fut: Future<Output = Result<UploadedPart>> + Send + 'static,
{
    let mut parts = Parts::default();
    let mut number = 0;
    loop {
        let size = plan.size_of(number + 1);
        let (fill, last) = match cut {
            Cut::Announced(total) => {
                let left = total.saturating_sub(reader.size);
                if left == 0 {
                    break;
                }
                let len = left.min(size as u64) as usize;
                parts
                    .make_room(uploads, plan.streamed_budget(len) - len)
                    .await?;
                let fill = PartFill::default();
                parts.held += len;
                number = next_number(number, &plan)?;
                uploads.spawn(send(number, fill.clone(), len));
                let filled = read_beside(&mut parts, uploads, reader.fill(&fill, len, false)).await;
                if let Err(err) = filled {
                    fill.fail();
                    return Err(err);
                }
                if fill.len() < len {
                    fill.fail();
                    return Err(ended_short(reader.size, total));
                }
                fill.end(FillState::Complete);
                reader.hash_read();
                if left > len as u64 {
                    continue;
                }
                // Held to its announced length: nothing may follow it.
                if read_beside(&mut parts, uploads, reader.at_end()).await? {
                    break;
                }
                return Err(went_on(total));
            }
            Cut::AsRead => match first.take() {
                Some(fill) => (fill, false),
                None => {
                    let fill = PartFill::default();
                    let last = read_beside(&mut parts, uploads, reader.fill(&fill, size, true));
                    let last = last.await?;
                    fill.end(FillState::Complete);
                    (fill, last)
                }
            },
        };
        if fill.is_empty() {
            // Only a first part can be empty (the reader sees the end with the part before
            // it), but an empty part must never go up.
            break;
        }
        let len = fill.len();
        let next_size = plan.size_of(number + 2);
        parts
            .make_room(
                uploads,
                plan.budget_for(next_size).saturating_sub(next_size + len),
            )
            .await?;
        parts.held += len;
        number = next_number(number, &plan)?;
        uploads.spawn(send(number, fill, len));
        // Lets the part's task start its request before this one hashes and reads on.
        tokio::task::yield_now().await;
        reader.hash_read();
        if last {
            break;
        }
    }
    while let Some(joined) = uploads.join_next().await {
        parts.settle(joined)?;
    }
    parts.done.sort_by_key(|part| part.number);
    Ok(parts.done)
}

fn next_number(number: i32, plan: &PartPlan) -> Result<i32> {
    if number >= MAX_PARTS {
        return Err(Error::SourcePermanent(format!(
            "more than {MAX_PARTS} parts of up to {} bytes",
            plan.size_of(MAX_PARTS)
        )));
    }
    Ok(number + 1)
}

/// Reads while the parts upload; a part that fails meanwhile ends the upload at once rather
/// than after the read.
async fn read_beside<T>(
    parts: &mut Parts,
    uploads: &mut JoinSet<Result<UploadedPart>>,
    read: impl Future<Output = Result<T>>,
) -> Result<T> {
    tokio::pin!(read);
    loop {
        tokio::select! {
            biased;
            Some(joined) = uploads.join_next() => parts.settle(joined)?,
            read = &mut read => return read,
        }
    }
}

/// The pipeline's books: parts done, and the bytes of the parts not yet done.
#[derive(Default)]
struct Parts {
    done: Vec<UploadedPart>,
    held: usize,
}

impl Parts {
    fn settle(
        &mut self,
        joined: std::result::Result<Result<UploadedPart>, JoinError>,
    ) -> Result<()> {
        let part = joined.map_err(|e| Error::sink(format!("part upload stopped: {e}")))??;
        self.held = self.held.saturating_sub(part.len);
        self.done.push(part);
        Ok(())
    }

    /// Waits for parts to finish until at most `room` bytes are held (or none are).
    async fn make_room(
        &mut self,
        uploads: &mut JoinSet<Result<UploadedPart>>,
        room: usize,
    ) -> Result<()> {
        while self.held > room {
            match uploads.join_next().await {
                Some(joined) => self.settle(joined)?,
                None => break,
            }
        }
        Ok(())
    }
}

/// A part's bytes as the body is read: filled by the reader, sent by its UploadPart (and sent
/// again from its start by each retry of it), dropped with the request once the part is done.
/// The chunks are the source's own buffers: nothing is copied.
#[derive(Clone, Default)]
struct PartFill(Arc<Mutex<Fill>>);

#[derive(Default)]
struct Fill {
    chunks: Vec<Bytes>,
    len: usize,
    state: FillState,
    /// The request bodies waiting for more.
    waiting: Vec<Waker>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum FillState {
    #[default]
    Filling,
    Complete,
    /// The body failed before the part was whole: its request must fail, not wait.
    Failed,
}

impl PartFill {
    fn lock(&self) -> MutexGuard<'_, Fill> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, chunk: Bytes) {
        let mut fill = self.lock();
        fill.len += chunk.len();
        fill.chunks.push(chunk);
        fill.waiting.drain(..).for_each(Waker::wake);
    }

    fn end(&self, state: FillState) {
        let mut fill = self.lock();
        fill.state = state;
        fill.waiting.drain(..).for_each(Waker::wake);
    }

    fn fail(&self) {
        self.end(FillState::Failed);
    }

    fn len(&self) -> usize {
        self.lock().len
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A request body of the part's `len` bytes, which the SDK can rebuild for a retry.
    fn body(&self, len: usize) -> ByteStream {
        let fill = self.clone();
        ByteStream::new(SdkBody::retryable(move || {
            SdkBody::from_body_1_x(FillBody {
                fill: fill.clone(),
                next: 0,
                len: len as u64,
            })
        }))
    }
}

/// One sending of a part: its chunks from the first, waiting for those not read yet.
struct FillBody {
    fill: PartFill,
    next: usize,
    len: u64,
}

impl http_body::Body for FillBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, Error>>> {
        let this = self.get_mut();
        let mut fill = this.fill.lock();
        if let Some(chunk) = fill.chunks.get(this.next).cloned() {
            this.next += 1;
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        match fill.state {
            FillState::Complete => Poll::Ready(None),
            FillState::Failed => Poll::Ready(Some(Err(Error::source(
                "the source failed before the part was whole",
            )))),
            FillState::Filling => {
                fill.waiting.push(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len)
    }
}

/// Cuts a body into parts, hashing and counting as it goes.
struct PartReader<'a, C> {
    body: &'a mut C,
    carry: Option<Bytes>,
    ended: bool,
    hasher: Sha256,
    /// Chunks read but not hashed yet: a part's bytes go out first, and are hashed while S3
    /// takes them in.
    unhashed: Vec<Bytes>,
    size: u64,
}

impl<'a, C: ChunkSource> PartReader<'a, C> {
    fn new(body: &'a mut C) -> Self {
        PartReader {
            body,
            carry: None,
            ended: false,
            hasher: Sha256::new(),
            unhashed: Vec::new(),
            size: 0,
        }
    }

    /// Reads the next part of at most `size` bytes (fewer only at the end of the body) into
    /// `fill`, chunk by chunk as they come; the caller completes it (or fails it, if it is
    /// short of a length it was announced with). With `peek`, reads one chunk
    /// past a full part, so that a body of exactly whole parts is known to be complete.
    /// Returns whether the body has ended.
    async fn fill(&mut self, fill: &PartFill, size: usize, peek: bool) -> Result<bool> {
        let mut filled = 0;
        while filled < size {
            let mut chunk = match self.take_chunk().await? {
                Some(chunk) => chunk,
                None => break,
            };
            let room = size - filled;
            if chunk.len() > room {
                self.carry = Some(chunk.split_off(room));
            }
            filled += chunk.len();
            self.unhashed.push(chunk.clone());
            self.size += chunk.len() as u64;
            fill.push(chunk);
        }
        if peek && self.carry.is_none() && !self.ended {
            self.carry = self.take_chunk().await?;
        }
        Ok(self.carry.is_none() && self.ended)
    }

    /// Reads a whole body announced at `total` bytes into `fill`, every chunk as it comes but
    /// the last, which goes in only once the body is known to end there: a request sending
    /// `fill` cannot complete before then. The caller fails `fill` if this fails, and hashes
    /// the body afterwards, while S3 stores it.
    async fn fill_to_verified_end(&mut self, fill: &PartFill, total: u64) -> Result<()> {
        let mut held: Option<Bytes> = None;
        while self.size < total {
            let Some(mut chunk) = self.take_chunk().await? else {
                return Err(ended_short(self.size, total));
            };
            let room = total - self.size;
            if chunk.len() as u64 > room {
                self.carry = Some(chunk.split_off(room as usize));
            }
            self.size += chunk.len() as u64;
            self.unhashed.push(chunk.clone());
            if let Some(previous) = held.replace(chunk) {
                fill.push(previous);
            }
        }
        if !self.at_end().await? {
            return Err(went_on(total));
        }
        if let Some(last) = held {
            fill.push(last);
        }
        fill.end(FillState::Complete);
        Ok(())
    }

    /// Whether the body has reached its verified end, with nothing more to read.
    async fn at_end(&mut self) -> Result<bool> {
        if self.carry.is_none() && !self.ended {
            self.carry = self.take_chunk().await?;
        }
        Ok(self.carry.is_none())
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

    /// Hashes what was read since the last call, in order.
    fn hash_read(&mut self) {
        for chunk in self.unhashed.drain(..) {
            self.hasher.update(&chunk);
        }
    }

    fn sha256_hex(&mut self) -> String {
        self.hash_read();
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

fn ended_short(read: u64, total: u64) -> Error {
    Error::source(format!(
        "the body ended after {read} of its {total} announced bytes"
    ))
}

fn went_on(total: u64) -> Error {
    Error::source(format!("the body goes on past its {total} announced bytes"))
}

fn completed(part: UploadedPart) -> CompletedPart {
    CompletedPart::builder()
        .part_number(part.number)
        .e_tag(part.etag)
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
    struct Chunks(std::collections::VecDeque<Bytes>);

    impl Chunks {
        fn of(chunk_sizes: &[usize]) -> Chunks {
            Chunks(
                chunk_sizes
                    .iter()
                    .enumerate()
                    .map(|(i, n)| Bytes::from(vec![i as u8; *n]))
                    .collect(),
            )
        }
    }

    impl ChunkSource for Chunks {
        async fn next_chunk(&mut self) -> Result<Option<Bytes>> {
            Ok(self.0.pop_front())
        }
    }

    async fn cut(chunk_sizes: &[usize]) -> Vec<(usize, bool)> {
        let mut body = Chunks::of(chunk_sizes);
        let mut reader = PartReader::new(&mut body);
        let mut parts = Vec::new();
        loop {
            let part = PartFill::default();
            let last = reader
                .fill(&part, PART_SIZE, true)
                .await
                .expect("in-memory body");
            part.end(FillState::Complete);
            parts.push((part.len(), last));
            if last {
                return parts;
            }
        }
    }

    /// The bytes a request body sends, read through the SDK's own body type.
    async fn sent(body: ByteStream) -> Vec<u8> {
        body.collect().await.expect("the part's body").to_vec()
    }

    #[tokio::test]
    async fn a_part_is_sent_while_it_is_read_and_again_from_its_start_on_a_retry() {
        let fill = PartFill::default();
        let first_try = tokio::spawn(sent(fill.body(6)));
        fill.push(Bytes::from_static(b"abc"));
        tokio::task::yield_now().await;
        assert!(
            !first_try.is_finished(),
            "it waits for the rest of the part"
        );
        fill.push(Bytes::from_static(b"def"));
        fill.end(FillState::Complete);
        assert_eq!(first_try.await.expect("task"), b"abcdef");
        assert_eq!(
            sent(fill.body(6)).await,
            b"abcdef",
            "a retry sends it whole again"
        );

        let failed = PartFill::default();
        let sending = tokio::spawn(failed.body(6).collect());
        failed.push(Bytes::from_static(b"abc"));
        failed.fail();
        assert!(
            sending.await.expect("task").is_err(),
            "the request fails, not waits"
        );
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

    #[test]
    fn options_stay_within_s3_limits_and_parts_grow_to_hold_any_object() {
        let options = S3SinkOptions {
            part_size: 1,
            parts_in_flight: 0,
            single_put_max: usize::MAX,
        }
        .clamped();
        assert_eq!(
            (options.part_size, options.parts_in_flight),
            (MIN_PART_SIZE, 1)
        );
        // A single PutObject is held whole: never more than the memory bound.
        assert_eq!(options.single_put_max, 2 * MIN_PART_SIZE);
        let huge = S3SinkOptions {
            part_size: usize::MAX,
            parts_in_flight: usize::MAX,
            single_put_max: usize::MAX,
        }
        .clamped();
        assert_eq!(huge.part_size, MAX_PART_SIZE);
        assert_eq!(huge.parts_in_flight, MAX_PARTS_IN_FLIGHT);
        assert_eq!(huge.single_put_max, MAX_PART_SIZE);
        assert_eq!(S3SinkOptions::default().memory_bound(), 5 * PART_SIZE);
        assert_eq!(S3SinkOptions::default().clamped(), S3SinkOptions::default());

        for options in [
            S3SinkOptions::default(),
            S3SinkOptions {
                part_size: MIN_PART_SIZE,
                parts_in_flight: 1,
                single_put_max: 0,
            },
        ] {
            let plan = options.plan();
            assert_eq!(plan.size_of(1), options.part_size);
            assert_eq!(plan.size_of(1000), options.part_size);
            assert_eq!(plan.size_of(1001), 2 * options.part_size);
            let total: u64 = (1..=MAX_PARTS).map(|n| plan.size_of(n) as u64).sum();
            let max_object = 5 * 1024 * 1024 * 1024 * 1024_u64;
            assert!(
                total >= max_object * 97 / 100,
                "{options:?}: 10,000 parts hold {total} bytes"
            );
            assert!(plan.size_of(MAX_PARTS) <= MAX_PART_SIZE);
        }
    }

    /// What the fake uploads saw.
    #[derive(Default)]
    struct Seen {
        uploading: usize,
        bytes: usize,
        most_uploading: usize,
        /// Per part started: (number, its size, bytes uploading with it).
        started: Vec<(i32, usize, usize)>,
    }

    /// Runs the pipeline over `chunk_sizes`, cut as read or at their announced length, with
    /// uploads that read their whole part, take a little while, and fail for the part numbers
    /// in `failing`.
    async fn run(
        plan: PartPlan,
        chunk_sizes: &[usize],
        announced: Option<u64>,
        failing: &'static [i32],
    ) -> (Result<Vec<UploadedPart>>, Arc<Mutex<Seen>>, u64) {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let mut body = Chunks::of(chunk_sizes);
        let mut reader = PartReader::new(&mut body);
        let (cut, first) = match announced {
            Some(total) => (Cut::Announced(total), None),
            None => {
                let first = PartFill::default();
                let last = reader
                    .fill(&first, plan.size_of(1), true)
                    .await
                    .expect("body");
                first.end(FillState::Complete);
                assert!(!last, "a multipart body");
                (Cut::AsRead, Some(first))
            }
        };
        let mut uploads = JoinSet::new();
        let send = |number: i32, body: PartFill, len: usize| {
            let seen = seen.clone();
            async move {
                {
                    let mut seen = seen.lock().expect("lock");
                    seen.uploading += 1;
                    seen.bytes += len;
                    seen.most_uploading = seen.most_uploading.max(seen.uploading);
                    let bytes = seen.bytes;
                    seen.started.push((number, len, bytes));
                }
                let bytes = sent(body.body(len)).await;
                tokio::time::sleep(Duration::from_millis(2)).await;
                let mut seen = seen.lock().expect("lock");
                seen.uploading -= 1;
                seen.bytes -= len;
                if failing.contains(&number) || bytes.len() != len {
                    return Err(Error::sink(format!("part {number} failed")));
                }
                Ok(UploadedPart {
                    number,
                    etag: format!("etag-{number}"),
                    len,
                })
            }
        };
        let result = pipeline(plan, &mut reader, cut, first, &mut uploads, send).await;
        uploads.abort_all();
        while uploads.join_next().await.is_some() {}
        (result, seen, reader.size)
    }

    fn small_plan(in_flight: usize, parts_per_size: i32) -> PartPlan {
        PartPlan {
            base: 1000,
            max: 1 << 30,
            in_flight,
            parts_per_size,
        }
    }

    #[tokio::test]
    async fn parts_go_up_several_at_once_within_the_bound_and_complete_in_order() {
        let plan = small_plan(4, 1_000);
        let chunks = [333; 60]; // 19,980 bytes: 19 full parts and a short one
        for announced in [None, Some(19_980)] {
            let (parts, seen, size) = run(plan, &chunks, announced, &[]).await;
            let parts = parts.expect("all parts up");
            assert_eq!(size, 19_980);
            assert_eq!(
                parts.iter().map(|p| p.number).collect::<Vec<_>>(),
                (1..=20).collect::<Vec<_>>()
            );
            assert_eq!(parts.iter().map(|p| p.len).sum::<usize>(), 19_980);
            assert_eq!(parts[19].len, 980);
            let seen = seen.lock().expect("lock");
            assert_eq!(seen.most_uploading, 4, "4 parts in flight ({announced:?})");
            for (number, len, bytes) in &seen.started {
                let next = plan.size_of(number + 1);
                match announced {
                    // Read while it goes up: it and the parts with it are the bound's parts.
                    Some(_) => assert!(*bytes <= plan.streamed_budget(*len)),
                    // Read first: the parts uploading leave room to read the next.
                    None => assert!(
                        *bytes + next <= plan.budget_for(next),
                        "part {number} ({len} bytes): {bytes} bytes uploading leave no room"
                    ),
                }
            }
        }
    }

    #[tokio::test]
    async fn growing_parts_go_up_fewer_at_once_and_keep_the_bound() {
        // Parts of 1000 bytes, then 2000, 4000, 8000 (every 3 parts); 4 in flight: 5000 bytes.
        let plan = small_plan(4, 3);
        let chunks = [500; 100]; // 50,000 bytes
        for announced in [None, Some(50_000)] {
            let (parts, seen, size) = run(plan, &chunks, announced, &[]).await;
            let parts = parts.expect("all parts up");
            assert_eq!(size, 50_000);
            assert_eq!(parts.iter().map(|p| p.len).sum::<usize>(), 50_000);
            let sizes: Vec<usize> = parts.iter().map(|p| p.len).take(12).collect();
            assert_eq!(
                sizes,
                [
                    1000, 1000, 1000, 2000, 2000, 2000, 4000, 4000, 4000, 8000, 8000, 8000
                ]
            );
            let seen = seen.lock().expect("lock");
            for (number, len, bytes) in &seen.started {
                // Within the bound (5,000 bytes with the next part read beside them, 4,000 when
                // parts are read as they go up), or one part alone once it is larger.
                let next = plan.size_of(number + 1);
                match announced {
                    Some(_) => assert!(*bytes <= 4000.max(*len), "part {number}: {bytes}"),
                    None => assert!(*bytes + next <= 5000.max(2 * next), "part {number}"),
                }
            }
        }
    }

    #[tokio::test]
    async fn a_failed_part_ends_the_upload() {
        let plan = small_plan(3, 1_000);
        for announced in [None, Some(12_000)] {
            let (parts, _, _) = run(plan, &[1000; 12], announced, &[5]).await;
            let err = parts.expect_err("part 5 failed");
            assert!(err.to_string().contains("part 5 failed"), "{err}");
        }
    }

    #[tokio::test]
    async fn a_body_is_held_to_its_announced_length() {
        let plan = small_plan(3, 1_000);
        let (short, _, _) = run(plan, &[1000; 4], Some(4_500), &[]).await;
        let err = short.expect_err("500 bytes short");
        assert!(err.is_retryable(), "{err}");
        assert!(err.to_string().contains("4000 of its 4500"), "{err}");
        let (long, _, _) = run(plan, &[1000; 5], Some(4_500), &[]).await;
        let err = long.expect_err("500 bytes over");
        assert!(err.to_string().contains("past its 4500"), "{err}");
        let (exact, _, size) = run(plan, &[1000; 5], Some(5_000), &[]).await;
        assert_eq!((exact.expect("whole").len(), size), (5, 5_000));
    }
}
