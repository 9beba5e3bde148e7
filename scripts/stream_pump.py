"""A local stand-in for Lambda's DynamoDB stream event source mapping.

Reads the table's stream from the emulator, keeps the records that pass the FilterCriteria of
`CopierStreamMapping` in template.yaml (read from the template, so local runs exercise the
deployed filter), and invokes the copier under `cargo lambda watch` with batches of them,
retrying what it reports in `batchItemFailures` as Lambda would (bounded retries).
"""

import base64
import datetime
import json
import threading
import time
import urllib.request
from pathlib import Path

import yaml

MISSING = object()


class _CfnLoader(yaml.SafeLoader):
    """Reads a CloudFormation template, ignoring its short-form tags (!Ref, !Sub, ...)."""


_CfnLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def mapping_settings(template: Path) -> dict:
    doc = yaml.load(template.read_text(), Loader=_CfnLoader)
    props = doc["Resources"]["CopierStreamMapping"]["Properties"]
    return {
        "patterns": [json.loads(f["Pattern"]) for f in props["FilterCriteria"]["Filters"]],
        "batch_size": int(props.get("BatchSize", 100)),
        "max_retries": int(props.get("MaximumRetryAttempts", 2)),
    }


def matches(pattern: dict, event) -> bool:
    """EventBridge-style matching, the subset Lambda filters use here: exact values,
    prefix, anything-but and exists."""
    for key, rule in pattern.items():
        value = event.get(key, MISSING) if isinstance(event, dict) else MISSING
        if isinstance(rule, dict):
            if not matches(rule, value if isinstance(value, dict) else {}):
                return False
        elif not any(_leaf(r, value) for r in rule):
            return False
    return True


def _leaf(rule, value) -> bool:
    if not isinstance(rule, dict):
        return value == rule
    if "prefix" in rule:
        return isinstance(value, str) and value.startswith(rule["prefix"])
    if "anything-but" in rule:
        return value is not MISSING and value not in rule["anything-but"]
    if "exists" in rule:
        return (value is not MISSING) == rule["exists"]
    raise ValueError(f"filter rule not supported here: {rule}")


def _plain(value):
    """boto3 types -> what Lambda's JSON event carries."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, datetime.datetime):
        return int(value.timestamp())
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode()
    return value


class StreamPump:
    def __init__(self, streams, stream_arn: str, invoke_url: str, template: Path, log):
        self.streams = streams
        self.stream_arn = stream_arn
        self.invoke_url = invoke_url
        self.settings = mapping_settings(template)
        self.log = log
        self.stats = {"records": 0, "passed": 0, "invocations": 0, "retries": 0, "dead": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stream-pump", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        # A fresh iterator after the last record seen, every poll: moto replaces a table (and
        # its stream shard) with a snapshot when a transaction is cancelled, which strands
        # iterators held across polls. AWS has no such quirk; the records are the same.
        last_seen = {}
        while not self._stop.is_set():
            shards = self.streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]
            for shard in shards["Shards"]:
                shard_id = shard["ShardId"]
                where = ({"ShardIteratorType": "AFTER_SEQUENCE_NUMBER",
                          "SequenceNumber": last_seen[shard_id]} if shard_id in last_seen
                         else {"ShardIteratorType": "TRIM_HORIZON"})
                iterator = self.streams.get_shard_iterator(
                    StreamArn=self.stream_arn, ShardId=shard_id, **where)["ShardIterator"]
                records = self.streams.get_records(ShardIterator=iterator)["Records"]
                if records:
                    last_seen[shard_id] = records[-1]["dynamodb"]["SequenceNumber"]
                    self._deliver(records)
            self._stop.wait(0.2)

    def _deliver(self, records: list) -> None:
        self.stats["records"] += len(records)
        passed = []
        for record in records:
            event = _plain(record)
            event["eventSourceARN"] = self.stream_arn
            if any(matches(p, event) for p in self.settings["patterns"]):
                passed.append(event)
        self.stats["passed"] += len(passed)
        size = self.settings["batch_size"]
        for start in range(0, len(passed), size):
            self._invoke_with_retries(passed[start : start + size])

    def _invoke_with_retries(self, batch: list) -> None:
        for attempt in range(self.settings["max_retries"] + 1):
            if self._stop.is_set():
                return
            failed = self._invoke(batch)
            if failed is None:  # the function failed as a whole: retry the batch
                remaining = batch
            else:
                # Lambda resumes from the lowest failed sequence number.
                seqs = [r["dynamodb"]["SequenceNumber"] for r in batch]
                first = min((seqs.index(s) for s in failed if s in seqs), default=None)
                if first is None:
                    return
                remaining = batch[first:]
            batch = remaining
            if attempt < self.settings["max_retries"]:
                self.stats["retries"] += 1
        self.stats["dead"] += len(batch)
        self.log(f"stream: {len(batch)} record(s) given up on (the deployed stack would send "
                 "them to the dead-letter queue)")

    def _invoke(self, batch: list):
        """The sequence numbers the copier reports failed, or None if the invocation failed."""
        self.stats["invocations"] += 1
        request = urllib.request.Request(
            self.invoke_url,
            data=json.dumps({"Records": batch}).encode(),
            headers={"content-type": "application/json"},
            method="POST",
        )
        keys = ", ".join(r["dynamodb"]["Keys"]["sk"]["S"] for r in batch)
        started = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=900) as response:
                error = response.headers.get("X-Amz-Function-Error")
                body = json.loads(response.read() or b"{}")
        except Exception as exc:  # noqa: BLE001 - any failure is a failed invocation
            self.log(f"stream: copier invocation failed: {exc}")
            return None
        took = time.monotonic() - started
        if error:
            self.log(f"stream: copier failed ({error}): {body}")
            return None
        failed = [f.get("itemIdentifier") for f in (body or {}).get("batchItemFailures", [])]
        self.log(f"stream: copier took {len(batch)} record(s) [{keys}] in {took:.2f} s, "
                 f"{len(failed)} reported failed")
        return failed
