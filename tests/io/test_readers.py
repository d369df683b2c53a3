"""Readers on real files written here: every format, folders, video seeking, and bad files."""
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_polyp.errors import InputFileError
from napari_polyp.io import VideoFrames, list_images, read_image, read_image_with_notes
from napari_polyp.io.readers import get_reader, read_paths
from napari_polyp.io.video import write_video


def _rgb(h=40, w=56, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("ext", ["png", "bmp", "tif", "tiff"])
def test_lossless_rgb_roundtrip(tmp_path, ext):
    image = _rgb()
    path = tmp_path / f"a.{ext}"
    iio.imwrite(path, image)
    out, notes = read_image_with_notes(path)
    assert out.dtype == np.uint8 and out.shape == image.shape
    np.testing.assert_array_equal(out, image)
    assert notes == []


@pytest.mark.parametrize("ext", ["jpg", "jpeg"])
def test_jpeg(tmp_path, ext):
    image = np.zeros((48, 64, 3), np.uint8)
    image[:, 32:] = (200, 40, 90)
    path = tmp_path / f"a.{ext}"
    Image.fromarray(image).save(path, quality=95)
    out = read_image(path)
    assert out.shape == (48, 64, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - image).mean() < 4


@pytest.mark.parametrize("ext", ["png", "tif"])
def test_16bit_grayscale_scaled_with_notice(tmp_path, ext):
    gray = np.linspace(0, 65535, 30 * 20).reshape(30, 20).astype(np.uint16)
    path = tmp_path / f"g16.{ext}"
    iio.imwrite(path, gray)
    out, notes = read_image_with_notes(path)
    assert out.shape == (30, 20, 3) and out.dtype == np.uint8
    assert out[0, 0, 0] == 0 and out[-1, -1, 0] == 255
    assert (out[..., 0] == out[..., 2]).all()
    text = " ".join(notes)
    assert "16-bit" in text and "grayscale" in text


def test_16bit_rgb_tiff(tmp_path):
    rgb16 = (_rgb().astype(np.uint16) * 257)
    path = tmp_path / "rgb16.tif"
    tifffile.imwrite(path, rgb16, photometric="rgb")
    np.testing.assert_array_equal(read_image(path), _rgb())


def test_16bit_rgb_png_is_read_with_its_notice(tmp_path):
    """Pillow reads a 16-bit colour PNG as 8-bit on its own; the notice says so, as for grayscale."""
    cv2 = pytest.importorskip("cv2")
    rgb16 = _rgb().astype(np.uint16) * 257
    path = tmp_path / "rgb16.png"
    cv2.imwrite(str(path), rgb16[..., ::-1])  # OpenCV writes BGR
    out, notes = read_image_with_notes(path)
    np.testing.assert_array_equal(out, _rgb())
    assert any("16-bit" in note for note in notes)
    _, eight_bit_notes = read_image_with_notes(_save_png(tmp_path / "rgb8.png", _rgb()))
    assert eight_bit_notes == []


def _save_png(path, array):
    Image.fromarray(array).save(path)
    return path


def test_planar_tiff(tmp_path):
    path = tmp_path / "planar.tif"
    tifffile.imwrite(path, np.moveaxis(_rgb(), -1, 0), photometric="rgb", planarconfig="separate")
    np.testing.assert_array_equal(read_image(path), _rgb())


def test_grayscale_8bit_and_rgba(tmp_path):
    gray = _rgb()[..., 0]
    Image.fromarray(gray).save(tmp_path / "g.png")
    out, notes = read_image_with_notes(tmp_path / "g.png")
    np.testing.assert_array_equal(out, np.repeat(gray[..., None], 3, -1))
    assert any("grayscale" in n for n in notes)

    rgba = np.concatenate([_rgb(), np.full((40, 56, 1), 128, np.uint8)], -1)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out, notes = read_image_with_notes(tmp_path / "a.png")
    np.testing.assert_array_equal(out, _rgb())
    assert any("RGBA" in n for n in notes)


def test_reader_notifies_conversion(tmp_path, monkeypatch):
    shown = []
    monkeypatch.setattr("napari.utils.notifications.show_info", shown.append)
    Image.fromarray(_rgb()[..., 0]).save(tmp_path / "g.png")
    [(data, meta, kind)] = get_reader(str(tmp_path / "g.png"))(str(tmp_path / "g.png"))
    assert kind == "image" and data.shape == (40, 56, 3) and meta["rgb"] is True
    assert meta["name"] == "g" and meta["metadata"]["source_path"].endswith("g.png")
    assert shown and "g.png" in shown[0] and "grayscale" in shown[0]


def test_folder_same_size_is_stacked(tmp_path):
    for i in range(3):
        iio.imwrite(tmp_path / f"im{i}.png", _rgb(seed=i))
    (tmp_path / "notes.txt").write_text("not an image")
    assert [p.name for p in list_images(tmp_path)] == ["im0.png", "im1.png", "im2.png"]
    reader = get_reader(str(tmp_path))
    assert reader is not None
    [(data, meta, kind)] = reader(str(tmp_path))
    assert data.shape == (3, 40, 56, 3)
    np.testing.assert_array_equal(data[1], _rgb(seed=1))
    assert len(meta["metadata"]["source_paths"]) == 3


def test_folder_mixed_sizes_gives_one_layer_per_image(tmp_path, monkeypatch):
    monkeypatch.setattr("napari.utils.notifications.show_info", lambda message: None)
    iio.imwrite(tmp_path / "a.png", _rgb(40, 56))
    iio.imwrite(tmp_path / "b.png", _rgb(32, 32))
    (tmp_path / "broken.png").write_text("hello")
    layers = read_paths(str(tmp_path))
    assert [meta["name"] for _, meta, _ in layers] == ["a", "b"]
    assert [d.shape for d, _, _ in layers] == [(40, 56, 3), (32, 32, 3)]


def test_get_reader_declines_what_it_cannot_read(tmp_path):
    (tmp_path / "x.txt").write_text("x")
    (tmp_path / "empty").mkdir()
    assert get_reader(str(tmp_path / "x.txt")) is None
    assert get_reader(str(tmp_path / "empty")) is None
    assert get_reader(str(tmp_path / "model.pt")) is None
    assert get_reader([str(tmp_path / "a.png"), str(tmp_path / "x.txt")]) is None
    assert get_reader(str(tmp_path / "a.png")) is not None


def test_list_of_paths(tmp_path):
    iio.imwrite(tmp_path / "a.png", _rgb())
    iio.imwrite(tmp_path / "b.bmp", _rgb(seed=3))
    paths = [str(tmp_path / "a.png"), str(tmp_path / "b.bmp")]
    assert len(get_reader(paths)(paths)) == 2


# -- video -----------------------------------------------------------------------------
def _frames(n=40, h=48, w=64):
    # Each frame a flat grey level 6*i: any frame decodes to its own level (+-2 after H.264).
    return np.stack([np.full((h, w, 3), 6 * i, np.uint8) for i in range(n)])


def _level(frame):
    return int(round(float(frame[8:-8, 8:-8].mean()) / 6))


@pytest.fixture
def mp4(tmp_path):
    path = tmp_path / "clip.mp4"
    iio.imwrite(path, _frames(), plugin="pyav", codec="libx264", fps=25)  # written with imageio
    return path


def test_video_reader_lazy_and_seeks_exactly(mp4):
    reader = get_reader(str(mp4))
    [(video, meta, kind)] = reader(str(mp4))
    assert isinstance(video, VideoFrames) and kind == "image"
    assert video.shape == (40, 48, 64, 3) and video.dtype == np.uint8 and video.ndim == 4
    assert meta["rgb"] is True and meta["metadata"]["fps"] == pytest.approx(25)
    order = [37, 3, 20, 21, 22, 0, 39, 10, 5, 38, 1]
    assert [_level(video[i]) for i in order] == order
    assert [_level(f) for f in video[10:14]] == [10, 11, 12, 13]
    assert video[-1, :4, :4].shape == (4, 4, 3)
    assert video[..., 0].shape == (40, 48, 64)
    assert len(video._cache) <= video.cache_frames


@pytest.mark.parametrize("ext,codec", [("avi", "mpeg4"), ("mov", "libx264"), ("mkv", "libx264")])
def test_other_containers(tmp_path, ext, codec):
    path = write_video(tmp_path / f"clip.{ext}", _frames(12), fps=10, codec=codec)
    video = VideoFrames(path)
    assert len(video) == 12
    sequential = _decode_all(path)
    for i in (11, 0, 6, 7, 2):  # random access gives exactly the frame a plain decode gives
        np.testing.assert_array_equal(video[i], sequential[i])


def _decode_all(path):
    import av

    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def test_mp4_random_access_equals_sequential_decode(mp4):
    video = VideoFrames(mp4, cache_frames=2)
    sequential = _decode_all(mp4)
    for i in [33, 2, 39, 0, 18, 19, 5, 25]:
        np.testing.assert_array_equal(video[i], sequential[i])


def test_video_in_napari(make_napari_viewer, mp4):
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(mp4), plugin="napari-polyp")
    assert layer.rgb and layer.data.shape == (40, 48, 64, 3)
    viewer.dims.set_current_step(0, 17)
    assert _level(np.asarray(layer._slice.image.raw)) == 17


