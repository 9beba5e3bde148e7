"""Checks what `sam build` produced: a Linux arm64 executable `bootstrap` for every function
that template.yaml builds with cargo-lambda (BuildMethod rust-cargolambda).

`--binaries` prints those functions' binary names instead (BuildProperties: Binary), for
`make sam-build` to build them all in one `cargo lambda build` before `sam build` runs.
`--built-before STAMP` (also from `make sam-build`) says for each function whether sam's own
`cargo lambda build --bin <name>` found the binary fresh, as it should after that one build: a
binary newer than STAMP was compiled again by sam, so the two builds' flags have drifted apart.
"""

import argparse
import os
import re
import struct
import sys
from pathlib import Path

EM_AARCH64 = 0xB7
ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / ".aws-sam" / "build"
TEMPLATE = ROOT / "template.yaml"
# Where cargo links `--release --arm64` binaries (deps/<name>-<hash>); cargo-lambda copies them
# to target/lambda/<name>/bootstrap on every run, fresh or not.
DEPS = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target") / \
    "aarch64-unknown-linux-gnu" / "release" / "deps"


def cargo_lambda_functions(template: Path) -> dict[str, str | None]:
    """{logical id: binary name} of the template's rust-cargolambda resources, read line by line
    (the template's CloudFormation tags keep a plain YAML loader from reading it)."""
    functions: dict[str, str | None] = {}
    in_resources, resource = False, None
    for line in template.read_text().splitlines():
        if re.match(r"\S", line):
            in_resources, resource = line.startswith("Resources:"), None
        elif in_resources and (m := re.match(r"  (\w+):\s*$", line)):
            resource = m.group(1)
        elif resource and re.match(r"\s+BuildMethod:\s*rust-cargolambda\s*$", line):
            functions[resource] = None
        elif resource in functions and (m := re.match(r"\s+Binary:\s*(\S+)\s*$", line)):
            functions[resource] = m.group(1)
    return functions


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binaries", action="store_true",
                        help="print the functions' binary names and exit")
    parser.add_argument("--built-before", type=Path, metavar="STAMP",
                        help="a file touched after the one cargo-lambda build of all functions")
    args = parser.parse_args()
    functions = cargo_lambda_functions(TEMPLATE)

    if args.binaries:
        missing = sorted(f for f, binary in functions.items() if binary is None)
        if missing or not functions:
            print(f"no BuildProperties: Binary for {', '.join(missing) or 'any function'} in "
                  f"{TEMPLATE.name}", file=sys.stderr)
            return 1
        print(" ".join(functions.values()))
        return 0

    problems = [] if functions else [f"no rust-cargolambda functions found in {TEMPLATE}"]
    for function, binary in sorted(functions.items()):
        path = BUILD / function / "bootstrap"
        if not path.is_file():
            problems.append(f"{path} is missing")
            continue
        head = path.read_bytes()[:20]
        machine = struct.unpack_from("<H", head, 18)[0] if len(head) == 20 else None
        ok = head[:4] == b"\x7fELF" and machine == EM_AARCH64
        built = ""
        if args.built_before is not None and binary is not None:
            linked = [p.stat().st_mtime for p in DEPS.glob(f"{binary.replace('-', '_')}-*")
                      if p.suffix == ""]
            if not linked:
                built = f"  (no {binary} in {DEPS}: cannot tell whether sam build compiled it)"
            elif max(linked) <= args.built_before.stat().st_mtime:
                built = "  (sam build found it fresh)"
            else:
                built = f"  (WARNING: sam build compiled {binary} again)"
        print(f"{function:<20} {path.stat().st_size:>12,} B  "
              f"{'ELF aarch64' if ok else 'NOT an aarch64 ELF executable'}{built}")
        if not ok:
            problems.append(f"{path} is not an aarch64 executable")
    for problem in problems:
        print(f"FAILED: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
