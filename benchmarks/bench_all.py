"""Run `napari-polyp bench` for every network at its native size, in eager torch and in ONNX
Runtime; print a Markdown table with both side by side and their ratio from the same run.

    python benchmarks/bench_all.py --device cpu --threads 2
    python benchmarks/bench_all.py --models microaunet,eam-net --runs 50
    python benchmarks/bench_all.py --device cuda --amp --batch 8      # GPU: torch only

Each measurement runs in its own process so peak-RSS figures do not carry over;
each network's two engines run back to back, so they share the machine's load.
"""
import argparse
import json
import os
import subprocess
import sys

import models


def bench(name: str, engine: str, args) -> dict:
    cmd = [sys.executable, "-m", "napari_polyp.cli", "bench", "--model", name, "--device", args.device,
           "--batch", str(args.batch), "--runs", str(args.runs), "--engine", engine, "--json"]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if args.amp:
        cmd.append("--amp")
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--amp", action="store_true")
    parser.add_argument("--models", default="", help="comma-separated (default: all registered)")
    args = parser.parse_args()
    names = [m for m in args.models.split(",") if m] or models.list_models()
    engines = ["torch", "onnxruntime"] if args.device == "cpu" and not args.amp else ["torch"]
    print(f"device {args.device}, batch {args.batch}, median of {max(args.runs, 20)} runs, cpus {os.cpu_count()}, "
          f"load average at start {os.getloadavg()[0]:.2f}")
    print("| network | input | params | GFLOPs | threads | torch ms | torch fps | ORT ms | ORT fps | "
          "ORT speed-up | ORT export s | peak memory MiB torch / ORT |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in names:
        r = {engine: bench(name, engine, args) for engine in engines}
        t, o = r["torch"], r.get("onnxruntime")
        ort_cells = (f"{o['median_ms']:.1f} | {o['fps']:.1f} | {t['median_ms'] / o['median_ms']:.2f}× | "
                     f"{o['export_s']} | {t['peak_memory_mb']:.0f} / {o['peak_memory_mb']:.0f}"
                     if o and o["engine"] == "onnxruntime" else f"- | - | - | - | {t['peak_memory_mb']:.0f}")
        print(f"| {name} | {t['size']}² | {t['params'] / 1e6:.3g} M | {t['gflops']:.3g} | {t['threads'] or '-'} | "
              f"{t['median_ms']:.1f} | {t['fps']:.1f} | {ort_cells} |", flush=True)
    print(f"load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
