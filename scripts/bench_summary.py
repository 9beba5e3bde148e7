#!/usr/bin/env python3
"""Prints the one table of `make bench`: the rows every benchmark appended to the summary file
(JSON lines, see benches/common/summary.rs), with the machine they ran on. The peer columns hold
the boto3 peer's figure (benches/peer_boto3.py, against the same moto in the same run) and the
ratio of this project's figure to it, where there is one."""
import json
import os
import platform
import sys


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main(path):
    try:
        with open(path) as f:
            rows = [json.loads(line) for line in f if line.strip()]
    except OSError as err:
        sys.exit(f"no benchmark summary at {path}: {err}")
    if not rows:
        sys.exit(f"{path} holds no rows: did the benchmarks run?")
    cells = lambda r: [r["part"], r["figure"], r["measured"], r["floor"] or "-",
                       r["vs_floor"] or "-", r.get("peer") or "-", r.get("vs_peer") or "-",
                       r["target"] or "-"]
    print("## Benchmarks: every figure next to its floor and target\n")
    print(f"machine: {os.cpu_count()} x {cpu_model()}, "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} at the end\n")
    print("| part | figure | measured | floor | vs floor | boto3 peer | vs peer | target (or why) |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for row in rows:
        print("| " + " | ".join(str(c).replace("|", "/") for c in cells(row)) + " |")
    missed = [r for r in rows if "MISSED" in r["target"]]
    print()
    print(f"{len(rows)} figures; targets missed: {len(missed)}"
          + "".join(f"\n- {r['part']}: {r['figure']}" for r in missed))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "target/bench-summary.jsonl")
