"""Nothing is ever lost: saves killed at random moments, killed at every step, and
two processes saving into one dataset at once."""
import json
import subprocess

import numpy as np
import pytest

from napari_polyp.corrections import CorrectionsDataset
from . import durability_harness as harness

CRASH_POINTS = ("after-history", "after-image", "before-mask", "after-mask", "after-record")


def test_random_sigkills_never_lose_the_last_good_mask(tmp_path):
    report = harness.run_kills(str(tmp_path / "ds"), kills=30, seed=4)
    assert report["failures"] == [] and report["final_problems"] == []
    assert report["survived"] == 30
    assert report["saves_completed"] > 0  # the kills did land among real saves


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_a_save_killed_at_each_step_leaves_the_previous_version(tmp_path, point):
    root = str(tmp_path / "ds")
    ds = CorrectionsDataset(root)
    ds.save(harness.image_for(0), harness.mask_for(1), stem=harness.ITEM, status="corrected")
    done = harness.run_crash_point(root, point)
    assert done.returncode == 137, done.stderr[-2000:]
    assert harness.check_dataset(root) == []
    expected = 2 if point == "after-record" else 1
    record = ds.get(harness.ITEM)
    assert record.version == expected
    np.testing.assert_array_equal(ds.load_mask(harness.ITEM), harness.mask_for(expected))
    # the next save (no crash) repairs whatever was left and carries on
    ds.save(mask=harness.mask_for(expected + 1), stem=harness.ITEM, status="corrected")
    assert harness.check_dataset(root) == []
    assert ds.get(harness.ITEM).version == expected + 1
    assert not list((tmp_path / "ds").rglob(".tmp-*"))


def test_two_processes_saving_at_once_keep_the_index_intact(tmp_path):
    root = str(tmp_path / "ds")
    start = str(tmp_path / "go")
    count = 12
    procs = [
        subprocess.Popen(harness._child_command("concurrent", root, prefix, str(count), start),
                         env=harness._child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for prefix in ("a", "b")
    ]
    open(start, "w").close()
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0 and out.strip() == "done", err[-2000:]

    lines = (tmp_path / "ds" / "manifest.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every line is a whole record
    assert len(records) == 4 * count
    ds = CorrectionsDataset(root)
    stems = {r.stem for r in ds.items()}
    assert stems == {f"{p}{i}" for p in "ab" for i in range(count)} | {"shared"}
    shared = [r for r in records if r["stem"] == "shared"]
    assert [r["version"] for r in shared] == list(range(1, 2 * count + 1))  # no version taken twice
    assert {r["note"] for r in shared} == {f"{p}{i}" for p in "ab" for i in range(count)}  # both writers' saves
    assert [v for v, _ in ds.history("shared")] == list(range(1, 2 * count))
    for record in ds.items():
        ds.load(record.stem)
