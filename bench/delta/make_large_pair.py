#!/usr/bin/env python3
"""Writes a generated pair of about SIZE GiB for bench/delta/large.sh: OLD is
random bytes; NEW is OLD with what updates of large models do to them — new
bytes inserted every GiB (every later offset shifts), the last eighth moved to
the front, an eighth drifted (every 512th byte changed, like fine-tuned
weights) — so that a delta is small only if the encoder finds each part in
the source, however far it moved.

Usage: make_large_pair.py SIZE_GIB OLD NEW
"""
import hashlib
import itertools
import os
import sys

GIB = 1 << 30
PIECE = 64 << 20


def write_random(f, n, counter):
    # SHAKE128 of a counter: reproducible, and several times faster than random.randbytes.
    while n > 0:
        k = min(n, PIECE)
        f.write(hashlib.shake_128(b"meridian %d" % next(counter)).digest(k))
        n -= k


def copy(src, dst, offset, n, drift=False):
    src.seek(offset)
    while n > 0:
        k = min(n, PIECE)
        b = bytearray(src.read(k))
        if drift:
            b[::512] = bytes((x + 1) & 0xFF for x in b[::512])
        dst.write(b)
        n -= k


def main():
    size_gib, old, new = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    size = size_gib * GIB
    counter = itertools.count()
    with open(old, "wb") as f:
        write_random(f, size, counter)
    eighth = size // 8
    # NEW: the last eighth first, then the rest in order, with the third
    # eighth drifted and 4 KiB of new bytes before every GiB.
    pieces = [(7 * eighth, eighth, False)]
    for start in range(0, 7 * eighth, GIB):
        end = min(7 * eighth, start + GIB)
        pieces.append(("new", 4096, False))
        pieces.append((start, end - start, 2 * eighth <= start < 3 * eighth))
    with open(old, "rb") as src, open(new, "wb") as dst:
        for offset, n, drift in pieces:
            if offset == "new":
                write_random(dst, n, counter)
            else:
                copy(src, dst, offset, n, drift)
    print(f"{old}: {os.path.getsize(old)} bytes, {new}: {os.path.getsize(new)} bytes")


if __name__ == "__main__":
    main()
