"""`make bench-stream`: callback -> file stored through the stream path on the local stack.

Starts the local stack (local_stack.py) in stream mode: moto, the stand-in for MusicGPT's
buckets, the functions under `cargo lambda watch`, and the stream pump that invokes the copier
with the table's stream records. Then, one file at a time, N times (BENCH_STREAM_TASKS, 10):
writes a distinct 5 MiB file into the stand-in's directory, POSTs a Music AI audio callback
(events/http-music-ai-audio-1.json's body, new task_id and conversion_id, conversion_path only)
and polls the asset's item every 100 ms until it is STORED. One untimed callback goes first:
the watcher starts the copier's process on its first invocation (a cold start).

callback -> stored is wall clock, from the POST's return (the webhook has answered 200) to the
poll that first sees STORED, so it has ~100 ms of polling resolution (the items' own
`stored_at - created_at` is whole seconds; it is printed alongside as a check). The copy's own
duration is the copier's `elapsed_ms` on its "asset stored" log line. p50/p95 are nearest rank.
Prints a markdown table and, when BENCH_SUMMARY names a file, appends its headline rows as
scripts/bench_summary.py reads them. Stops everything it started, however it ends.

Usage: python scripts/bench_stream.py [--release] [--tasks N] [--mib MIB] [--timeout SECONDS]
"""

import argparse
import json
import math
import os
import sys
import time
import uuid

import local_stack
from local_stack import EVENTS, Stack, log

POLL_EVERY = 0.1


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p * len(ordered)) - 1)]


def callback_body(task: str, conversion: str, url: str) -> str:
    body = json.loads(json.loads((EVENTS / "http-music-ai-audio-1.json").read_text())["body"])
    body.update(task_id=task, conversion_id=conversion, conversion_path=url)
    body.pop("conversion_path_wav", None)  # one file per callback
    return json.dumps(body)


def copier_elapsed(stack: Stack, tasks: set[str]) -> dict[str, tuple[int, int]]:
    """(elapsed_ms, size) of each "asset stored" line of ours in the stack's logs, by task."""
    found = {}
    for path in stack.logs.glob("*.log"):
        for line in path.read_text(errors="replace").splitlines():
            if '"asset stored"' not in line or "{" not in line:
                continue
            try:
                fields = json.loads(line[line.index("{"):]).get("fields", {})
            except ValueError:
                continue
            if fields.get("task_id") in tasks:
                found[fields["task_id"]] = (int(fields["elapsed_ms"]), int(fields["size"]))
    return found


def record(part: str, figure: str, measured: str, floor: str, vs_floor: str, target: str):
    path = os.environ.get("BENCH_SUMMARY")
    if not path:
        return
    with open(path, "a") as out:
        out.write(json.dumps({"part": part, "figure": figure, "measured": measured,
                              "floor": floor, "vs_floor": vs_floor, "target": target}) + "\n")


