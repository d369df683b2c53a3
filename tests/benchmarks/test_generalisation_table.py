"""benchmarks/generalisation.py's table: intervals over images and scenes, and the paired change."""
import importlib.util
from pathlib import Path

from napari_polyp.training.intervals import mean_interval

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "generalisation.py"
spec = importlib.util.spec_from_file_location("generalisation", SCRIPT)
generalisation = importlib.util.module_from_spec(spec)
spec.loader.exec_module(generalisation)


def _set(dices, scenes=None):
    row = {"n": len(dices), "dice": sum(dices) / len(dices), "interval": mean_interval(dices).as_dict(),
           "per_image": {f"{i:03d}": d for i, d in enumerate(dices)}}
    if scenes is not None:
        row["scene_interval"] = mean_interval(dices, groups=scenes).as_dict()
    return row


def test_each_checkpoint_row_shows_its_intervals_and_its_change_from_the_first():
    home = [0.9, 0.95, 0.85, 0.92, 0.88, 0.93]
    centre = [0.9, 0.8, 0.0, 0.1, 0.85, 0.9]
    scenes = [0, 0, 1, 1, 2, 2]
    first = {"model": "ea-dk", "checkpoint": "a.pt", "kvasir-seg": _set(home),
             "etis20": _set(centre, scenes), "cvc612-seq": _set(home, [0] * 6)}
    better = [d + 0.05 for d in centre]
    second = {"model": "ea-dk", "checkpoint": "b.pt", "kvasir-seg": _set(home),
              "etis20": _set(better, scenes), "cvc612-seq": _set(home, [0] * 6)}
    lines = generalisation.markdown_table([first, second]).splitlines()
    assert lines[0].startswith("| checkpoint | kvasir-seg Dice (n=6), 95 % interval")
    assert lines[2].startswith("| a.pt | ") and "change" not in lines[2]
    assert ", over 3 scenes [" in lines[2] and "one scene: no interval over scenes" in lines[2]
    assert lines[3].startswith("| b.pt | ") and "change +0.050 [+0.050, +0.050]" in lines[3]  # every frame +0.05
    assert "change +0.000" in lines[3]  # the same figures at home
