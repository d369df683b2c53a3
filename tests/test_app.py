"""`napari-polyp app`: the README's run command, and its --screenshot smoke mode."""
import os
import subprocess
import sys

import imageio.v3 as iio
import numpy as np
import pytest

import models
from napari_polyp import cli
from napari_polyp.app import open_app, run_once_and_screenshot

MODEL = "microaunet" if "microaunet" in models.list_models() else models.list_models()[0]


def test_open_app_docks_segment_with_sample_and_model(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer(show=True)
    widget = open_app(viewer, model=MODEL, device="cpu")
    assert type(widget).__name__ == "SegmentWidget"
    assert "Workspace (napari-polyp)" in viewer.window._dock_widgets  # docked as a user gets it
    assert widget.model_combo.currentText() == MODEL
    assert widget.image_layer() is not None and widget.image_layer().name.startswith("colonoscopy")
    path = run_once_and_screenshot(viewer, widget, tmp_path / "app.png", timeout=300)
    assert widget.mask_layer() is not None
    shot = iio.imread(path)
    assert shot.shape[0] > 200 and float(shot[..., :3].astype(float).var()) > 50.0


def test_bad_image_is_one_clean_error(tmp_path, capsys):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    assert cli.main(["app", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "notes.png" in err and "is not a PNG image" in err and "Traceback" not in err
    assert cli.main(["app", "--model", "no-such-net", "--screenshot", str(tmp_path / "x.png")]) == 2
    assert "unknown model" in capsys.readouterr().err


@pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="needs an X display (pytest-xvfb provides one)")
def test_command_line_screenshot(tmp_path):
    image = np.zeros((80, 96, 3), np.uint8)
    image[20:60, 30:70] = (220, 130, 120)
    iio.imwrite(tmp_path / "in.png", image)
    out = tmp_path / "shot.png"
    result = subprocess.run(
        [sys.executable, "-m", "napari_polyp.cli", "app", str(tmp_path / "in.png"), "--model", MODEL,
         "--device", "cpu", "--screenshot", str(out)],
        capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "first mask after" in result.stdout
    assert float(iio.imread(out)[..., :3].astype(float).var()) > 50.0


def test_wait_until_keeps_qt_going_until_the_condition_and_says_when_it_never_comes(qtbot):
    """The scripts that drive the real window (screenshots, the Review benchmarks) wait with it."""
    from qtpy.QtCore import QTimer

    from napari_polyp.app import wait_until

    fired = []
    QTimer.singleShot(50, lambda: fired.append(True))  # only a running event loop delivers it
    wait_until(lambda: bool(fired), timeout=10)
    assert fired
    with pytest.raises(TimeoutError, match="did not get there"):
        wait_until(lambda: False, timeout=0.05)
