"""Cold start: seconds from the `napari-polyp app` command to its first mask on screen.

    xvfb-run -a python benchmarks/cold_start.py [--repeats 3] [--task colonoscopy] [--model NAME]

Runs ``napari-polyp app --screenshot`` (the same start-up as the interactive app: the
network is built in a background thread while napari starts, Run is pressed once the
window is up) in a fresh process each time, and reads the app's own figure: the time
from the process start (the OS's record of it) to the mask layer being there, before
the screenshot is taken. The ONNX graph and the backbone come from the user's cache,
as on every launch after the first; the first launch also exports the graph (see the
``export_s`` of ``napari-polyp bench --engine onnxruntime``).
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--task", default="colonoscopy")
    parser.add_argument("--model", default=None)
    args = parser.parse_args(argv)
    command = [sys.executable, "-m", "napari_polyp.cli", "app", "--task", args.task]
    if args.model:
        command += ["--model", args.model]
    print(f"cpus {os.cpu_count()}, load avg {os.getloadavg()[0]:.2f}; {' '.join(command[2:])}")
    figures = []
    with tempfile.TemporaryDirectory() as scratch:
        for i in range(args.repeats):
            start = time.perf_counter()
            out = subprocess.run(command + ["--screenshot", os.path.join(scratch, f"shot{i}.png")],
                                 capture_output=True, text=True)
            wall = time.perf_counter() - start
            found = re.search(r"first mask after ([\d.]+) s \(([\d.]+) s after the command, ([\d.]+) s of CPU\)",
                              out.stdout)
            if out.returncode != 0 or not found:
                raise SystemExit(f"app failed:\n{out.stdout[-1000:]}\n{out.stderr[-2000:]}")
            run_to_mask, since_command, cpu = (float(g) for g in found.groups())
            figures.append(since_command)
            print(f"run {i + 1}: first mask {since_command:.2f} s after the command, {cpu:.1f} s of CPU by then "
                  f"(Run -> mask {run_to_mask:.2f} s; "
                  f"process wall incl. screenshot and exit {wall:.1f} s; load avg {os.getloadavg()[0]:.2f})",
                  flush=True)
    print(f"median {statistics.median(figures):.2f} s, best {min(figures):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
