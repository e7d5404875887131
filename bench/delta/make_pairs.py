#!/usr/bin/env python3
"""Builds the bench/delta file pairs (old, new) from the two npm packages.

Usage: make_pairs.py CACHE_DIR   (CACHE_DIR holds the two `npm pack` tarballs)

Pairs, each a directory CACHE_DIR/pairs/<name>/{old,new}:
- wasm-<file>: each ONNX Runtime WebAssembly file present in both 1.4.0 and 1.4.5;
  wasm-concat: those files concatenated in resources.json order.
- medium-unchanged: models/medium of 1.4.0 and 1.4.5 (identical bytes).
- fp16-*: from the real models/medium (1.4.5), whose weight tensors are FLOAT16:
  fp16-head: the last 5 % of the tensor data (in file order) × (1 + N(0, 0.01)), seed 1;
  fp16-full: every weight × (1 + N(0, 1e-3)), seed 2;
  fp16-insert: 1 MiB of new weights N(0, 0.05) (seed 3) inserted after the raw data of
  the middle tensor (the protobuf lengths are not fixed up: a byte-level insertion).
- fp32-*: the same on a float32 model made by upcasting every FLOAT16 tensor of
  models/medium to FLOAT32 (real values, exact conversion; the protobuf is re-encoded).
- fp16-full-x24: fp16-full's old and new files each repeated 24 times (2.1 GB): the
  decoder's memory bound on a 2 GiB model. Only Meridian runs on it (run.sh).
- code-*: RELEASES below, one compiled file of two published versions of an npm package
  (fetched with `npm pack`): patch releases (a small fix that moves every later address),
  minor releases and large changes, of nine packages: WebAssembly runtimes (ONNX Runtime
  Web, MediaPipe vision and text tasks; SQLite in sql.js, C) and x86-64 native code
  (esbuild, a Go program; libvips from sharp, C and C++; Biome, and Rollup's and Lightning
  CSS's Node modules, Rust).
Python standard library and npm; fixed seeds, so the pairs are the same on every run.
"""
import json
import math
import os
import random
import struct
import subprocess
import sys
import tarfile

MIB = 1 << 20


def extract(cache, version):
    root = os.path.join(cache, version)
    if not os.path.isdir(root):
        with tarfile.open(os.path.join(cache, f"imgly-background-removal-data-{version}.tgz")) as t:
            t.extractall(root)
    dist = os.path.join(root, "package", "dist")
    with open(os.path.join(dist, "resources.json")) as f:
        resources = json.load(f)
    return dist, resources


def reassemble(dist, entry):
    out = bytearray()
    for chunk in entry["chunks"]:
        with open(os.path.join(dist, chunk["hash"]), "rb") as f:
            piece = f.read()
        begin, end = chunk["offsets"]
        assert len(piece) == end - begin and len(out) == begin
        out += piece
    assert len(out) == entry["size"]
    return bytes(out)


# (pair name, npm package, old version, new version, file inside the package)
RELEASES = [
    ("code-ort-patch-1.19.2", "onnxruntime-web", "1.19.0", "1.19.2", "dist/ort-wasm-simd-threaded.wasm"),
    ("code-ort-jsep-patch-1.19.2", "onnxruntime-web", "1.19.0", "1.19.2", "dist/ort-wasm-simd-threaded.jsep.wasm"),
    ("code-ort-patch-1.20.1", "onnxruntime-web", "1.20.0", "1.20.1", "dist/ort-wasm-simd-threaded.wasm"),
    ("code-ort-minor-1.19.0", "onnxruntime-web", "1.18.0", "1.19.0", "dist/ort-wasm-simd-threaded.wasm"),
    ("code-mp-vision-patch-0.10.15", "@mediapipe/tasks-vision", "0.10.14", "0.10.15",
     "wasm/vision_wasm_internal.wasm"),
    ("code-mp-vision-nosimd-0.10.18", "@mediapipe/tasks-vision", "0.10.15", "0.10.18",
     "wasm/vision_wasm_nosimd_internal.wasm"),
    ("code-mp-text-patch-0.10.15", "@mediapipe/tasks-text", "0.10.14", "0.10.15", "wasm/text_wasm_internal.wasm"),
    ("code-esbuild-patch-0.23.1", "@esbuild/linux-x64", "0.23.0", "0.23.1", "bin/esbuild"),
    ("code-esbuild-patch-0.24.2", "@esbuild/linux-x64", "0.24.0", "0.24.2", "bin/esbuild"),
    ("code-esbuild-minor-0.24.0", "@esbuild/linux-x64", "0.23.1", "0.24.0", "bin/esbuild"),
    ("code-libvips-patch-1.0.6", "@img/sharp-libvips-linux-x64", "1.0.4", "1.0.6", "lib/libvips-cpp.so.*"),
    ("code-libvips-minor-1.2.0", "@img/sharp-libvips-linux-x64", "1.0.6", "1.2.0", "lib/libvips-cpp.so.*"),
    ("code-biome-patch-1.9.4", "@biomejs/cli-linux-x64", "1.9.3", "1.9.4", "biome"),
    ("code-rollup-patch-4.24.1", "@rollup/rollup-linux-x64-gnu", "4.24.0", "4.24.1", "rollup.linux-x64-gnu.node"),
    ("code-lightningcss-minor-1.28.0", "lightningcss-linux-x64-gnu", "1.27.0", "1.28.0", "lightningcss.linux-x64-gnu.node"),
    ("code-sqljs-patch-1.10.3", "sql.js", "1.10.2", "1.10.3", "dist/sql-wasm.wasm"),
]


