"""Pack training data pre-resized into a small folder that a lent GPU machine can carry.

    .venv/bin/python tools/pack_data.py                       # Kvasir-SEG at 352 px, PH2 at 256 px
    .venv/bin/python tools/pack_data.py --set kvasir-seg:352 --quality 90

Each image is resized to a square exactly as training resizes it
(``napari_polyp.training.data.resize_like_inference`` / ``resize_mask``) and saved as JPEG
(images) and 0/255 PNG (masks) under the same file stem, into
``.gpu/data/<set>-<size>/{images,masks}`` (``/.gpu/`` is git-ignored). Training at that size
then reads the very pixels the CPU path trains on, up to JPEG loss; a smaller training size
resizes once more from the pack. The stems are kept, so ``split_stems(stems, 0.1, 0)``
picks the same validation images as on the full-size data.

The whole travelling tree must stay under the device's 64 MiB: the script prints the pack's
size and the size of the tracked files beside it.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from napari_polyp.io import read_image, read_mask  # noqa: E402
from napari_polyp.training.data import find_pairs, resize_like_inference, resize_mask, split_stems  # noqa: E402

PACK_DIR = ROOT / ".gpu" / "data"
DEVICE_TREE_LIMIT = 64 * 2 ** 20  # what one device call carries, tracked files included
# Kvasir-SEG at EA-DK's 352 px (PEFNet's 256 px is resized from it); PH2 at EAM-Net's 256 px.
DEFAULT_SETS = ("kvasir-seg:352", "ph2:256")


def pack_set(source: Path, size: int, dest: Path, quality: int) -> dict:
    """Write ``dest/images/<stem>.jpg`` and ``dest/masks/<stem>.png``; returns the pack's facts."""
    from PIL import Image

    pairs = find_pairs(source)
    for sub in ("images", "masks"):
        (dest / sub).mkdir(parents=True, exist_ok=True)
    for pair in pairs:
        image = resize_like_inference(read_image(pair.image), size)
        mask = resize_mask(read_mask(pair.mask), size) * np.uint8(255)
        # 4:4:4 chroma: at this size 2x2 chroma subsampling blurs the polyp's colour edge
        Image.fromarray(image).save(dest / "images" / f"{pair.stem}.jpg", quality=quality, subsampling=0)
        Image.fromarray(mask).save(dest / "masks" / f"{pair.stem}.png", optimize=True)
    stems = [p.stem for p in pairs]
    facts = {"source": str(source.resolve()), "size": size, "jpeg_quality": quality, "pairs": len(pairs),
             "val_stems": split_stems(stems, 0.1, 0)[1], "bytes": folder_bytes(dest)}
    (dest / "pack.json").write_text(json.dumps(facts, indent=1))
    return facts


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def tracked_bytes() -> int:
    """Bytes of the files git tracks (they travel with every device call)."""
    names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    paths = [ROOT / n for n in names.decode().split("\0") if n]
    return sum(p.stat().st_size for p in paths if p.is_file())


def mib(n: int) -> str:
    return f"{n / 2 ** 20:.1f} MiB"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"),
                        help="folder holding kvasir-seg/ and ph2/ (default ../shared/data)")
    parser.add_argument("--set", action="append", default=None, metavar="NAME:SIZE",
                        help=f"data set and square side (repeatable; default {' '.join(DEFAULT_SETS)})")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality (90: ~33 KiB a 352 px image)")
    parser.add_argument("--out", default=str(PACK_DIR))
    args = parser.parse_args(argv)
    for spec in args.set or DEFAULT_SETS:
        name, _, size = spec.partition(":")
        dest = Path(args.out) / f"{name}-{size}"
        facts = pack_set(Path(args.data_root) / name, int(size), dest, args.quality)
        print(f"{dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest}: {facts['pairs']} pairs at "
              f"{size} px, {mib(facts['bytes'])}")
    pack, tracked = folder_bytes(Path(args.out)), tracked_bytes()
    print(f"pack {mib(pack)} + tracked files {mib(tracked)} = {mib(pack + tracked)} "
          f"(device limit {mib(DEVICE_TREE_LIMIT)}, untracked files not counted)")
    return 0 if pack + tracked < DEVICE_TREE_LIMIT else 1


if __name__ == "__main__":
    raise SystemExit(main())
