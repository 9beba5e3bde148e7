//! The object sink: writes a stream into S3 without ever holding the whole file. A body that
//! fits one part goes up in one PutObject; anything larger is a multipart upload whose parts go
//! up several at once while the download goes on being read, hashed and counted in order
//! (see [`S3SinkOptions`] for the memory this takes); the upload is created while the second
//! part is read, and the first part goes up as soon as it is. A failed part is retried on its own by
//! the SDK; once it fails for good the whole upload is aborted, after every part still in
//! flight has been stopped, so that no parts are left behind.
//!
//! Every object carries its SHA-256 as the tag `sha256` (and, when it went up in one PutObject,
//! as `x-amz-meta-sha256` too): a multipart upload fixes its metadata before the hash is known,
//! and rewriting metadata afterwards would copy the whole object server side.
//!
//! Bodies are sent with an unsigned payload (`UNSIGNED-PAYLOAD`): with the SDK's default
//! checksums, which the sink gets in AWS, that is what the SDK sends anyway (a CRC32 trailer
//! protects the bytes, TLS the rest); only the emulators' configuration (checksums when
//! required) would otherwise SHA-256 every part a second time just to sign it.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Tag, Tagging};
use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio::task::{JoinError, JoinSet};
use tokio::time::Instant;
use tracing::warn;

use crate::app::ports::{ChunkSource, ObjectSink, ObjectSpec, Written};
use crate::error::{Error, Result};

/// Default part size of multipart uploads, and the largest body sent as one PutObject.
pub const PART_SIZE: usize = 8 * 1024 * 1024;
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
/// Memory: the parts the sink holds (those uploading, and the one being read) never exceed
/// `(parts_in_flight + 1) x part_size` bytes, 40 MiB with the defaults. Parts grow past
/// `part_size` only for files larger than 1,000 parts (7.8 GiB with 8 MiB parts): they double
/// every 1,000 parts, and fewer of them go up at once so that the bound still holds; only once
/// a single part is over half the bound may the sink hold two of them (one uploading while the
/// next is read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct S3SinkOptions {
    /// Bytes per part; also the largest body sent as one PutObject. Kept within S3's limits
    /// (5 MiB to 5 GiB).
    pub part_size: usize,
    /// Parts uploading at once while the next one is read (1 to 64).
    pub parts_in_flight: usize,
}

impl Default for S3SinkOptions {
    fn default() -> Self {
        S3SinkOptions {
            part_size: PART_SIZE,
            parts_in_flight: DEFAULT_PARTS_IN_FLIGHT,
        }
    }
}

