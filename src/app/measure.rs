//! The figures every function reports, through the `metrics` facade (the front ends install a
//! CloudWatch embedded-metric-format recorder and flush it once per invocation). Names and units
//! are defined here once; dimensions stay few (kind, outcome, reason: never a task id).

use std::time::Duration;

use metrics::{Unit, counter, describe_counter, describe_histogram, histogram};

pub const CALLBACKS: &str = "Callbacks";
pub const REFUSED_REQUESTS: &str = "RefusedRequests";
pub const QUARANTINED_BODIES: &str = "QuarantinedBodies";
pub const COPIES: &str = "Copies";
pub const BYTES_COPIED: &str = "BytesCopied";
pub const COPY_DURATION: &str = "CopyDuration";
pub const COPY_THROUGHPUT: &str = "CopyThroughput";
pub const RECEIVED_TO_STORED: &str = "ReceivedToStored";
pub const VERIFICATIONS: &str = "Verifications";
pub const RECOVERED_CALLBACKS: &str = "RecoveredCallbacks";
pub const RECOVERED_TASKS: &str = "RecoveredTasks";

/// Units for every name, so CloudWatch shows them; once per process.
pub fn describe() {
    describe_counter!(
        CALLBACKS,
        Unit::Count,
        "callbacks recorded, by kind and outcome"
    );
    describe_counter!(REFUSED_REQUESTS, Unit::Count, "requests refused, by reason");
    describe_counter!(QUARANTINED_BODIES, Unit::Count, "bodies kept in quarantine");
    describe_counter!(COPIES, Unit::Count, "copy attempts, by outcome");
    describe_counter!(BYTES_COPIED, Unit::Bytes, "bytes stored in the bucket");
    describe_histogram!(
        COPY_DURATION,
        Unit::Milliseconds,
        "one copy, download to stored"
    );
    describe_histogram!(COPY_THROUGHPUT, Unit::MegabitsPerSecond, "one copy's rate");
    describe_histogram!(
        RECEIVED_TO_STORED,
        Unit::Seconds,
        "from the callback to its file in the bucket"
    );
    describe_counter!(VERIFICATIONS, Unit::Count, "byId checks, by result");
    describe_counter!(
        RECOVERED_CALLBACKS,
        Unit::Count,
        "callbacks the reconciler recorded from byId or byUser"
    );
    describe_counter!(RECOVERED_TASKS, Unit::Count, "tasks the reconciler settled");
}

/// One callback handled by the webhook.
pub fn callback(kind: &'static str, outcome: &'static str) {
    counter!(CALLBACKS, "kind" => kind, "outcome" => outcome).increment(1);
}

/// Why a request was refused: token, method, size, body, not_storable, storage.
pub fn refused(reason: &'static str) {
    counter!(REFUSED_REQUESTS, "reason" => reason).increment(1);
}

pub fn quarantined() {
    counter!(QUARANTINED_BODIES).increment(1);
}

/// One copy attempt: its outcome and, when stored (`stored_bytes`), its size, time and rate,
/// and how long the file waited since its callback came.
pub fn copy(
    outcome: &'static str,
    stored_bytes: Option<u64>,
    took: Duration,
    waited_secs: Option<u64>,
) {
    counter!(COPIES, "outcome" => outcome).increment(1);
    if let Some(size) = stored_bytes {
        counter!(BYTES_COPIED).increment(size);
        histogram!(COPY_DURATION).record(took.as_secs_f64() * 1_000.0);
        let secs = took.as_secs_f64().max(1e-6);
        histogram!(COPY_THROUGHPUT).record(size as f64 * 8.0 / 1_000_000.0 / secs);
        if let Some(waited) = waited_secs {
            histogram!(RECEIVED_TO_STORED).record(waited as f64);
        }
    }
}

/// A verification with MusicGPT: verified, unverified, postponed.
pub fn verification(result: &'static str) {
    counter!(VERIFICATIONS, "result" => result).increment(1);
}

pub fn recovered(callbacks: usize, tasks: usize) {
    counter!(RECOVERED_CALLBACKS).increment(callbacks as u64);
    counter!(RECOVERED_TASKS).increment(tasks as u64);
}