def npm_file(cache, package, version, path):
    """The bytes of `path` (a glob) inside `package`@`version`, packed once into CACHE/npm."""
    import glob
    d = os.path.join(cache, "npm", package.replace("/", "+") + "@" + version)
    if not os.path.isdir(os.path.join(d, "package")):
        os.makedirs(d, exist_ok=True)
        name = subprocess.run(["npm", "pack", "--silent", f"{package}@{version}"], cwd=d, check=True,
                              capture_output=True, text=True).stdout.strip().splitlines()[-1]
        with tarfile.open(os.path.join(d, name)) as t:
            t.extractall(d)
    (match,) = glob.glob(os.path.join(d, "package", path))
    with open(match, "rb") as f:
        return f.read()


def write_release_pairs(cache):
    for name, package, old, new, path in RELEASES:
        write_pair(cache, name, npm_file(cache, package, old, path), npm_file(cache, package, new, path))


def write_pair(cache, name, old, new):
    d = os.path.join(cache, "pairs", name)
    os.makedirs(d, exist_ok=True)
    for fname, data in (("old", old), ("new", new)):
        with open(os.path.join(d, fname), "wb") as f:
            f.write(data)
    print(f"{name}: {len(old)} -> {len(new)} bytes", flush=True)


# --- minimal protobuf walking (ONNX ModelProto → GraphProto → TensorProto) ---

def varint(buf, pos):
    v = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        v |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return v, pos


def put_varint(v):
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def fields(buf, begin, end):
    """Yields (field number, wire type, value start, value end, field start)."""
    pos = begin
    while pos < end:
        start = pos
        key, pos = varint(buf, pos)
        num, wt = key >> 3, key & 7
        if wt == 0:
            _, pos2 = varint(buf, pos)
        elif wt == 1:
            pos2 = pos + 8
        elif wt == 5:
            pos2 = pos + 4
        elif wt == 2:
            n, pos = varint(buf, pos)
            pos2 = pos + n
        else:
            raise ValueError(f"wire type {wt}")
        yield num, wt, pos, pos2, start
        pos = pos2


FLOAT, FLOAT16 = 1, 10


def tensors(model, dtype):
    """(raw_data start, end) of every initializer of `dtype` (FLOAT16, FLOAT), in file order."""
    out = []
    for num, wt, b, e, _ in fields(model, 0, len(model)):
        if num == 7 and wt == 2:  # graph
            for gnum, gwt, gb, ge, _ in fields(model, b, e):
                if gnum == 5 and gwt == 2:  # initializer
                    found, raw = None, None
                    for tnum, twt, tb, te, _ in fields(model, gb, ge):
                        if tnum == 2:
                            found, _ = varint(model, tb)
                        elif tnum == 9:
                            raw = (tb, te)
                    if found == dtype and raw:
                        out.append(raw)
    return out


def upcast_model(model):
    """The model with every FLOAT16 initializer re-encoded as FLOAT32."""
    def field_bytes(num, wt, payload):
        return put_varint((num << 3) | wt) + (put_varint(len(payload)) + payload if wt == 2 else payload)

    def rewrite_tensor(b, e):
        parts = list(fields(model, b, e))
        is_fp16 = any(n == 2 and varint(model, tb)[0] == FLOAT16 for n, _, tb, _, _ in parts)
        if not is_fp16:
            return model[b:e]
        out = bytearray()
        for n, wt, tb, te, start in parts:
            if n == 2:
                out += field_bytes(2, 0, put_varint(FLOAT))
            elif n == 9:
                count = (te - tb) // 2
                values = struct.unpack(f"<{count}e", model[tb:te])
                out += field_bytes(9, 2, struct.pack(f"<{count}f", *values))
            else:
                out += model[start:te]
        return bytes(out)

    def rewrite_graph(b, e):
        out = bytearray()
        for n, wt, gb, ge, start in fields(model, b, e):
            out += field_bytes(5, 2, rewrite_tensor(gb, ge)) if n == 5 and wt == 2 else model[start:ge]
        return bytes(out)

    out = bytearray()
    for n, wt, b, e, start in fields(model, 0, len(model)):
        out += field_bytes(7, 2, rewrite_graph(b, e)) if n == 7 and wt == 2 else model[start:e]
    return bytes(out)


