"""Real media files for local runs: WAV songs made with the standard library, and a PNG cover.

The "mp3" files are the same kind of WAV data under an .mp3 name (no MP3 encoder comes with
Python); the copy engine treats every file as opaque bytes, so only sizes and hashes matter.
"""

import array
import math
import struct
import wave
import zlib
from pathlib import Path

RATE = 44_100


def write_song(path: Path, seconds: float, root_hz: float, channels: int = 2) -> None:
    """A major chord on `root_hz` with a slow fade-in: audible, and different per song."""
    one_second = array.array("h")
    partials = (root_hz, root_hz * 5 / 4, root_hz * 3 / 2)
    for n in range(RATE):
        t = n / RATE
        value = sum(math.sin(2 * math.pi * f * t) for f in partials) / len(partials)
        sample = int(value * 0.3 * 32767)
        one_second.extend([sample] * channels)
    frames = one_second.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(RATE)
        whole = int(seconds)
        for _ in range(whole):
            out.writeframes(frames)
        rest = int((seconds - whole) * RATE) * 2 * channels
        out.writeframes(frames[:rest])


def write_cover(path: Path, size: int = 64) -> None:
    """A size x size RGB gradient PNG."""
    rows = b"".join(
        b"\x00" + bytes(c for x in range(size) for c in (x * 4 % 256, y * 4 % 256, 160))
        for y in range(size)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)
