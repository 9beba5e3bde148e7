"""The whole flow on one machine, nothing from AWS: moto (DynamoDB + S3), a local HTTP server
standing in for MusicGPT's buckets, and the functions under `cargo lambda watch`.

Used by run.py (`make run`) and demo.py (`make demo`). Every process it starts is in its own
process group and is stopped by `Stack.stop()`, which the scripts call on any exit.
"""

import functools
import hashlib
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import boto3

import sample_media
from stream_pump import StreamPump

ROOT = Path(__file__).resolve().parent.parent
STATE = ROOT / ".local"
TEMPLATE = ROOT / "template.yaml"
EVENTS = ROOT / "events"

TOKEN = "test-token-0123456789abcdef"  # the token of events/*.json
# The read API's bearer token locally (never a webhook token), the events' bus and the queue a
# rule sends them to, and the secret the local forward receiver checks signatures with.
READ_TOKEN = "local-read-token-0123456789"
BUS = "musicgpt-local-events"
QUEUE = "musicgpt-local-events"
FORWARD_SECRET = "whsec_bG9jYWwgZm9yd2FyZCBzZWNyZXQgMDEyMzQ1Njc4"  # no '=' padding: the env file takes it as it is
TABLE = "musicgpt-local"
BUCKET = "musicgpt-local"
REGION = "us-east-1"
TASK = "4fc2cdba-005d-4d14-a208-5fb02a2809da"
SONGS = ("05092d5c-f8b1-4c96-a4a3-45bc00de6268", "52fcd3b6-3925-41ed-b4c6-aee17a29e40b")
# The Music AI task of events/, in an order that is not the natural one.
CALLBACKS = ("music-ai-cover", "music-ai-lyrics-1", "music-ai-audio-1", "music-ai-audio-2",
             "music-ai-lyrics-2")
# A conversion of another type: the stem extraction of events/http-stems.json.
STEMS_TASK = "fc0f74e8-2a50-42e0-ae7f-855075c39176"
STEMS_CONVERSION = "2bae5dc8-34f1-441b-97dd-7e58b5543be1"
STEMS = ("vocals", "instrumental")
# How often the local stand-in for the reconciler's schedule sweeps.
SWEEP_EVERY = 5.0
MUSICGPT_HOSTS = ("https://lalals.s3.amazonaws.com/", "https://musicgpt.s3.amazonaws.com/")


