"""Checks what `sam build` produced: one Linux arm64 executable `bootstrap` per function."""

import struct
import sys
from pathlib import Path

EM_AARCH64 = 0xB7
BUILD = Path(__file__).resolve().parent.parent / ".aws-sam" / "build"


def main() -> int:
    found = sorted(BUILD.glob("*/bootstrap"))
    problems = [] if found else [f"no function artifacts under {BUILD}"]
    for path in found:
        head = path.read_bytes()[:20]
        machine = struct.unpack_from("<H", head, 18)[0] if len(head) == 20 else None
        ok = head[:4] == b"\x7fELF" and machine == EM_AARCH64
        print(f"{path.parent.name:<20} {path.stat().st_size:>12,} B  "
              f"{'ELF aarch64' if ok else 'NOT an aarch64 ELF executable'}")
        if not ok:
            problems.append(f"{path} is not an aarch64 executable")
    for problem in problems:
        print(f"FAILED: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
