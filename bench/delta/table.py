#!/usr/bin/env python3
"""Turns bench/delta results (TSV files from run.sh) into the markdown of RESULTS.md.

Columns of the TSV: pair, tool, delta bytes, new bytes, make s, make RSS KiB,
apply s, apply RSS KiB, ok (1 when the applied output equalled the new file).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_pairs import entropy_floors  # noqa: E402

TOOLS = [("meridian", "Meridian (LZMA literals)"), ("meridian-fast", "Meridian fast (zstd -12 literals)"), ("bsdiff", "bsdiff"), ("xdelta3", "xdelta3 -9"),
         ("zstd-patch", "zstd --patch-from -19 --long=31"), ("zstd-nobase", "zstd -19 --long=31 (no base)")]
PEERS = [t for t, _ in TOOLS if not t.startswith("meridian")]
SUM_PAIR = "wasm, each file (sum)"


def load(paths):
    rows = {}
    for line in (line for path in paths for line in open(path)):
        f = line.rstrip("\n").split("\t")
        if len(f) != 9:
            continue
        pair, tool = f[0], f[1]
        num = lambda s: float(s) if s not in ("fail", "") else None
        rows[(pair, tool)] = dict(size=int(f[2]), new=int(f[3]), make=num(f[4]), make_rss=int(f[5]),
                                  apply=num(f[6]), apply_rss=int(f[7]), ok=f[8] == "1")
    return rows


def add_sum(rows):
    """A row summing the per-file wasm pairs (only tools that succeeded on all)."""
    each = sorted({p for p, _ in rows if p.startswith("wasm-") and p != "wasm-concat"})
    if not each:
        return
    for tool, _ in TOOLS:
        rs = [rows.get((p, tool)) for p in each]
        if all(r and r["ok"] for r in rs):
            rows[(SUM_PAIR, tool)] = dict(
                size=sum(r["size"] for r in rs), new=sum(r["new"] for r in rs),
                make=sum(r["make"] for r in rs), make_rss=max(r["make_rss"] for r in rs),
                apply=sum(r["apply"] for r in rs), apply_rss=max(r["apply_rss"] for r in rs), ok=True)


def main():
    rows = load(sys.argv[1:])
    add_sum(rows)
    pairs = sorted({p for p, _ in rows}, key=lambda p: (not p.startswith("wasm"), p != SUM_PAIR, p))
    out = ["# bench/delta results", "",
           "Made by `bench/delta/run.sh` (recipe of the pairs: `make_pairs.py`). Sizes as % of the new",
           "file; every delta was applied and compared byte for byte (✗: failed, timed out or differed;",
           "\"not run\": skipped: bsdiff on the largest pairs, every peer on the 2.1 GB fp16-full-x24).",
           "Times are wall-clock seconds on the shared 2-core machine; RSS is the peak from",
           "`/usr/bin/time -v`.", "", "## Delta size", ""]
    out.append("| pair | new MB | " + " | ".join(n for _, n in TOOLS) + " | Meridian ÷ best peer |")
    out.append("| --- | --- |" + " --- |" * (len(TOOLS) + 1))
    for pair in pairs:
        cells, best = [], None
        new = next(r["new"] for (p, _), r in rows.items() if p == pair)
        for tool, _ in TOOLS:
            r = rows.get((pair, tool))
            if not r or not r["ok"]:
                cells.append("✗" if r else "not run")
                continue
            cells.append(f"{100 * r['size'] / r['new']:.2f} % ({r['size']:,})")
            if tool in PEERS and (best is None or r["size"] < best[1]):
                best = (tool, r["size"])
        m = rows.get((pair, "meridian"))
        ratio = f"{m['size'] / best[1]:.2f} (best: {best[0]})" if m and m["ok"] and best else "—"
        out.append(f"| {pair} | {new / 1e6:.1f} | " + " | ".join(cells) + f" | {ratio} |")

    for title, key, rss in (("Time to make (s) / peak RSS (MiB)", "make", "make_rss"),
                            ("Time to apply (s) / peak RSS (MiB)", "apply", "apply_rss")):
        out += ["", f"## {title}", ""]
        out.append("| pair | " + " | ".join(n for _, n in TOOLS) + " |")
        out.append("| --- |" + " --- |" * len(TOOLS))
        for pair in pairs:
            cells = []
            for tool, _ in TOOLS:
                r = rows.get((pair, tool))
                cells.append(f"{r[key]:.2f} s / {r[rss] / 1024:.0f}" if r and r["ok"] else "✗" if r else "not run")
            out.append(f"| {pair} | " + " | ".join(cells) + " |")

    out += ["", "## Targets", "",
            "Speed-up: zstd --patch-from's time to make ÷ Meridian's (and Meridian fast's). Entropy",
            "floor: the entropy of the new weights an insert pair adds (`make_pairs.entropy_floors`),",
            "the fewest bytes any delta can take, ÷ the best peer's delta: where it is above 0.90,",
            "0.90 is impossible.", "",
            "| pair | size ÷ best peer (≤ 0.90) | fast: size ÷ best peer | make speed-up (≥ 5×) |"
            " apply RSS MiB (≤ 64) | apply MB/s (≥ 200) |", "| --- | --- | --- | --- | --- | --- |"]
    floors = entropy_floors()
    speedups = {"meridian": [], "meridian-fast": []}
    for pair in pairs:
        m = rows.get((pair, "meridian"))
        f = rows.get((pair, "meridian-fast"))
        z = rows.get((pair, "zstd-patch"))
        for tool, r in (("meridian", m), ("meridian-fast", f)):
            if pair != SUM_PAIR and z and z["ok"] and r and r["ok"]:
                speedups[tool].append(z["make"] / max(r["make"], 0.01))
        if not m or not m["ok"]:
            continue
        best = min((rows[(pair, t)]["size"] for t in PEERS if (pair, t) in rows and rows[(pair, t)]["ok"]),
                   default=None)
        ratio = f"{m['size'] / best:.2f}" if best else "—"
        if best and pair in floors:
            # The fewest bytes any delta can take, as a ratio to the best peer.
            ratio += f" (entropy floor {floors[pair] / best:.2f})"
        fast_ratio = f"{f['size'] / best:.2f}" if best and f and f["ok"] else "—"
        speed = "—"
        if z and z["ok"]:
            speed = f"{z['make'] / max(m['make'], 0.01):.1f}×"
            if f and f["ok"]:
                speed += f" (fast {z['make'] / max(f['make'], 0.01):.1f}×)"
        mbps = m["new"] / 1e6 / max(m["apply"], 0.01)
        out.append(f"| {pair} | {ratio} | {fast_ratio} | {speed} | {m['apply_rss'] / 1024:.0f} | {mbps:.0f} |")
    median = lambda v: sorted(v)[len(v) // 2] if v else float("nan")
    out += ["", f"Median make speed-up over the pairs zstd ran on: {median(speedups['meridian']):.1f}× "
            f"(fast: {median(speedups['meridian-fast']):.1f}×)."]
    print("\n".join(out))


if __name__ == "__main__":
    main()