def bench(stack: Stack, args) -> int:
    stack.start()
    root = stack.state / "musicgpt"
    size = int(args.mib * 2**20)
    runs = []  # (task, wall seconds, stored_at - created_at)
    # One untimed callback first: the watcher starts the copier on its first invocation.
    for n in range(-1, args.tasks):
        task, conversion = str(uuid.uuid4()), str(uuid.uuid4())
        relative = f"conversions/bench/{conversion}.mp3"
        data = os.urandom(size)
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(data)
        stack.media[relative] = data
        name = f"bench-{n}"
        (stack.state / "callbacks" / f"{name}.json").write_text(
            callback_body(task, conversion, stack.media_url + relative))
        status, body = stack.post(name)
        posted = time.monotonic()
        if status != 200:
            raise RuntimeError(f"callback {n}: HTTP {status} {body}")
        deadline = posted + args.timeout
        while True:
            assets = [i for i in stack.task_items(task) if i["sk"].startswith("ASSET#")]
            states = [a.get("state") for a in assets]
            if assets and all(s == "STORED" for s in states):
                wall = time.monotonic() - posted
                break
            if any(s == "FAILED" for s in states):
                raise RuntimeError(f"callback {n}: asset FAILED: {assets}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"callback {n}: not STORED after {args.timeout:.0f} s: {states}")
            time.sleep(POLL_EVERY)
        if len(assets) != 1:
            raise RuntimeError(f"callback {n}: {len(assets)} assets, expected 1")
        item_secs = int(assets[0]["stored_at"]) - int(assets[0]["created_at"])
        if n < 0:
            log(f"warm-up (untimed, copier cold start): stored {wall * 1000:.0f} ms after the "
                "callback")
            continue
        runs.append((task, wall, item_secs))
        log(f"{n + 1}/{args.tasks}: stored {wall * 1000:.0f} ms after the callback "
            f"(items: {item_secs} s)")

    # The copier's log lines may land a moment after the item is written.
    tasks = {task for task, _, _ in runs}
    deadline = time.monotonic() + 10
    while len(copies := copier_elapsed(stack, tasks)) < len(tasks) and time.monotonic() < deadline:
        time.sleep(0.2)
    if len(copies) < len(tasks):
        raise RuntimeError(f"only {len(copies)} of {len(tasks)} \"asset stored\" log lines found")

    walls = [wall * 1000 for _, wall, _ in runs]
    copy_ms = [copies[task][0] for task, _, _ in runs]
    if any(copies[task][1] != size for task in tasks):
        raise RuntimeError(f"a stored size differs from {size} B: {copies}")
    items = [secs for _, _, secs in runs]
    build = "release" if args.release else "debug"
    label = f"{args.mib:g} MiB"
    print(f"\n## Stream path: callback -> stored ({build} build, local stack, moto)\n")
    print(f"machine: {os.cpu_count()} cores, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} at the end\n")
    print("| n | file size | callback -> stored p50 | p95 | copy p50 | p95 | items' stored_at - created_at |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    print(f"| {len(runs)} | {label} ({size:,} B) | {percentile(walls, .5):.0f} ms "
          f"| {percentile(walls, .95):.0f} ms | {percentile(copy_ms, .5):.0f} ms "
          f"| {percentile(copy_ms, .95):.0f} ms | {min(items)}-{max(items)} s |")
    print("\ncallback -> stored: wall clock from the POST's answer to the 100 ms poll that saw "
          "STORED; copy: the copier's elapsed_ms (claim, download, upload, STORED write)")
    if stack.pump is not None:
        print(f"stream pump: {stack.pump.stats}")

    for p in (50, 95):
        wall, copy = percentile(walls, p / 100), percentile(copy_ms, p / 100)
        record("stream", f"{label}: callback -> stored p{p} (n={len(runs)}, {build}, wall clock)",
               f"{wall:.0f} ms", f"{copy:.0f} ms (copy's own p{p})", f"{wall / copy:.2f}",
               "no target: stream and pump latency on top of the copy")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--release", action="store_true",
                        default=os.environ.get("BENCH_STREAM_RELEASE", "") not in ("", "0"))
    parser.add_argument("--tasks", type=int, default=int(os.environ.get("BENCH_STREAM_TASKS", 10)))
    parser.add_argument("--mib", type=float, default=float(os.environ.get("BENCH_STREAM_MIB", 5)))
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--timeout", type=float, default=120)
    args = parser.parse_args()
    stack = Stack("bench-stream", mode="stream", lambda_port=args.port, release=args.release)
    try:
        return bench(stack, args)
    except Exception as exc:  # noqa: BLE001 - report, point at the logs, exit non-zero
        log(f"FAILED: {exc}")
        return 1
    finally:
        stack.stop()
        log(f"stopped everything; logs in {stack.logs.relative_to(local_stack.ROOT)}/")


if __name__ == "__main__":
    sys.exit(local_stack.run_stack(main))