def log(message: str) -> None:
    print(f"[local] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        # As the watcher binds (tokio sets SO_REUSEADDR): connections of an earlier run in
        # TIME_WAIT do not make the port busy.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def wait_until(what: str, ready, timeout: float, process=None) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} before it was ready")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready after {timeout:.0f} s")
        time.sleep(0.1)


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the media directory, counting requests per path. A path in `fail_first` answers
    503 to its first request, as a storage endpoint in trouble would, so that a local run shows
    a failed copy healing by itself."""

    requests: dict = {}
    fail_first: set = set()

    def do_GET(self):  # noqa: N802 - the base class's name
        if self.path in QuietHandler.fail_first:
            QuietHandler.fail_first.discard(self.path)
            QuietHandler.requests[self.path] = QuietHandler.requests.get(self.path, 0) + 1
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        if not format.startswith('"%s" %s') or args[1] != "503":
            QuietHandler.requests[self.path] = QuietHandler.requests.get(self.path, 0) + 1


class Stack:
    def __init__(self, name: str, mode: str = "inline", lambda_port: int = 9000,
                 release: bool = False, quiet: bool = True, key_prefix: str = ""):
        # .local/<name>: `make run` and `make demo` can run side by side.
        self.state = STATE / name
        self.mode = mode
        self.release = release
        self.quiet = quiet
        self.key_prefix = key_prefix
        self.lambda_port = lambda_port if port_is_free(lambda_port) else free_port()
        if self.lambda_port != lambda_port:
            log(f"port {lambda_port} is busy: the functions get port {self.lambda_port}")
        self.processes: list[subprocess.Popen] = []
        self.media: dict[str, bytes] = {}
        self.audio_server = None
        self.pump = None
        self.sweeper = None
        self.sweeps = 0
        self.logs = self.state / "logs"
        self.events: list[dict] = []  # what the bus delivered to the queue, in order
        self.receiver = None

    # ------------------------------------------------------------------ start
    def start(self) -> None:
        if self.state.exists():
            shutil.rmtree(self.state)
        self.logs.mkdir(parents=True)
        self._start_moto()
        self._create_table_and_bucket()
        self._create_bus()
        self._start_receiver()
        self._serve_media()
        self._write_callbacks()
        self._start_functions()
        if self.mode == "stream":
            self._start_pump()
        self._start_sweeper()
        (self.state / "stack.json").write_text(json.dumps({
            "endpoint": self.endpoint, "table": TABLE, "bucket": BUCKET,
            "webhook_url": self.webhook_url, "key_prefix": self.key_prefix,
            "event_bus": BUS, "event_queue_url": self.queue_url, "tasks_url": self.tasks_url,
        }, indent=2))

    def _spawn(self, name: str, args: list, env=None, to_terminal=False) -> subprocess.Popen:
        out = None if to_terminal else open(self.logs / f"{name}.log", "wb")
        process = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT if out else None,
            stdin=subprocess.PIPE if name == "moto" else subprocess.DEVNULL,
            start_new_session=True,  # its own process group: Ctrl-C reaches us, we stop it
        )
        process.name = name
        self.processes.append(process)
        return process

    def _start_moto(self) -> None:
        port = free_port()
        venv_python = ROOT / ".venv" / "bin" / "python"
        # The launcher the tests use: DynamoDB requests applied atomically, as AWS does; the
        # guard stops moto when our end of its stdin closes, even if we are killed.
        moto = self._spawn("moto", [
            sys.executable, str(ROOT / "tests/support/moto_guard.py"), str(venv_python),
            str(ROOT / "tests/support/moto_atomic.py"), "127.0.0.1", str(port),
        ])
        wait_until("moto", lambda: answers(port), 20, moto)
        self.endpoint = f"http://127.0.0.1:{port}"
        log(f"moto (DynamoDB, S3) on {self.endpoint}")

    def client(self, service: str):
        return boto3.client(service, endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def _create_table_and_bucket(self) -> None:
        dynamodb = self.client("dynamodb")
        table = dynamodb.create_table(
            TableName=TABLE, BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": n, "AttributeType": t} for n, t in (
                ("pk", "S"), ("sk", "S"), ("status", "S"), ("created_at", "N"), ("state", "S"),
                ("next_try_at", "N"), ("outbox", "S"), ("due_at", "N"))],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                       {"AttributeName": "sk", "KeyType": "RANGE"}],
            # The reconciler's indexes, as template.yaml declares them.
            GlobalSecondaryIndexes=[{
                "IndexName": name,
                "KeySchema": [{"AttributeName": hash_key, "KeyType": "HASH"},
                              {"AttributeName": range_key, "KeyType": "RANGE"}],
                "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": projected},
            } for name, hash_key, range_key, projected in (
                ("tasks_by_status", "status", "created_at", ["task_id", "item_type"]),
                ("assets_by_state", "state", "next_try_at", ["task_id", "created_at", "deadline_at"]),
                ("events_due", "outbox", "due_at", ["task_id", "event_id"]))],
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )
        self.stream_arn = table["TableDescription"]["LatestStreamArn"]
        dynamodb.update_time_to_live(TableName=TABLE, TimeToLiveSpecification={
            "Enabled": True, "AttributeName": "expires_at"})
        self.client("s3").create_bucket(Bucket=BUCKET)
        log(f"table {TABLE} (pk/sk, 3 indexes, stream NEW_AND_OLD_IMAGES, TTL expires_at), "
            f"bucket {BUCKET}")

    def _create_bus(self) -> None:
        """The events' bus in moto, with a rule that sends everything from musicgpt-webhook to
        an SQS queue: what an owner's application would subscribe."""
        events, sqs = self.client("events"), self.client("sqs")
        events.create_event_bus(Name=BUS)
        self.queue_url = sqs.create_queue(QueueName=QUEUE)["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=[
            "QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(Name="to-queue", EventBusName=BUS,
                        EventPattern=json.dumps({"source": ["musicgpt-webhook"]}))
        events.put_targets(Rule="to-queue", EventBusName=BUS,
                           Targets=[{"Id": "queue", "Arn": queue_arn}])
        log(f"event bus {BUS} -> rule source=musicgpt-webhook -> queue {QUEUE}")

    def _start_receiver(self) -> None:
        """The owner's own webhook (FORWARD_URL): checks every forward's Standard Webhooks
        signature with the standardwebhooks package and keeps the verdicts."""
        from standardwebhooks.webhooks import Webhook, WebhookVerificationError

        stack = self
        stack.forwards = []

        class Receiver(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the base class's name
                body = self.rfile.read(int(self.headers.get("content-length", 0))).decode()
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    Webhook(FORWARD_SECRET).verify(body, headers)
                    verified = True
                except WebhookVerificationError:
                    verified = False
                stack.forwards.append({"id": headers.get("webhook-id"), "verified": verified,
                                       "event": json.loads(body)})
                self.send_response(200 if verified else 400)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format, *args):  # noqa: A002 - the base class's name
                pass

        self.receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
        threading.Thread(target=self.receiver.serve_forever, daemon=True).start()
        self.forward_url = f"http://127.0.0.1:{self.receiver.server_address[1]}/hooks/musicgpt"
        log(f"the owner's webhook (FORWARD_URL, signatures checked) on {self.forward_url}")

    def _serve_media(self) -> None:
        root = self.state / "musicgpt"
        for n, song in enumerate(SONGS):
            # The WAV is big enough for a multipart upload; the "mp3" for a single PUT.
            sample_media.write_song(root / f"conversions/{song}.wav", 50 + 10 * n, 220 + 55 * n)
            sample_media.write_song(root / f"conversions/{song}.mp3", 6 + n, 330 + 55 * n, 1)
        sample_media.write_cover(root / f"img-gen-pipeline/{TASK}.png")
        for n, stem in enumerate(STEMS):
            for ext, seconds in (("mp3", 3), ("wav", 12)):
                sample_media.write_song(root / f"conversions/{STEMS_CONVERSION}/{stem}.{ext}",
                                        seconds + n, 180 + 90 * n, 1)
        for path in sorted(root.rglob("*.*")):
            self.media[str(path.relative_to(root))] = path.read_bytes()
        handler = functools.partial(QuietHandler, directory=str(root))
        self.audio_server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self.audio_server.serve_forever, daemon=True).start()
        self.media_url = f"http://127.0.0.1:{self.audio_server.server_address[1]}/"
        log(f"MusicGPT's files (stand-in) on {self.media_url}: "
            + ", ".join(f"{k} ({len(v):,} B)" for k, v in self.media.items()))

    def _write_callbacks(self) -> None:
        """events/http-<name>.json bodies with MusicGPT's URLs pointing at the local server."""
        out = self.state / "callbacks"
        out.mkdir()
        for name in (*CALLBACKS, "stems"):
            body = json.loads((EVENTS / f"http-{name}.json").read_text())["body"]
            for host in MUSICGPT_HOSTS:
                body = body.replace(host, self.media_url)
            (out / f"{name}.json").write_text(body)

    @property
    def tasks_url(self) -> str:
        return f"http://127.0.0.1:{self.lambda_port}/lambda-url/webhook/tasks"

    def read(self, path: str = "", query: str = "") -> tuple[int, dict]:
        """GET the read API (`/tasks<path>?<query>`) with the local read token."""
        url = self.tasks_url + path + (f"?{query}" if query else "")
        request = urllib.request.Request(url, headers={"authorization": f"Bearer {READ_TOKEN}"})
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"{}")

    def bus_events(self) -> list[dict]:
        """Everything the bus delivered to the queue so far (kept in self.events)."""
        sqs = self.client("sqs")
        while True:
            messages = sqs.receive_message(QueueUrl=self.queue_url,
                                           MaxNumberOfMessages=10).get("Messages", [])
            if not messages:
                return self.events
            for message in messages:
                self.events.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=self.queue_url,
                                   ReceiptHandle=message["ReceiptHandle"])

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.lambda_port}/lambda-url/webhook/{TOKEN}"

    def _start_functions(self) -> None:
        profile = ["--release"] if self.release else []
        bins = ["--bin", "webhook", "--bin", "reconciler"] + (
            ["--bin", "copier"] if self.mode == "stream" else [])
        log(f"building {' and '.join(bins[1::2])} ({'release' if self.release else 'debug'})")
        started = time.monotonic()
        build = subprocess.run(["cargo", "build", "--locked", *profile, *bins], cwd=ROOT,
                               stdout=subprocess.PIPE if self.quiet else None,
                               stderr=subprocess.STDOUT if self.quiet else None)
        if build.returncode != 0:
            if self.quiet:
                sys.stdout.write(build.stdout.decode(errors="replace"))
            raise RuntimeError("cargo build failed")
        log(f"built in {time.monotonic() - started:.1f} s")
        variables = {
            "TABLE_NAME": TABLE, "BUCKET_NAME": BUCKET, "WEBHOOK_TOKENS": TOKEN,
            "COPY_MODE": self.mode, "KEY_PREFIX": self.key_prefix,
            # The local stand-in is allowed, over plain http because it is on loopback.
            "SOURCE_HOSTS": "127.0.0.1",
            "AWS_ENDPOINT_URL": self.endpoint, "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_EC2_METADATA_DISABLED": "true", "RUST_LOG": "info",
            # Short waits, so that a failed copy heals within a local run.
            "RETRY_BASE_DELAY": "2s", "RETRY_MAX_DELAY": "30s",
            # Events on the local bus and to the local receiver; the read API's token.
            "EVENT_BUS_NAME": BUS, "EVENT_GRACE": "3s", "READ_TOKENS": READ_TOKEN,
            "FORWARD_URL": self.forward_url, "FORWARD_SECRETS": FORWARD_SECRET,
            "FORWARD_HOSTS": "127.0.0.1",
        }

        env_file = self.state / "lambda.env"
        env_file.write_text("".join(f"{k}={v}\n" for k, v in variables.items()))
        # No AWS settings of the developer's may reach the functions.
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env["PATH"] = f"{ROOT / '.venv-lambda' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        watch = self._spawn("cargo-lambda-watch", [
            "cargo", "lambda", "watch", "--invoke-address", "127.0.0.1",
            "--invoke-port", str(self.lambda_port), "--env-file", str(env_file),
            "--timeout", "900", *profile,
        ], env=env, to_terminal=not self.quiet)
        wait_until("cargo lambda watch", lambda: answers(self.lambda_port), 120, watch)
        log(f"cargo lambda watch on 127.0.0.1:{self.lambda_port}, COPY_MODE={self.mode}")

    def _start_pump(self) -> None:
        invoke = f"http://127.0.0.1:{self.lambda_port}/2015-03-31/functions/copier/invocations"
        self.pump = StreamPump(self.client("dynamodbstreams"), self.stream_arn, invoke, TEMPLATE,
                               log)
        self.pump.start()
        log("stream pump: table stream -> FilterCriteria of template.yaml -> copier")

    def _start_sweeper(self) -> None:
        """A stand-in for the reconciler's EventBridge schedule: an invocation every few
        seconds, which sweeps every asset whose next try has come."""
        invoke = f"http://127.0.0.1:{self.lambda_port}/2015-03-31/functions/reconciler/invocations"
        stop = threading.Event()

        def tick() -> None:
            while not stop.wait(SWEEP_EVERY):
                try:
                    request = urllib.request.Request(invoke, data=b"{}", method="POST")
                    with urllib.request.urlopen(request, timeout=300) as answer:
                        answer.read()
                    self.sweeps += 1
                except OSError as exc:
                    log(f"sweep invocation failed: {exc}")

        thread = threading.Thread(target=tick, daemon=True)
        thread.start()
        self.sweeper = stop
        log(f"sweep: the reconciler every {SWEEP_EVERY:.0f} s (the deployed schedule's stand-in)")

    # ------------------------------------------------------------------ use
    def post(self, name: str) -> tuple[int, str]:
        """POSTs a callback with curl, as MusicGPT would."""
        body = self.state / "callbacks" / f"{name}.json"
        out = self._curl(body)
        if out.returncode != 0:
            return 0, out.stderr.strip()
        text, _, code = out.stdout.rpartition("\n")
        return int(code), text

    def _curl(self, body: Path) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["curl", "-sS", "--max-time", "600", "-o", "-", "-w", "\n%{http_code}",
             "-H", "content-type: application/json", "--data-binary", f"@{body}",
             self.webhook_url],
            capture_output=True, text=True)

    def task_items(self, task: str = TASK) -> list[dict]:
        dynamodb = self.client("dynamodb")
        items, start = [], {}
        while True:
            page = dynamodb.query(TableName=TABLE, KeyConditionExpression="pk = :pk",
                                  ExpressionAttributeValues={":pk": {"S": f"TASK#{task}"}},
                                  ConsistentRead=True, **start)
            items += [plain_item(i) for i in page["Items"]]
            if "LastEvaluatedKey" not in page:
                return items
            start = {"ExclusiveStartKey": page["LastEvaluatedKey"]}

    def objects(self) -> list[dict]:
        s3 = self.client("s3")
        found = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
            for obj in page.get("Contents", []):
                body = s3.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read()
                found.append({"key": obj["Key"], "size": len(body), "sha256": sha256_of(body)})
        return found

    def open_multipart_uploads(self) -> int:
        return len(self.client("s3").list_multipart_uploads(Bucket=BUCKET).get("Uploads", []))

    def function_peak_rss(self) -> dict[str, int]:
        """Peak resident memory (VmHWM, bytes) of the function processes built here."""
        peaks = {}
        target = str(ROOT / "target") + os.sep
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                exe = os.readlink(proc / "exe")
                status = (proc / "status").read_text()
            except OSError:
                continue
            name = Path(exe).name
            if exe.startswith(target) and name in ("webhook", "copier"):
                kib = int(next(line.split()[1] for line in status.splitlines()
                               if line.startswith("VmHWM:")))
                peaks[name] = max(peaks.get(name, 0), kib * 1024)
        return peaks

    # ------------------------------------------------------------------ stop
    def stop(self) -> None:
        if self.sweeper is not None:
            self.sweeper.set()
        if self.pump is not None:
            self.pump.stop()
        for process in reversed(self.processes):
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for process in reversed(self.processes):
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            # Whatever the process group left behind (a function started by the watcher).
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.audio_server is not None:
            self.audio_server.shutdown()
        if self.receiver is not None:
            self.receiver.shutdown()
        self.processes.clear()


def plain_item(item: dict) -> dict:
    """DynamoDB's typed JSON -> plain values, for printing."""
    def value(v: dict):
        (kind, raw), = v.items()
        if kind == "N":
            return float(raw) if "." in raw else int(raw)
        if kind == "M":
            return {k: value(x) for k, x in raw.items()}
        if kind == "L":
            return [value(x) for x in raw]
        if kind == "NULL":
            return None
        return raw
    return {k: value(v) for k, v in item.items()}


def run_stack(main) -> int:
    """Runs main(stack-args...) with SIGTERM/SIGHUP turned into a normal exit, so that the
    caller's `finally: stack.stop()` always runs."""
    def leave(signum, _frame):
        raise SystemExit(128 + signum)
    # Ctrl-C raises KeyboardInterrupt even where SIGINT came in ignored (background jobs).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, leave)
    signal.signal(signal.SIGHUP, leave)
    try:
        return main()
    except KeyboardInterrupt:
        print()
        log("interrupted")
        return 130
