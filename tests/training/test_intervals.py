"""Bootstrap intervals: they hold the mean, cover the truth as often as they say, and pairing finds
a small change that the spread between images hides."""
import json

import numpy as np
import pytest

from napari_polyp.training.intervals import Interval, mean_interval, paired_interval


def test_the_interval_holds_the_mean_and_narrows_with_more_items():
    rng = np.random.default_rng(1)
    small, large = rng.uniform(0.4, 1.0, 20), rng.uniform(0.4, 1.0, 320)
    a, b = mean_interval(small), mean_interval(large)
    assert a.low < a.mean < a.high and b.low < b.mean < b.high
    assert a.mean == pytest.approx(small.mean()) and a.n == 20
    assert (b.high - b.low) < 0.5 * (a.high - a.low)  # 16 times the items: about a quarter of the width


def test_the_same_seed_gives_the_same_interval():
    values = np.random.default_rng(2).integers(0, 21, 90)
    assert mean_interval(values) == mean_interval(values)
    assert mean_interval(values, seed=1).mean == mean_interval(values).mean


def test_a_95_percent_interval_covers_the_true_mean_about_95_times_in_100():
    """Dice-like scores of 20 images (skewed towards 1 and bounded, Beta(8, 1.5)): the BCa interval
    covers the true mean in close to its stated share of repeated sets."""
    rng = np.random.default_rng(3)
    a, b = 8.0, 1.5
    true_mean = a / (a + b)
    repeats = 200
    covered = 0
    for _ in range(repeats):
        interval = mean_interval(rng.beta(a, b, 20), resamples=1000, seed=int(rng.integers(1 << 30)))
        covered += interval.low <= true_mean <= interval.high
    assert 0.88 <= covered / repeats <= 0.99


def test_pairing_finds_a_small_change_that_the_spread_between_images_hides():
    rng = np.random.default_rng(4)
    before = rng.uniform(0.2, 0.95, 20)  # images differ a lot
    after = np.clip(before + rng.normal(0.02, 0.01, 20), 0, 1)  # every image a little better
    unpaired_before, unpaired_after = mean_interval(before), mean_interval(after)
    assert unpaired_after.low < unpaired_before.high  # apart, the two intervals overlap
    change = paired_interval(before, after)
    assert change.excludes_zero() and change.low > 0
    assert change.mean == pytest.approx((after - before).mean())


def test_no_change_is_an_interval_around_zero():
    before = np.random.default_rng(5).uniform(0.5, 1.0, 30)
    after = before + np.random.default_rng(6).normal(0, 0.02, 30)
    change = paired_interval(before, after)
    assert change.low < 0 < change.high and not change.excludes_zero()


def test_degenerate_sets_get_an_honest_answer():
    assert mean_interval([3, 3, 3, 3]) == Interval(3.0, 3.0, 3.0, 4)  # nothing varies
    one = mean_interval([0.7])
    assert one.mean == 0.7 and np.isnan(one.low) and "no interval" in one.format()
    assert mean_interval([0, 0, 0, 20]).high > 5  # one stuck image of four: a wide interval, not a NaN
    with pytest.raises(ValueError, match="finite"):
        mean_interval([0.5, float("nan")])
    with pytest.raises(ValueError, match="same items"):
        paired_interval([1, 2, 3], [1, 2])


def test_the_interval_reads_as_the_tables_print_it():
    assert Interval(0.69, 0.571, 0.795, 20).format() == "0.690 [0.571, 0.795]"
    assert Interval(0.012, -0.004, 0.03, 20).format(signed=True) == "+0.012 [-0.004, +0.030]"
    assert Interval(1.7, 1.09, 2.72, 90).as_dict(2) == {"mean": 1.7, "low": 1.09, "high": 2.72, "n": 90,
                                                        "level": 0.95}
    none = mean_interval([0.7] * 20 + [0.4], groups=[0] * 21)  # one scene: no ends, and JSON has no NaN
    record = json.loads(json.dumps(none.as_dict(), allow_nan=False))
    assert record["low"] is None and record["groups"] == 1
    back = Interval.from_dict(record)
    assert back.groups == 1 and np.isnan(back.high) and back.format() == none.format()


def test_resampling_whole_scenes_widens_the_interval_of_frames_that_move_together():
    """Four scenes of six alike frames each (a video's frames of one polyp score alike): over frames
    the interval pretends to 24 independent images, over scenes it is as wide as four are."""
    rng = np.random.default_rng(7)
    scene_means = [0.9, 0.2, 0.85, 0.6]
    values = np.concatenate([rng.normal(m, 0.02, 6) for m in scene_means])
    scenes = np.repeat(np.arange(4), 6)
    frames, whole = mean_interval(values), mean_interval(values, groups=scenes)
    assert whole.groups == 4 and frames.groups == 0 and whole.mean == pytest.approx(frames.mean)
    assert whole.high - whole.low > 1.5 * (frames.high - frames.low)
    assert whole.low <= whole.mean <= whole.high
    assert whole.low >= min(scene_means) - 0.05 and whole.high <= max(scene_means) + 0.05


def test_one_scene_gives_no_interval_however_many_frames():
    one = mean_interval(np.linspace(0.6, 0.8, 20), groups=["seq"] * 20)
    assert one.groups == 1 and np.isnan(one.low) and one.format() == "0.700 (n = 20 in 1 scene: no interval)"
    with pytest.raises(ValueError, match="one scene label per item"):
        mean_interval([0.5, 0.6], groups=[0])


def test_scenes_are_found_as_the_fine_tune_folds_find_them():
    """Two runs of alike frames (a dark scene, then a bright one), given out of order: each frame gets
    its run's number, in the order the stems were given."""
    from napari_polyp.training.intervals import scene_groups

    rng = np.random.default_rng(8)
    dark = [np.full((32, 32, 3), 40 + i, np.uint8) + rng.integers(0, 3, (32, 32, 3), dtype=np.uint8) for i in range(4)]
    bright = [np.full((32, 32, 3), 200 + i, np.uint8) for i in range(4)]
    stems = [f"frame{i}" for i in range(1, 9)]
    shuffled = [7, 0, 3, 5, 1, 6, 2, 4]
    groups = scene_groups([stems[i] for i in shuffled], [(dark + bright)[i] for i in shuffled])
    assert groups == [1 if i >= 4 else 0 for i in shuffled]