# -- bad files --------------------------------------------------------------------------
def _bad_files(tmp_path):
    good = tmp_path / "good.jpg"
    Image.fromarray(_rgb(64, 64)).save(good, quality=90)
    data = good.read_bytes()
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.png").write_text("this is a text file, renamed .png\n")
    (tmp_path / "bad.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "text.avi").write_text("not a video")
    return {
        "empty.png": "empty",
        "truncated.jpg": "truncated",
        "text.png": "is not a PNG image: its content is text",
        "bad.mp4": "video",
        "empty.mp4": "empty",
        "text.avi": "video",
    }


def test_bad_files_raise_clear_errors(tmp_path):
    for name, problem in _bad_files(tmp_path).items():
        path = tmp_path / name
        reader = get_reader(str(path))
        assert reader is not None, name
        with pytest.raises(InputFileError) as info:
            reader(str(path))
        message = str(info.value)
        assert str(path) in message and problem in message, message


def test_bad_file_in_napari_does_not_break_viewer(make_napari_viewer, tmp_path):
    _bad_files(tmp_path)
    viewer = make_napari_viewer()
    for name in ("truncated.jpg", "text.png", "bad.mp4"):
        with pytest.raises(Exception) as info:
            viewer.open(str(tmp_path / name), plugin="napari-polyp")
        assert name in str(info.value) or name in str(info.value.__cause__)
    [layer] = viewer.open(str(tmp_path / "good.jpg"), plugin="napari-polyp")
    assert layer.data.shape == (64, 64, 3)


@pytest.mark.parametrize("maximum, bits", [(4095, 12), (1023, 10)])
def test_low_bit_depth_data_in_a_16bit_tiff_is_scaled_by_its_range(tmp_path, maximum, bits):
    gray = np.linspace(0, maximum, 30 * 20).round().reshape(30, 20).astype(np.uint16)
    path = tmp_path / "camera.tif"
    tifffile.imwrite(path, gray)
    out, notes = read_image_with_notes(path)
    assert out[0, 0, 0] == 0 and out[-1, -1, 0] == 255  # not nearly black
    assert any(f"{bits}-bit data" in note for note in notes)


def test_a_mask_file_opened_alone_is_a_labels_layer(make_napari_viewer, tmp_path):
    mask = np.zeros((20, 30), np.uint8)
    mask[5:15, 5:20] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    gray = (np.arange(600).reshape(20, 30) % 256).astype(np.uint8)  # a grey photo stays an image
    Image.fromarray(gray).save(tmp_path / "g.png")
    viewer = make_napari_viewer()
    viewer.open(str(tmp_path / "m.png"), plugin="napari-polyp")
    viewer.open(str(tmp_path / "g.png"), plugin="napari-polyp")
    labels = viewer.layers["m mask"]
    assert labels._type_string == "labels" and set(np.unique(labels.data)) == {0, 1}
    assert viewer.layers["g"]._type_string == "image"


def test_folder_mixed_sizes_shows_one_image_at_a_time(tmp_path, monkeypatch):
    from napari_polyp.io import readers

    monkeypatch.setattr(readers, "_notify", lambda message: None)
    for i, size in enumerate([(10, 12), (14, 9), (10, 12)]):
        Image.fromarray(np.full(size + (3,), 40 * i, np.uint8)).save(tmp_path / f"{i}.png")
    layers = readers.read_paths(tmp_path)
    assert [kwargs.get("visible", True) for _data, kwargs, _kind in layers] == [True, False, False]


def _cut_fast_start_mp4(tmp_path, n=30):
    """An mp4 with its index first (fast start), cut in half: it opens, its later frames do not decode."""
    import av

    path = tmp_path / "cut.mp4"
    rng = np.random.default_rng(0)
    with av.open(str(path), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for _ in range(n):
            image = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(stream.encode())
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    return path


def test_a_frame_that_cannot_be_decoded_is_named_in_plain_words(tmp_path):
    path = _cut_fast_start_mp4(tmp_path)
    video = VideoFrames(path)
    with pytest.raises(InputFileError) as info:
        video[len(video) - 1]
    message = str(info.value)
    assert message.startswith(f"{path}: frame {len(video) - 1} ")
    assert message.count(str(path)) == 1 and "Errno" not in message and "()" not in message


def test_napari_shows_a_frame_that_cannot_be_decoded_black_and_says_so_once(tmp_path):
    said = []
    video = VideoFrames(_cut_fast_start_mp4(tmp_path), on_unreadable=said.append)
    assert video[0].any()
    last = video[len(video) - 1]
    assert last.shape == (48, 64, 3) and not last.any()
    video[len(video) - 2]
    assert len(said) == 1 and "shown black" in said[0] and "cut.mp4" in said[0]
