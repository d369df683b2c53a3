"""Training reads a corrections dataset through the dataset's own crash-tolerant reader."""
import numpy as np
from PIL import Image

from napari_polyp.corrections.dataset import CorrectionsDataset
from napari_polyp.training.data import find_pairs, read_mask


def _dataset(root):
    dataset = CorrectionsDataset(root)
    rng = np.random.default_rng(0)
    for stem, status in (("a", "corrected"), ("b", "accepted"), ("c", "rejected")):
        image = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
        mask = np.zeros((32, 32), np.uint8)
        mask[8:20, 8:20] = 1
        dataset.save(image, mask, stem=stem, status=status)
    return dataset


def test_torn_last_manifest_line_is_ignored(tmp_path):
    _dataset(tmp_path)
    with open(tmp_path / "manifest.jsonl", "ab") as fh:
        fh.write(b'{"stem": "a", "status": "corr')  # a save killed mid-append
    assert [p.stem for p in find_pairs(tmp_path)] == ["a", "b"]


def test_unconfirmed_mask_of_a_killed_save_is_not_trained_on(tmp_path):
    dataset = _dataset(tmp_path)
    record = dataset.get("a")
    recorded = read_mask(find_pairs(tmp_path)[0].mask).copy()
    # A later save kept version 1 in history/, wrote its own mask file, and was killed
    # before appending its manifest record (the commit point).
    history = dataset.history_dir("a")
    history.mkdir(parents=True, exist_ok=True)
    (history / f"{record.version}.png").write_bytes((tmp_path / record.mask).read_bytes())
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / record.mask)
    pair = find_pairs(tmp_path)[0]
    assert pair.stem == "a"
    assert np.array_equal(read_mask(pair.mask), recorded)
