"""Durability benchmark of the corrections dataset: kill saving processes at random
moments (SIGKILL) many times and count how often the dataset survived.

A kill "survived" when afterwards the dataset reads, every current item loads, each
mask is the one its record names, the previous good mask is in history/, and no save
the process had reported as done is missing.

    python benchmarks/durability.py [--kills 200] [--seed 0] [--dir PATH]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.corrections.durability_harness import run_kills  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dir", type=Path, default=None, help="dataset folder (default: a temporary one)")
    args = parser.parse_args(argv)
    root = args.dir or Path(tempfile.mkdtemp(prefix="durability-"))
    start = time.perf_counter()
    report = run_kills(str(root), args.kills, seed=args.seed, verbose=True)
    seconds = time.perf_counter() - start
    print(json.dumps({k: v for k, v in report.items() if k != "failures"}, indent=1))
    for trial, problems in report["failures"][:10]:
        print(f"kill {trial} failed: {problems}")
    print(f"{report['survived']} / {report['kills']} kills survived "
          f"({report['saves_completed']} saves completed between kills, {seconds:.0f} s); dataset at {root}")
    return 0 if report["survived"] == report["kills"] and not report["final_problems"] else 1


if __name__ == "__main__":
    sys.exit(main())
