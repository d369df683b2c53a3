"""Deleting the video while Live plays (issue 24, item 5): a segfault in vispy's draw, 3 of 3,
before the change. Each case runs in its own napari process (a crash there is a failed test
with its faulthandler trace, not a lost test session) in a shown window under Xvfb."""
import subprocess
import sys
import textwrap

import pytest

av = pytest.importorskip("av")

SCRIPT = textwrap.dedent('''
    import faulthandler, sys, time
    faulthandler.enable()
    import numpy as np
    import napari
    from qtpy.QtWidgets import QApplication

    case, video_path = sys.argv[1], sys.argv[2]
    viewer = napari.Viewer()
    app = QApplication.instance()

    def pump(seconds):
        end = time.time() + seconds
        while time.time() < end:
            app.processEvents()
            time.sleep(0.005)

    viewer.open(video_path, plugin="napari-polyp")
    video = viewer.layers[-1]
    _, segment = viewer.window.add_plugin_dock_widget("napari-polyp", "Segment")
    segment.model_combo.setCurrentText("microaunet")
    segment.select_random = segment.checkpoint_combo.setCurrentIndex(
        segment.checkpoint_combo.findText("random weights (untrained)"))
    if case == "live":
        segment.live_button.setChecked(True)
        deadline = time.time() + 60
        while (segment.live_stats is None or segment.live_stats.shown < 5) and time.time() < deadline:
            pump(0.05)
        assert segment.live_stats is not None, "Live showed no frame"
    else:  # a 2-D layer of the user's, visible, beside the video
        viewer.add_labels(np.zeros(video.data.shape[1:3], np.uint8), name="drawn")
        pump(0.5)
    viewer.layers.remove(video)
    pump(2.0)
    assert not segment.busy, "the worker still runs"
    visible = [layer.name for layer in viewer.layers if layer.visible]
    print("ALIVE", visible, segment.status_label.text(), flush=True)
    viewer.close()
''')


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    import numpy as np

    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 160, 128, "yuv420p"
        for i in range(200):
            image = np.zeros((128, 160, 3), np.uint8)
            image[40:80, (i % 120):(i % 120) + 40] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def run_case(tmp_path, case, clip):
    script = tmp_path / "case.py"
    script.write_text(SCRIPT)
    done = subprocess.run([sys.executable, str(script), case, str(clip)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return next(line for line in done.stdout.splitlines() if line.startswith("ALIVE"))


def test_deleting_the_video_while_live_plays_stops_live_first(tmp_path, clip):
    line = run_case(tmp_path, "live", clip)
    assert "clip live view" not in line.split("]")[0]  # the last picture of a deleted video is not left on screen
    assert "clip was closed" in line


def test_deleting_a_video_beside_a_visible_2d_layer(tmp_path, clip):
    line = run_case(tmp_path, "plain", clip)
    assert "'drawn'" in line  # hidden for the re-slice, shown again
