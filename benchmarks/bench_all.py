"""Run `napari-polyp bench` for every network at its native size; print a Markdown table.

    python benchmarks/bench_all.py --device cpu --threads 2
    python benchmarks/bench_all.py --device cuda --amp --batch 8

Each network runs in its own process so peak-RSS figures do not carry over.
"""
import argparse
import json
import subprocess
import sys

import models


def bench(name: str, args) -> dict:
    cmd = [sys.executable, "-m", "napari_polyp.cli", "bench", "--model", name, "--device", args.device,
           "--batch", str(args.batch), "--runs", str(args.runs), "--json"]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if args.amp:
        cmd.append("--amp")
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--amp", action="store_true")
    args = parser.parse_args()
    print("| network | input | params | GFLOPs | device | threads | batch | median ms | fps | peak memory MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in models.list_models():
        r = bench(name, args)
        print(f"| {name} | {r['size']}² | {r['params'] / 1e6:.3g} M | {r['gflops']:.3g} | {r['device']} | "
              f"{r['threads'] or '-'} | {r['batch']} | {r['median_ms']:.1f} | {r['fps']:.1f} | "
              f"{r['peak_memory_mb']:.0f} ({r['memory_kind']}) |", flush=True)


if __name__ == "__main__":
    main()