def perturb(model, ranges, fmt, width, rel, seed, fraction=1.0):
    """Every value in the last `fraction` of the tensor bytes × (1 + N(0, rel))."""
    rng = random.Random(seed)
    out = bytearray(model)
    total = sum(e - b for b, e in ranges)
    skip = total - int(total * fraction)
    limit = 65504.0 if fmt == "e" else 3.4e38
    for b, e in ranges:
        if skip >= e - b:
            skip -= e - b
            continue
        b += skip - skip % width
        skip = 0
        count = (e - b) // width
        values = struct.unpack_from(f"<{count}{fmt}", out, b)
        gauss = rng.gauss
        new = [max(-limit, min(limit, v * (1.0 + gauss(0.0, rel)))) for v in values]
        struct.pack_into(f"<{count}{fmt}", out, b, *new)
    return bytes(out)


# The inserted weights: N(0, INSERT_SD), MIB bytes of them.
INSERT_SD = 0.05
# Float formats: (stored mantissa bits, smallest normal exponent).
FLOAT_FORMATS = {"e": (10, -14), "f": (23, -126)}


def insert_tensor(model, ranges, fmt, width, seed):
    rng = random.Random(seed)
    count = MIB // width
    fresh = struct.pack(f"<{count}{fmt}", *[rng.gauss(0.0, INSERT_SD) for _ in range(count)])
    at = ranges[len(ranges) // 2][1]
    return model[:at] + fresh + model[at:]


def quantized_gaussian_bits(fmt, sd):
    """Entropy in bits per value of N(0, sd) rounded to float format `fmt`: within
    a binade the values are evenly spaced, so a value's bin holds about
    pdf(x) * spacing (fp16: 13.4616 bits, against 13.4617 summed over all 65,536
    values)."""
    mantissa_bits, exponent_min = FLOAT_FORMATS[fmt]
    pdf = lambda x: math.exp(-x * x / (2 * sd * sd)) / (sd * math.sqrt(2 * math.pi))
    bits, steps = 0.0, 256
    for e in range(exponent_min, 64):
        lo, hi = (0.0 if e == exponent_min else 2.0 ** e), 2.0 ** (e + 1)
        if lo > 12 * sd:
            break
        spacing = 2.0 ** (max(e, exponent_min) - mantissa_bits)
        for i in range(steps):
            x = lo + (hi - lo) * (i + 0.5) / steps
            mass, p = pdf(x) * (hi - lo) / steps, pdf(x) * spacing
            if mass > 0 and p > 0:
                bits -= 2 * mass * math.log2(min(p, 1.0))  # both signs
    return bits


def entropy_floors():
    """Pair name -> the fewest bytes any delta can take: the entropy of the new
    weights the insert pairs add (everything else in them is a copy)."""
    return {f"{prefix}-insert": math.ceil(MIB // width * quantized_gaussian_bits(fmt, INSERT_SD) / 8)
            for prefix, fmt, width in (("fp16", "e", 2), ("fp32", "f", 4))}


def main():
    cache = sys.argv[1]
    dist_old, res_old = extract(cache, "1.4.0")
    dist_new, res_new = extract(cache, "1.4.5")
    wasm = [k for k in res_new if k.endswith(".wasm") and k in res_old]
    concat_old, concat_new = bytearray(), bytearray()
    for key in wasm:
        old, new = reassemble(dist_old, res_old[key]), reassemble(dist_new, res_new[key])
        write_pair(cache, "wasm-" + os.path.basename(key).removesuffix(".wasm"), old, new)
        concat_old += old
        concat_new += new
    write_pair(cache, "wasm-concat", bytes(concat_old), bytes(concat_new))

    medium_old = reassemble(dist_old, res_old["/models/medium"])
    medium = reassemble(dist_new, res_new["/models/medium"])
    write_pair(cache, "medium-unchanged", medium_old, medium)

    for prefix, model, fmt, width in (("fp16", medium, "e", 2), ("fp32", None, "f", 4)):
        model = model or upcast_model(medium)
        ranges = tensors(model, FLOAT16 if width == 2 else FLOAT)
        print(f"{prefix}: {len(ranges)} tensors, {sum(e - b for b, e in ranges)} bytes of weights", flush=True)
        write_pair(cache, f"{prefix}-head", model, perturb(model, ranges, fmt, width, 0.01, 1, 0.05))
        write_pair(cache, f"{prefix}-full", model, perturb(model, ranges, fmt, width, 1e-3, 2))
        write_pair(cache, f"{prefix}-insert", model, insert_tensor(model, ranges, fmt, width, 3))
    write_tiled_pair(cache, "fp16-full-x24", "fp16-full", 24)
    write_release_pairs(cache)


def write_tiled_pair(cache, name, source, times):
    """A large pair: both files of pair `source`, each repeated `times` times (streamed)."""
    d = os.path.join(cache, "pairs", name)
    os.makedirs(d, exist_ok=True)
    for fname in ("old", "new"):
        with open(os.path.join(cache, "pairs", source, fname), "rb") as f:
            data = f.read()
        with open(os.path.join(d, fname), "wb") as f:
            for _ in range(times):
                f.write(data)
    print(f"{name}: {source} x {times} = {len(data) * times} bytes", flush=True)


if __name__ == "__main__":
    main()
