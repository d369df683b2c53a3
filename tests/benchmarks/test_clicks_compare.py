"""benchmarks/clicks_compare.py: two runs' per-image rows compared image by image."""
import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "clicks_compare.py"
spec = importlib.util.spec_from_file_location("clicks_compare", SCRIPT)
clicks_compare = importlib.util.module_from_spec(spec)
spec.loader.exec_module(clicks_compare)


def _rows(path: Path, nocs, set_name="etis20", start="default"):
    with path.open("w") as out:
        for index, noc in enumerate(nocs):
            out.write(json.dumps({"set": set_name, "start": start, "method": "refiner", "stem": f"{index:03d}",
                                  "iou": [0.5], "noc": {"0.85": noc, "0.9": noc, "0.95": 20}}) + "\n")
    return path


def test_a_change_on_every_image_is_told_from_one_images_luck(tmp_path, capsys):
    before = _rows(tmp_path / "a.jsonl", [3, 5, 20, 1, 0, 8, 2, 4, 6, 0] * 2)
    every_image = _rows(tmp_path / "b.jsonl", [2, 4, 19, 0, 0, 7, 1, 3, 5, 0] * 2)  # one click fewer on 16 of 20
    one_image = _rows(tmp_path / "c.jsonl", [3, 5, 4, 1, 0, 8, 2, 4, 6, 0] + [3, 5, 20, 1, 0, 8, 2, 4, 6, 0])
    (real,) = clicks_compare.compare(clicks_compare.read_rows(before, "0.9"), clicks_compare.read_rows(every_image, "0.9"))
    (luck,) = clicks_compare.compare(clicks_compare.read_rows(before, "0.9"), clicks_compare.read_rows(one_image, "0.9"))
    assert real["change"].mean == pytest.approx(-0.8) and real["change"].high < 0 and real["fewer"] == 16
    assert luck["change"].mean == pytest.approx(-0.8) and luck["change"].high >= 0 and luck["fewer"] == 1
    assert clicks_compare.main([str(before), str(every_image)]) == 0
    table = capsys.readouterr().out
    assert "| etis20 | default | refiner | 20 |" in table and "-0.80 [" in table and "16 / 0" in table


def test_only_the_images_both_runs_measured_are_compared(tmp_path):
    before = _rows(tmp_path / "a.jsonl", [1, 2, 3, 4])
    after = _rows(tmp_path / "b.jsonl", [1, 2])
    _rows(tmp_path / "c.jsonl", [1, 2], set_name="kvasir-val")
    (row,) = clicks_compare.compare(clicks_compare.read_rows(before, "0.9"), clicks_compare.read_rows(after, "0.9"))
    assert row["n"] == 2
    with pytest.raises(SystemExit, match="share no"):
        clicks_compare.main([str(before), str(tmp_path / "c.jsonl")])


def test_a_file_that_is_not_per_image_rows_is_one_message(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"set": "etis20"}\n')
    good = _rows(tmp_path / "a.jsonl", [1, 2])
    with pytest.raises(SystemExit, match="bad.jsonl: line 1 is not a clicks.py --per-image row"):
        clicks_compare.main([str(bad), str(good)])
    with pytest.raises(SystemExit, match="no such file"):
        clicks_compare.main([str(good), str(tmp_path / "missing.jsonl")])
