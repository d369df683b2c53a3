"""Two runs of ``benchmarks/clicks.py --per-image`` compared image by image: is the change real?

    python benchmarks/clicks_compare.py BEFORE.jsonl AFTER.jsonl [--target 0.9]

For each (set, start, method) in both files, on the images both measured: NoC at ``--target``
before and after, the mean change with its paired 95 % bootstrap interval
(``napari_polyp.training.intervals``), and how many images needed fewer and more clicks. A change
whose interval holds 0 is within what resampling the images gives: one stuck image moves NoC@90
over 90 images by up to 0.2 (docs/benchmarks.md, "Intervals").
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def read_rows(path: Path, target: str) -> dict:
    """{(set, start, method): {stem: clicks to ``target``}}; a later line for an image replaces an earlier one."""
    runs = defaultdict(dict)
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            runs[(row["set"], row["start"], row["method"])][row["stem"]] = int(row["noc"][target])
        except (ValueError, KeyError, TypeError) as error:
            raise SystemExit(f"{path}: line {number} is not a clicks.py --per-image row ({error})")
    return runs


def compare(before: dict, after: dict) -> list:
    """One dict per (set, start, method) both runs measured."""
    from napari_polyp.training.intervals import mean_interval, paired_interval

    results = []
    for key in sorted(before.keys() & after.keys()):
        stems = sorted(before[key].keys() & after[key].keys())
        if not stems:
            continue
        a, b = [before[key][s] for s in stems], [after[key][s] for s in stems]
        results.append({"set": key[0], "start": key[1], "method": key[2], "n": len(stems),
                        "before": mean_interval(a), "after": mean_interval(b), "change": paired_interval(a, b),
                        "fewer": sum(y < x for x, y in zip(a, b)), "more": sum(y > x for x, y in zip(a, b))})
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--target", default="0.9", choices=("0.85", "0.9", "0.95"))
    args = parser.parse_args(argv)
    for path in (args.before, args.after):
        if not path.is_file():
            raise SystemExit(f"{path}: no such file (write one with benchmarks/clicks.py --per-image FILE)")
    results = compare(read_rows(args.before, args.target), read_rows(args.after, args.target))
    if not results:
        raise SystemExit(f"{args.before} and {args.after} share no (set, start, method) with images in both")
    label = f"NoC@{round(float(args.target) * 100)}"
    print(f"| set | start | method | n | {label} before | {label} after | change [95 % interval] | images fewer / more |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['set']} | {r['start']} | {r['method']} | {r['n']} | {r['before'].format(2)} | "
              f"{r['after'].format(2)} | {r['change'].format(2, signed=True)} | {r['fewer']} / {r['more']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
