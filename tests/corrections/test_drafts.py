"""Drafts of masks being edited (issue 24, item 6): written atomically, read back, removed."""
import numpy as np

from napari_polyp.corrections import CorrectionsDataset
from napari_polyp.corrections.drafts import FOLDER, Drafts


def test_a_draft_is_written_read_back_and_discarded(tmp_path):
    drafts = Drafts(tmp_path)
    assert drafts.load("im0") is None
    mask = np.zeros((12, 16), np.uint8)
    mask[2:6, 3:9] = 1
    drafts.save("im0", mask)
    found = drafts.load("im0")
    np.testing.assert_array_equal(found.mask, mask)
    assert len(found.saved_at) == 8  # HH:MM:SS
    mask[0, 0] = 1
    drafts.save("im0", mask)  # replaced, not added beside
    assert [p.name for p in (tmp_path / FOLDER).iterdir()] == ["im0.png"]
    drafts.discard("im0")
    drafts.discard("im0")  # twice: no error
    assert drafts.load("im0") is None


def test_an_unreadable_draft_is_no_draft_and_the_dataset_ignores_drafts(tmp_path):
    drafts = Drafts(tmp_path)
    (tmp_path / FOLDER).mkdir()
    drafts.path("bad").write_bytes(b"not a png")
    assert drafts.load("bad") is None and drafts.path("bad").exists()  # left for a person to look at
    dataset = CorrectionsDataset(tmp_path)
    mask = np.zeros((12, 16), np.uint8)
    mask[2:6, 3:9] = 1
    drafts.save("a", mask)
    dataset.save(np.full((12, 16, 3), 80, np.uint8), mask, stem="a", status="corrected")
    assert list(dataset.latest()) == ["a"]
