"""`make demo`: the whole flow end to end, by itself, then a check of what landed.

Starts the local stack (local_stack.py), POSTs every callback of the Music AI task in events/
(2 audio, 2 lyrics, 1 cover; URLs pointed at the local stand-in for MusicGPT's buckets) plus one
duplicate, waits until no asset is PENDING, prints the task's items and the bucket's objects
with sizes and SHA-256, and exits non-zero if anything is missing or differs. The cover's first
download answers 503, so the cover is stored only once the sweep (the reconciler on its local
schedule) has tried it again. Stops everything it started, however it ends.

Usage: python scripts/demo.py [--mode inline|stream] [--release] [--key-prefix PREFIX]
       [--expect stored|recorded] [--timeout SECONDS]
"""

import argparse
import json
import sys
import time
import urllib.error
import urllib.request

import local_stack
from local_stack import CALLBACKS, SONGS, STEMS, STEMS_CONVERSION, STEMS_TASK, TASK, Stack, log


def expected_objects(stack: Stack) -> dict[str, bytes]:
    prefix = stack.key_prefix.rstrip("/") + "/" if stack.key_prefix else ""
    want = {f"{prefix}{TASK}/cover.png": stack.media[f"img-gen-pipeline/{TASK}.png"]}
    for song in SONGS:
        for ext in ("mp3", "wav"):
            want[f"{prefix}{TASK}/{song}.{ext}"] = stack.media[f"conversions/{song}.{ext}"]
    # The stem extraction: another conversion type, its own key layout.
    for stem in STEMS:
        for ext in ("mp3", "wav"):
            source = f"conversions/{STEMS_CONVERSION}/{stem}.{ext}"
            want[f"{prefix}{STEMS_TASK}/{STEMS_CONVERSION}/stems/{stem}.{ext}"] = stack.media[source]
    return want


def short(value, width=72):
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = text.replace("\n", "\\n")
    return text if len(text) <= width else text[: width - 3] + "..."


def print_items(items: list[dict]) -> None:
    print(f"\n== items of TASK#{TASK} ({len(items)})")
    for item in items:
        print(f"- {item['sk']}")
        for name in sorted(item):
            if name not in ("pk", "sk"):
                print(f"    {name:<22} {short(item[name])}")


def check_events(stack: Stack, want: dict[str, bytes], problems: list[str]) -> None:
    """The events the bus delivered to the queue (and the forwards the local receiver got):
    one Asset Stored per file and one Task Completed per task, none for a file not stored."""
    expected = {TASK: 5, STEMS_TASK: len(STEMS) * 2}
    deadline = time.monotonic() + 60
    while True:
        events = stack.bus_events()
        kinds = [(e["detail"]["task_id"], e["detail-type"]) for e in events]
        done = all(kinds.count((task, "Asset Stored")) >= files
                   and (task, "Task Completed") in kinds for task, files in expected.items())
        if done or time.monotonic() > deadline:
            break
        time.sleep(1)
    print(f"\n== events on the bus {local_stack.BUS} (via the queue): {len(events)}")
    ids = []
    for event in events:
        detail = event["detail"]
        ids.append(detail["event_id"])
        about = detail.get("asset", {}).get("key") or detail.get("reason") or \
            f"{sum(f['state'] == 'STORED' for f in detail['files'])} files stored"
        print(f"{event['detail-type']:<15} {detail['event_id']}  task {detail['task_id'][:8]}  {about}")
        for file in [detail.get("asset")] if detail.get("asset") else []:
            source = want.get(file["key"])
            if source is None or local_stack.sha256_of(source) != file["sha256"]:
                problems.append(f"{event['detail-type']} for {file['key']}: not the stored bytes")
    for task, files in expected.items():
        got = sorted(e["detail-type"] for e in events if e["detail"]["task_id"] == task)
        if got != ["Asset Stored"] * files + ["Task Completed"]:
            problems.append(f"events of task {task}: {got}")
    if len(set(ids)) != len(ids):
        print("   (an event delivered twice: at least once, the same event_id)")
    forwards = stack.forwards
    verified = sum(f["verified"] for f in forwards)
    print(f"== forwarded to the local webhook: {len(forwards)}, signatures verified: {verified}")
    if verified != len(forwards) or {f["id"] for f in forwards} != set(ids):
        problems.append(f"forwards: {verified} of {len(forwards)} verified, "
                        f"{len({f['id'] for f in forwards})} ids for {len(set(ids))} events")


