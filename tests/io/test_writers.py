import numpy as np
import pytest
from PIL import Image

from napari_polyp.io.writers import frame_paths, write_labels_png


def test_2d_labels_become_a_0_255_png(tmp_path):
    data = np.zeros((6, 7), np.int32)
    data[1:3, 2:5] = 1
    data[4, 4] = 3  # any nonzero label is object
    out = write_labels_png(str(tmp_path / "mask.png"), data, {"name": "m"})
    assert out == [str(tmp_path / "mask.png")]
    saved = np.asarray(Image.open(out[0]))
    assert saved.dtype == np.uint8 and saved.shape == (6, 7)
    np.testing.assert_array_equal(saved, np.where(data != 0, 255, 0))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_missing_extension_gets_png(tmp_path):
    out = write_labels_png(str(tmp_path / "mask"), np.ones((3, 3), np.uint8), {})
    assert out == [str(tmp_path / "mask.png")]


def test_3d_labels_become_one_png_per_frame(tmp_path):
    data = np.zeros((3, 4, 5), np.uint8)
    data[1, 0, 0] = 1
    out = write_labels_png(str(tmp_path / "video.png"), data, {})
    assert [p.rsplit("/", 1)[-1] for p in out] == ["video_0000.png", "video_0001.png", "video_0002.png"]
    assert np.asarray(Image.open(out[1]))[0, 0] == 255
    assert np.asarray(Image.open(out[0])).max() == 0
    assert frame_paths(tmp_path / "v.png", 12345)[-1].name == "v_12344.png"


def test_4d_labels_are_refused_with_a_clear_message(tmp_path):
    with pytest.raises(ValueError, match="2-D .* or 3-D .*shape \\(2, 2, 3, 3\\)"):
        write_labels_png(str(tmp_path / "x.png"), np.zeros((2, 2, 3, 3), np.uint8), {"name": "m"})


def test_the_writer_is_declared_in_the_manifest():
    from npe2 import PluginManifest

    import napari_polyp

    from pathlib import Path

    manifest = PluginManifest.from_file(Path(napari_polyp.__file__).parent / "napari.yaml")
    commands = {c.id: c.python_name for c in manifest.contributions.commands}
    writer = manifest.contributions.writers[0]
    assert commands[writer.command] == "napari_polyp.io.writers:write_labels_png"
    assert "labels" in [str(t.value if hasattr(t, "value") else t) for t in writer.layer_types]