impl S3SinkOptions {
    /// The same, moved within S3's limits and the sink's.
    pub fn clamped(self) -> S3SinkOptions {
        S3SinkOptions {
            part_size: self.part_size.clamp(MIN_PART_SIZE, MAX_PART_SIZE),
            parts_in_flight: self.parts_in_flight.clamp(1, MAX_PARTS_IN_FLIGHT),
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
        // A body announced as longer than a part gets its upload created at once, while its
        // first part is read; any other once its first part is read and more follows.
        let announced = body.announced_len();
        let mut reader = PartReader::new(body);
        let mut created = announced
            .is_some_and(|len| len > first_size as u64)
            .then(|| self.start_upload(spec));
        let first = within(
            stop,
            reader.next_part(first_size, BytesMut::with_capacity(first_size)),
        )
        .await;
        let (first, last) = match first {
            Ok(first) => first,
            Err(err) => {
                if let Some(started) = created {
                    self.abort_started(spec, started).await;
                }
                return Err(err);
            }
        };
        if last {
            // The body fit one part after all (the source's check of its length is what
            // would have failed otherwise).
            if let Some(started) = created.take() {
                self.abort_started(spec, started).await;
            }
            let sha256 = reader.sha256_hex();
            let size = first.len() as u64;
            let etag = within(stop, self.put_single(spec, first, &sha256)).await?;
            return Ok(Written {
                etag,
                size,
                sha256,
                tagged: true,
            });
        }
        let (mut create, upload_id) = created.unwrap_or_else(|| self.start_upload(spec));
        let create = async {
            (&mut create.0)
                .await
                .map_err(|e| Error::sink(format!("CreateMultipartUpload stopped: {e}")))?
        };
        // Owned here rather than by the timed future, so that after a failure or past `stop`
        // every part still uploading is stopped, and seen to have stopped, before the abort.
        let mut uploads = JoinSet::new();
        let parts = within(
            stop,
            self.upload_parts(spec, upload_id, plan, first, &mut reader, &mut uploads),
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

    /// Aborts an upload started for a body that will not go up in parts after all.
    async fn abort_started(&self, spec: &ObjectSpec, (mut create, _): StartedUpload) {
        if let Ok(Ok(Ok(upload_id))) = tokio::time::timeout(ABORT_TIMEOUT, &mut create.0).await {
            self.abort(spec, &upload_id).await;
        }
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
            .customize()
            .disable_payload_signing()
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

    /// Every part of the body, `first` already read, each sent once the upload's id is in.
    async fn upload_parts<C: ChunkSource>(
        &self,
        spec: &ObjectSpec,
        upload_id: UploadId,
        plan: PartPlan,
        first: Bytes,
        reader: &mut PartReader<'_, C>,
        uploads: &mut JoinSet<Result<Sent>>,
    ) -> Result<Vec<UploadedPart>> {
        let send = |number: i32, body: Bytes| {
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
                    Some(Ok(id)) => upload_part(client, bucket, key, id, number, body).await,
                    Some(Err(err)) => Err(Error::sink(format!("UploadPart {number}: {err}"))),
                    None => Err(Error::sink(format!("UploadPart {number}: no upload id"))),
                }
            }
        };
        pipeline(plan, reader, vec![(first, false)], uploads, send).await
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

/// A part that went up, and its buffer back for the next part.
type Sent = (UploadedPart, Bytes);

/// One UploadPart, retried by the SDK on its own (its body is in memory) before it fails.
async fn upload_part(
    client: Client,
    bucket: String,
    key: String,
    upload_id: String,
    number: i32,
    body: Bytes,
) -> Result<Sent> {
    let len = body.len();
    let buffer = body.clone();
    let out = client
        .upload_part()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .part_number(number)
        .content_length(len as i64)
        .body(ByteStream::from(body))
        .customize()
        .disable_payload_signing()
        .send()
        .await
        .map_err(|e| Error::sink_from(&format!("UploadPart {number}"), e))?;
    let part = UploadedPart {
        number,
        etag: out.e_tag().unwrap_or_default().to_owned(),
        len,
    };
    Ok((part, buffer))
}

/// Reads parts in order and hands each to `send` as soon as it is read, with up to
/// `plan.in_flight` uploading at once while the next one is read: a part is sent only once the
/// parts uploading with it leave room in the memory bound for reading the next. Parts already
/// read come first (`ready`). The buffers of parts that went up are reused for the next parts,
/// so that the allocator never holds more than the bound either. The first part that fails
/// ends it (the caller stops the others). Returns the parts in order.
async fn pipeline<C, F, Fut>(
    plan: PartPlan,
    reader: &mut PartReader<'_, C>,
    ready: Vec<(Bytes, bool)>,
    uploads: &mut JoinSet<Result<Sent>>,
    send: F,
) -> Result<Vec<UploadedPart>>
where
    C: ChunkSource,
    F: Fn(i32, Bytes) -> Fut,
    Fut: Future<Output = Result<Sent>> + Send + 'static,
{
    let mut parts = Parts {
        done: Vec::new(),
        held: 0,
        spare: Vec::new(),
        keep: plan.in_flight + 1,
    };
    let mut ready = VecDeque::from(ready);
    let mut number = 0;
    loop {
        let (part, last) = match ready.pop_front() {
            Some(part) => part,
            None => {
                // The next part is read while the others upload; a part that fails meanwhile
                // ends the upload at once rather than after the read.
                let size = plan.size_of(number + 1);
                let read = reader.next_part(size, parts.buffer(size));
                tokio::pin!(read);
                loop {
                    tokio::select! {
                        biased;
                        Some(joined) = uploads.join_next() => parts.settle(joined)?,
                        next = &mut read => break next?,
                    }
                }
            }
        };
        if part.is_empty() {
            // Only a first part can be empty (the reader sees the end with the part before
            // it), but an empty part must never go up.
            break;
        }
        number += 1;
        if number > MAX_PARTS {
            return Err(Error::SourcePermanent(format!(
                "more than {MAX_PARTS} parts of up to {} bytes",
                plan.size_of(MAX_PARTS)
            )));
        }
        let next_size = plan.size_of(number + 1);
        let room = plan.budget_for(next_size) - next_size;
        while parts.held > 0 && parts.held + part.len() > room {
            match uploads.join_next().await {
                Some(joined) => parts.settle(joined)?,
                None => break,
            }
        }
        parts.held += part.len();
        uploads.spawn(send(number, part));
        // Lets the part's task start its request before this one goes back to reading.
        tokio::task::yield_now().await;
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

/// The pipeline's books: parts done, bytes uploading, buffers to reuse.
struct Parts {
    done: Vec<UploadedPart>,
    held: usize,
    spare: Vec<BytesMut>,
    /// At most this many buffers are kept for reuse.
    keep: usize,
}

impl Parts {
    fn settle(&mut self, joined: std::result::Result<Result<Sent>, JoinError>) -> Result<()> {
        let (part, buffer) =
            joined.map_err(|e| Error::sink(format!("part upload stopped: {e}")))??;
        self.held = self.held.saturating_sub(part.len);
        self.done.push(part);
        // Unique once the SDK has let go of the body; otherwise it is simply dropped.
        if let Ok(buffer) = buffer.try_into_mut()
            && self.spare.len() < self.keep
        {
            self.spare.push(buffer);
        }
        Ok(())
    }

    /// A buffer for a part of `size` bytes: a spare one if it is large enough.
    fn buffer(&mut self, size: usize) -> BytesMut {
        while let Some(buffer) = self.spare.pop() {
            if buffer.capacity() >= size {
                return buffer;
            }
        }
        BytesMut::with_capacity(size)
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

    /// The next part of at most `size` bytes (fewer only at the end of the body), read into
    /// `buf`, and whether it is the last one.
    async fn next_part(&mut self, size: usize, mut buf: BytesMut) -> Result<(Bytes, bool)> {
        buf.clear();
        buf.reserve(size);
        while buf.len() < size {
            let mut chunk = match self.take_chunk().await? {
                Some(chunk) => chunk,
                None => break,
            };
            let room = size - buf.len();
            if chunk.len() > room {
                self.carry = Some(chunk.split_off(room));
            }
            // Hashed while the chunk is still in the cache.
            self.hasher.update(&chunk);
            buf.extend_from_slice(&chunk);
        }
        if self.carry.is_none() && !self.ended {
            self.carry = self.take_chunk().await?;
        }
        self.size += buf.len() as u64;
        Ok((buf.freeze(), self.carry.is_none()))
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
    use std::sync::{Arc, Mutex};

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
            let (part, last) = reader
                .next_part(PART_SIZE, BytesMut::new())
                .await
                .expect("in-memory body");
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

    #[test]
    fn options_stay_within_s3_limits_and_parts_grow_to_hold_any_object() {
        let options = S3SinkOptions {
            part_size: 1,
            parts_in_flight: 0,
        }
        .clamped();
        assert_eq!(
            (options.part_size, options.parts_in_flight),
            (MIN_PART_SIZE, 1)
        );
        let huge = S3SinkOptions {
            part_size: usize::MAX,
            parts_in_flight: usize::MAX,
        }
        .clamped();
        assert_eq!(huge.part_size, MAX_PART_SIZE);
        assert_eq!(huge.parts_in_flight, MAX_PARTS_IN_FLIGHT);
        assert_eq!(S3SinkOptions::default().memory_bound(), 5 * PART_SIZE);

        for options in [
            S3SinkOptions::default(),
            S3SinkOptions {
                part_size: MIN_PART_SIZE,
                parts_in_flight: 1,
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

    /// Runs the pipeline over `chunk_sizes` with uploads that take a little while, and fail
    /// for the part numbers in `failing`.
    async fn run(
        plan: PartPlan,
        chunk_sizes: &[usize],
        failing: &'static [i32],
    ) -> (Result<Vec<UploadedPart>>, Arc<Mutex<Seen>>, u64) {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let mut body = Chunks::of(chunk_sizes);
        let mut reader = PartReader::new(&mut body);
        let first = reader
            .next_part(plan.size_of(1), BytesMut::new())
            .await
            .expect("body");
        assert!(!first.1, "a multipart body");
        let mut uploads = JoinSet::new();
        let send = |number: i32, body: Bytes| {
            let seen = seen.clone();
            async move {
                {
                    let mut seen = seen.lock().expect("lock");
                    seen.uploading += 1;
                    seen.bytes += body.len();
                    seen.most_uploading = seen.most_uploading.max(seen.uploading);
                    let bytes = seen.bytes;
                    seen.started.push((number, body.len(), bytes));
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
                let mut seen = seen.lock().expect("lock");
                seen.uploading -= 1;
                seen.bytes -= body.len();
                if failing.contains(&number) {
                    return Err(Error::sink(format!("part {number} failed")));
                }
                let part = UploadedPart {
                    number,
                    etag: format!("etag-{number}"),
                    len: body.len(),
                };
                Ok((part, body))
            }
        };
        let result = pipeline(plan, &mut reader, vec![first], &mut uploads, send).await;
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
        let (parts, seen, size) = run(plan, &chunks, &[]).await;
        let parts = parts.expect("all parts up");
        assert_eq!(size, 19_980);
        assert_eq!(
            parts.iter().map(|p| p.number).collect::<Vec<_>>(),
            (1..=20).collect::<Vec<_>>()
        );
        assert_eq!(parts.iter().map(|p| p.len).sum::<usize>(), 19_980);
        assert_eq!(parts[19].len, 980);
        let seen = seen.lock().expect("lock");
        assert_eq!(seen.most_uploading, 4, "4 parts in flight");
        for (number, len, bytes) in &seen.started {
            assert!(
                *bytes + plan.size_of(number + 1) <= plan.budget_for(plan.size_of(number + 1)),
                "part {number} ({len} bytes): {bytes} bytes uploading leave no room for the next"
            );
        }
    }

    #[tokio::test]
    async fn growing_parts_go_up_fewer_at_once_and_keep_the_bound() {
        // Parts of 1000 bytes, then 2000, 4000, 8000 (every 3 parts); 4 in flight: 5000 bytes.
        let plan = small_plan(4, 3);
        let chunks = [500; 100]; // 50,000 bytes
        let (parts, seen, size) = run(plan, &chunks, &[]).await;
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
            // With the next part read beside them, the parts uploading stay within the bound
            // (5,000 bytes, or two parts once one part is more than half of that).
            let next = plan.size_of(number + 1);
            assert!(
                *bytes + next <= plan.budget_for(next) || *bytes == *len,
                "part {number} ({len} bytes): {bytes} bytes uploading"
            );
            assert!(*bytes + next <= 5000.max(2 * next));
        }
    }

    #[tokio::test]
    async fn a_failed_part_ends_the_upload() {
        let plan = small_plan(3, 1_000);
        let (parts, _, _) = run(plan, &[1000; 12], &[5]).await;
        let err = parts.expect_err("part 5 failed");
        assert!(err.to_string().contains("part 5 failed"), "{err}");
    }
}
