#!/usr/bin/env python3
"""The boto3 peer of `make bench`: the same two jobs done the way a small Python receiver would
do them, against the same moto, so that the benchmark can print this project's figures as a
ratio to it. Run by benches/copy_memory.rs and benches/ingest.rs with the project's .venv
(boto3 comes with moto; requirements-dev.txt pins it).

    peer_boto3.py copy --endpoint URL --bucket B --key K --source URL
        Streams the source into S3 with upload_fileobj (boto3's defaults: 8 MiB parts, up to
        10 in flight), hashing and counting on the way as the copy engine does. Prints one JSON
        line: secs, size, sha256, peak_kib (this process's VmHWM), before_kib.

    peer_boto3.py ack --endpoint URL --table T < bodies
        For each line of stdin (a callback body as a JSON string): parse the body, key it by its
        SHA-256 and record it with one conditional PutItem (attribute_not_exists), which is when
        a receiver could answer 200. Five untimed puts first. Prints one JSON line: latencies
        (seconds, one per body).

Credentials are moto's dummies; checksums only when required, as the project's emulator
clients are configured (tests/support/mod.rs).
"""
import argparse
import hashlib
import json
import resource
import sys
import time
import urllib.request

import boto3
from botocore.config import Config

DUMMY = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def client(service, endpoint):
    config = Config(
        s3={"addressing_style": "path"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        retries={"mode": "standard"},
    )
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1",
                        config=config, **DUMMY)


def status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


class Hashing:
    """A non-seekable reader over the download that hashes and counts what it hands on."""

    def __init__(self, body):
        self.body = body
        self.hasher = hashlib.sha256()
        self.size = 0

    def read(self, n=-1):
        data = self.body.read(n)
        self.hasher.update(data)
        self.size += len(data)
        return data


def copy(args):
    s3 = client("s3", args.endpoint)
    before = status_kib("VmRSS")
    started = time.perf_counter()
    with urllib.request.urlopen(args.source, timeout=60) as response:
        body = Hashing(response)
        s3.upload_fileobj(body, args.bucket, args.key,
                          ExtraArgs={"ContentType": "audio/wav"})
    secs = time.perf_counter() - started
    print(json.dumps({
        "secs": secs,
        "size": body.size,
        "sha256": body.hasher.hexdigest(),
        "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "before_kib": before,
    }))


def ack(args):
    dynamodb = client("dynamodb", args.endpoint)

    def record(body):
        callback = json.loads(body)
        if not isinstance(callback, dict):
            raise ValueError("not a callback")
        key = "CALLBACK#" + hashlib.sha256(body.encode()).hexdigest()
        try:
            dynamodb.put_item(
                TableName=args.table,
                Item={
                    "pk": {"S": key},
                    "sk": {"S": "RAW"},
                    "body": {"S": body},
                    "received_at": {"N": str(int(time.time()))},
                },
                ConditionExpression="attribute_not_exists(pk)",
            )
        except dynamodb.exceptions.ConditionalCheckFailedException:
            pass  # a redelivery: already recorded, answered 200 all the same

    for n in range(5):
        record(json.dumps({"warm_up": n, "at": time.time()}))
    latencies = []
    for line in sys.stdin:
        if not line.strip():
            continue
        body = json.loads(line)
        started = time.perf_counter()
        record(body)
        latencies.append(time.perf_counter() - started)
    print(json.dumps({"latencies": latencies}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="job", required=True)
    c = sub.add_parser("copy")
    c.add_argument("--endpoint", required=True)
    c.add_argument("--bucket", required=True)
    c.add_argument("--key", required=True)
    c.add_argument("--source", required=True)
    a = sub.add_parser("ack")
    a.add_argument("--endpoint", required=True)
    a.add_argument("--table", required=True)
    args = parser.parse_args()
    {"copy": copy, "ack": ack}[args.job](args)


if __name__ == "__main__":
    main()
