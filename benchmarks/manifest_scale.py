"""How a corrections dataset scales with its manifest: the first read, a later read and a save at
100, 10,000 and 100,000 manifest lines (at most 10,000 items). A save must cost the same at any length.

    python benchmarks/manifest_scale.py
"""
import json
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from napari_polyp.corrections import CorrectionsDataset

SHAPE = (20, 24)


def mask(rows: int) -> np.ndarray:
    out = np.zeros(SHAPE, np.uint8)
    out[:rows, 4:10] = 1
    return out


def dataset_with_lines(count: int) -> Path:
    """A dataset whose manifest has ``count`` lines: item 'a', then copies of its record for 10,000 stems."""
    root = Path(tempfile.mkdtemp()) / "ds"
    image = np.random.default_rng(1).integers(0, 256, (*SHAPE, 3), dtype=np.uint8)
    CorrectionsDataset(root).save(image, mask(3), stem="a", status="accepted")
    record = json.loads((root / "manifest.jsonl").read_text().splitlines()[0])
    with open(root / "manifest.jsonl", "a") as fh:
        for i in range(count - 1):
            fh.write(json.dumps({**record, "stem": f"s{i % 10000}", "version": i // 10000 + 1}) + "\n")
    return root


def seconds(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def main() -> None:
    warnings.simplefilter("ignore")
    for count in (100, 10_000, 100_000):
        root = dataset_with_lines(count)
        dataset = CorrectionsDataset(root)
        first, again = seconds(dataset.items), seconds(dataset.items)
        saves = sorted(seconds(lambda k=k: dataset.save(mask=mask(4 + k % 5), stem="a", status="corrected"))
                       for k in range(10))
        cold = seconds(lambda: CorrectionsDataset(root).save(mask=mask(2), stem="a", status="corrected"))
        print(f"{count:>7} lines: first read {first:.2f} s, next read {again * 1000:.1f} ms, save median "
              f"{saves[5] * 1000:.1f} ms (max {saves[-1] * 1000:.1f}), save by a new dataset object {cold:.2f} s",
              flush=True)


if __name__ == "__main__":
    main()
