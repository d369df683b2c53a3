"""Ship a click-refiner run's checkpoint as models/checkpoints/click-refiner.pt (float16).

    python tools/ship_click_refiner.py runs/clicks-frozen/best.pt --noc NOC.jsonl [--noc MORE.jsonl]

Keeps the run's training header (data, steps, recipe, validation stems) and its validation
metrics, the shipped file's profile (the architecture does not change), and adds the NoC
protocol rows ``benchmarks/clicks.py`` printed for this checkpoint (its JSON lines) as
``metrics["noc"]``. Refuses a file of another architecture; the weights are checked by sha256
on the way in and written atomically with their own sha256.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ARCHITECTURE = "click-refiner"


def noc_rows(paths) -> list:
    rows = []
    for path in paths:
        for line in Path(path).read_text().splitlines():
            if line.startswith("{") and '"noc"' in line:
                rows.append(json.loads(line))
    return rows


def main(argv=None) -> int:
    import models
    from models.checkpoint import SHIPPED_DIR, load_into, read_checkpoint, save_checkpoint

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--noc", action="append", default=[], help="benchmarks/clicks.py output for it")
    args = parser.parse_args(argv)
    header, state = read_checkpoint(args.checkpoint, expected_architecture=ARCHITECTURE)
    target = SHIPPED_DIR / f"{ARCHITECTURE}.pt"
    shipped, _ = read_checkpoint(target, expected_architecture=ARCHITECTURE)
    model = models.create_model(ARCHITECTURE, checkpoint=False)
    load_into(model, state, args.checkpoint, ARCHITECTURE)
    metrics = dict(header.get("metrics") or {}, noc=noc_rows(args.noc))
    written = save_checkpoint(model, target, architecture=ARCHITECTURE, variant=header.get("variant"),
                              training=header.get("training"), metrics=metrics,
                              extra={"profile": shipped.get("profile", {})}, half=True)
    print(json.dumps({"shipped": str(target), "bytes": target.stat().st_size, "sha256": written["sha256"],
                      "noc_rows": len(metrics["noc"])}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
