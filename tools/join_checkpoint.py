"""Join a checkpoint that came back from a lent GPU machine in parts (``split_parts``).

    .venv/bin/python tools/join_checkpoint.py FILES_AT/ea-dk.pt.parts.json      # -> runs/gpu/ea-dk.pt
    .venv/bin/python tools/join_checkpoint.py MANIFEST --install   # into models/checkpoints(/large)

Every part's sha256 and the whole file's are checked (``models.checkpoint.join_parts``), then
the checkpoint itself is read (architecture, weights sha256). ``--install`` puts it where
``create_model`` finds it: ``models/checkpoints/<architecture>.pt``, or, over 20 MB,
``models/checkpoints/large/<architecture>.pt`` recorded with its sha256 in ``large.json``.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import models.checkpoint as ckpt  # noqa: E402  (its SHIPPED_DIR read at call time: tests move it)


def default_dest(manifest) -> Path:
    return ROOT / "runs" / "gpu" / Path(manifest).name[:-len(ckpt.PARTS_SUFFIX)]


def install(joined: Path, architecture: str) -> Path:
    large = joined.stat().st_size > ckpt.LARGE_CHECKPOINT_BYTES
    dest = ckpt.SHIPPED_DIR / ("large" if large else "") / f"{architecture}.pt"
    dest.parent.mkdir(parents=True, exist_ok=True)
    joined.replace(dest)
    if large:
        ckpt.record_large_checkpoint(architecture, dest)
    return dest


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest", help="<name>.parts.json written beside the parts")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--dest", default=None, help="joined file (default: runs/gpu/<name>; the device's "
                                                    "files arrive read-only)")
    where.add_argument("--install", action="store_true", help="into models/checkpoints (large/ over 20 MB)")
    args = parser.parse_args(argv)
    try:
        with tempfile.TemporaryDirectory(dir=ckpt.SHIPPED_DIR.parent if args.install else None) as tmp:
            dest = Path(tmp) / "joined.pt" if args.install else args.dest or default_dest(args.manifest)
            joined = ckpt.join_parts(args.manifest, dest)
            header, _ = ckpt.read_checkpoint(joined)
            if args.install:
                joined = install(joined, header["architecture"])
    except ckpt.CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(json.dumps({"checkpoint": str(joined), "architecture": header["architecture"],
                      "variant": header.get("variant"), "bytes": joined.stat().st_size,
                      "weights_sha256": header["sha256"], "metrics": header.get("metrics")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