def check_read_api(stack: Stack, problems: list[str]) -> None:
    """GET /tasks/<task> with the read token, one file fetched through its presigned URL."""
    status, _ = 0, None
    request = urllib.request.Request(f"{stack.tasks_url}/{TASK}")
    try:
        urllib.request.urlopen(request, timeout=30)
    except urllib.error.HTTPError as err:
        status = err.code
    if status != 401:
        problems.append(f"the read API without a token answered {status}, not 401")
    status, task = stack.read(f"/{TASK}")
    print(f"\n== GET /tasks/{TASK[:8]}...: {status}, settled {task.get('settled')}, "
          f"outcome {task.get('outcome')}, {len(task.get('files', []))} files")
    if status != 200 or task.get("outcome") != "completed":
        problems.append(f"read API: {status} {short(task, 200)}")
        return
    file = next(f for f in task["files"] if f["key"].endswith(".wav"))
    with urllib.request.urlopen(file["url"], timeout=60) as answer:
        body = answer.read()
    digest = local_stack.sha256_of(body)
    ok = digest == file["sha256"]
    print(f"   {file['key']} through its presigned URL: {len(body):,} B, sha256 {digest} "
          f"({'matches' if ok else 'DIFFERS'})")
    if not ok:
        problems.append(f"{file['key']} downloaded through the read API differs")
    status, page = stack.read(query="status=COMPLETED&limit=10")
    listed = sorted(t["task_id"] for t in page.get("tasks", []))
    print(f"== GET /tasks?status=COMPLETED: {status}, {listed}")
    if status != 200 or listed != sorted([TASK, STEMS_TASK]):
        problems.append(f"GET /tasks?status=COMPLETED: {status} {listed}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("inline", "stream"), default="inline")
    parser.add_argument("--release", action="store_true")
    parser.add_argument("--key-prefix", default="")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--timeout", type=float, default=180)
    parser.add_argument("--expect", choices=("stored", "recorded"), default="stored",
                        help="recorded: only check that every asset was recorded (no copy engine)")
    args = parser.parse_args()
    stack = Stack("demo", mode=args.mode, lambda_port=args.port, release=args.release,
                  key_prefix=args.key_prefix)
    try:
        return demo(stack, args)
    except Exception as exc:  # noqa: BLE001 - report, show the logs, exit non-zero
        log(f"FAILED: {exc}")
        return 1
    finally:
        failed_logs = stack.logs
        stack.stop()
        log(f"stopped everything; logs in {failed_logs.relative_to(local_stack.ROOT)}/")


def demo(stack: Stack, args) -> int:
    started = time.monotonic()
    stack.start()
    problems = []
    cover_path = f"/img-gen-pipeline/{TASK}.png"
    local_stack.QuietHandler.fail_first.add(cover_path)

    print(f"\n== POST {stack.webhook_url.replace(local_stack.TOKEN, '<token>')}")
    # The last Music AI one again (a duplicate delivery), then a stem extraction's callback.
    for name in (*CALLBACKS, CALLBACKS[2], "stems"):
        t0 = time.monotonic()
        status, body = stack.post(name)
        print(f"{status}  {time.monotonic() - t0:6.2f} s  {name:<18} {short(body, 90)}")
        if status != 200:
            problems.append(f"{name}: HTTP {status}")

    want = expected_objects(stack)
    deadline = time.monotonic() + args.timeout
    while True:
        assets = [i for task in (TASK, STEMS_TASK) for i in stack.task_items(task)
                  if i["sk"].startswith("ASSET#")]
        pending = [a["sk"] for a in assets if a.get("state") == "PENDING"]
        if args.expect == "recorded" or (len(assets) >= len(want) and not pending):
            break
        if time.monotonic() > deadline:
            problems.append(f"still PENDING after {args.timeout:.0f} s: {', '.join(pending)}")
            break
        time.sleep(0.5)

    items = stack.task_items()
    print_items(items)
    stems_items = stack.task_items(STEMS_TASK)
    print(f"\n== the stem extraction: {len(stems_items)} items of TASK#{STEMS_TASK}")
    assets = [i for i in items + stems_items if i["sk"].startswith("ASSET#")]
    if len(assets) != len(want):
        problems.append(f"{len(assets)} asset items, expected {len(want)}")
    if args.expect == "stored":
        for asset in assets:
            if asset.get("state") != "STORED":
                problems.append(f"{asset['sk']} is {asset.get('state')}: "
                                f"{asset.get('last_error', '')}")

    objects = {o["key"]: o for o in stack.objects()}
    print(f"\n== objects in s3://{local_stack.BUCKET} ({len(objects)})")
    for key, obj in sorted(objects.items()):
        source = want.get(key)
        verdict = ("same bytes as the source" if source is not None
                   and local_stack.sha256_of(source) == obj["sha256"] else "DIFFERS FROM THE SOURCE")
        print(f"{obj['size']:>12,} B  sha256 {obj['sha256']}  {key}  ({verdict})")
    if args.expect == "stored":
        for key, source in want.items():
            obj = objects.get(key)
            if obj is None:
                problems.append(f"missing object {key}")
            elif obj["sha256"] != local_stack.sha256_of(source):
                problems.append(f"{key}: sha256 differs from the source")
        for asset in assets:
            stored_hash = asset.get("sha256")
            obj = objects.get(asset.get("s3_key") or asset.get("key") or "")
            if stored_hash and obj and stored_hash != obj["sha256"]:
                problems.append(f"{asset['sk']}: item sha256 differs from the object's")
        if stack.open_multipart_uploads():
            problems.append("multipart uploads left open")

    if args.expect == "stored":
        check_events(stack, want, problems)
        check_read_api(stack, problems)

    cover = next((a for a in assets if a["sk"].endswith("#cover")), {})
    if args.expect == "stored":
        healed = cover.get("state") == "STORED" and int(cover.get("attempts", 0)) >= 1
        print(f"\n== the cover's first download answered 503: {cover.get('state')} after "
              f"{cover.get('attempts', 0)} failed attempt(s), {stack.sweeps} sweep(s) run")
        if not healed:
            problems.append("the cover's failed copy was not healed by a later try")
    fetched = local_stack.QuietHandler.requests
    print(f"\n== source requests: {sum(fetched.values())} "
          f"({', '.join(f'{p} x{n}' for p, n in sorted(fetched.items())) or 'none'})")
    if stack.pump is not None:
        print(f"== stream pump: {stack.pump.stats}")
    peaks = stack.function_peak_rss()
    print("== peak RSS of the functions: "
          + (", ".join(f"{name} {size / 2**20:.1f} MiB" for name, size in sorted(peaks.items()))
             or "not found"))
    print(f"== {time.monotonic() - started:.1f} s in all")
    if problems:
        print("\nDEMO FAILED:")
        for problem in problems:
            print(f"  - {problem}")
        return 1
    checked = "recorded" if args.expect == "recorded" else "stored, bytes verified"
    print(f"\nDEMO OK: a Music AI task (5 callbacks + 1 duplicate) and a stem extraction "
          f"accepted, {len(want)} files {checked}")
    return 0


if __name__ == "__main__":
    sys.exit(local_stack.run_stack(main))
