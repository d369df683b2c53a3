"""The npe2 reader: image files, folders of images, and videos.

``get_reader(path)`` answers ``None`` for anything it does not read (napari
then asks other readers); otherwise it returns a function that turns the path
into napari layer data. That function raises
:class:`~napari_polyp.errors.InputFileError` (file + problem) for bad files,
which napari shows as an error notification; it never leaves napari in a
broken state.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, List, Optional, Sequence, Union

from ..conventions import MASK_COLOR_DICT, PRE_ANNOTATION, PRE_ANNOTATION_PROBABILITY, REFERENCE_FILE, ROLE
from ..errors import InputFileError
from .images import is_image_path, list_images, read_image_with_notes
from .mask_store import MaskStore, is_mask_store
from .video import VideoFrames, is_video_path

PathOrPaths = Union[str, Path, Sequence[Union[str, Path]]]
LayerData = tuple


def get_reader(path: PathOrPaths) -> Optional[Callable[[PathOrPaths], List[LayerData]]]:
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    if not paths or not all(_readable_kind(p) for p in paths):
        return None
    return read_paths


def _readable_kind(path) -> Optional[str]:
    path = Path(path)
    if path.is_dir():
        if is_mask_store(path):
            return "masks"
        try:
            return "folder" if list_images(path) else None
        except (OSError, InputFileError):
            return None
    if is_image_path(path):
        return "image"
    if is_video_path(path):
        return "video"
    return None


def read_paths(path: PathOrPaths) -> List[LayerData]:
    """Layer data for a path or a list of paths (images, folders, videos)."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    layers: List[LayerData] = []
    for item in paths:
        kind = _readable_kind(item)
        if kind == "folder":
            layers.extend(read_folder(item))
        elif kind == "masks":
            layers.extend(read_mask_store(item))
        elif kind == "video":
            layers.append(read_video_layer(item))
        elif kind == "image":
            layers.append(read_image_layer(item))
        else:
            raise InputFileError(item, "is not an image, a folder of images or a video napari-polyp can read")
    return layers


def image_layer_data(data, path, name: Optional[str] = None, **metadata) -> LayerData:
    meta = {"source_path": str(path), **metadata}
    return (data, {"name": name or Path(path).stem, "rgb": True, "metadata": meta}, "image")


def looks_like_mask(path) -> bool:
    """A single-channel file with at most two values (0/255, 0/1): a mask, not a photo."""
    import numpy as np
    from PIL import Image

    try:
        with Image.open(path) as image:
            if image.mode not in ("1", "L", "P", "I", "I;16"):
                return False
            return len(np.unique(np.asarray(image))) <= 2
    except (OSError, ValueError):
        return False


def read_mask_layer(path) -> LayerData:
    """A mask file opened on its own: an editable Labels layer (1 = lesion) in the mask colour."""
    from .masks import read_mask

    meta = {"name": f"{Path(path).stem} mask", "opacity": 0.5, "colormap": MASK_COLOR_DICT,
            "metadata": {"source_path": str(path), ROLE: REFERENCE_FILE}}
    return (read_mask(path).astype("uint8"), meta, "labels")


def read_image_layer(path) -> LayerData:
    if looks_like_mask(path):
        return read_mask_layer(path)
    data, notes = read_image_with_notes(path)
    if notes:
        _notify(f"{Path(path).name}: " + "; ".join(notes))
    return image_layer_data(data, path)


def read_folder(folder) -> List[LayerData]:
    """One stacked N x H x W x 3 layer when all images share a size, else one layer per image.

    Unreadable files are skipped with a notice naming each; a folder with no
    readable image at all is an error.
    """
    import numpy as np

    folder = Path(folder)
    images, paths, problems, converted = [], [], [], []
    for path in list_images(folder):
        try:
            data, notes = read_image_with_notes(path)
        except InputFileError as err:
            problems.append(str(err))
            continue
        images.append(data)
        paths.append(path)
        if notes:
            converted.append(path.name)
    if not images:
        raise InputFileError(folder, "holds no readable image: " + "; ".join(problems or ["no image files"]))
    if problems:
        _notify(f"{folder.name}: skipped {len(problems)} unreadable file(s): " + "; ".join(problems))
    if converted:
        _notify(f"{folder.name}: {len(converted)} image(s) converted to 8-bit RGB: {', '.join(converted[:5])}"
                + (" ..." if len(converted) > 5 else ""))
    if len({im.shape for im in images}) == 1:
        return [image_layer_data(np.stack(images), folder, name=folder.name,
                                 source_paths=[str(p) for p in paths])]
    _notify(f"{folder.name}: images differ in size, opened as {len(images)} layers, only the first shown; "
            "the Workspace's Review tab walks a folder one image at a time")
    layers = [image_layer_data(im, p) for im, p in zip(images, paths)]
    for _data, kwargs, _kind in layers[1:]:
        kwargs["visible"] = False
    return layers


def read_video_layer(path) -> LayerData:
    frames = VideoFrames(path, on_unreadable=_notify)  # napari draws every frame: a broken one shows black
    meta = {"name": Path(path).stem, "rgb": True, "contrast_limits": [0, 255],
            "metadata": {"source_path": str(path), "fps": frames.fps, "frames": len(frames), "video": True}}
    return (frames, meta, "image")


def read_mask_store(path) -> List[LayerData]:
    """A pre-annotated video (a mask store written by ``napari-polyp predict``): the video, read
    lazily, its masks as a Labels layer and its probabilities (when kept) as a hidden layer, both
    lazy dask arrays read a frame at a time: nothing is recomputed, nothing held whole."""
    store = MaskStore.open(path)
    video_path = store.video_path()
    video = read_video_layer(video_path)
    store.check_video(video[0], video_path)
    stem, label = Path(video_path).stem, store.network_label()
    meta = {"source_path": str(video_path), ROLE: PRE_ANNOTATION, "mask_store": str(store.path),
            "provenance": store.attrs}
    layers = [video, (store.masks(), {"name": f"{stem} masks, {label}", "opacity": 0.5,
                                      "colormap": MASK_COLOR_DICT, "metadata": meta}, "labels")]
    probabilities = store.probabilities()
    if probabilities is not None:
        # a role of its own: it had been taken for the image to segment (Segment and Live ran on it)
        layers.append((probabilities, {"name": f"{stem} probability ×255, {label}", "visible": False,
                                       "colormap": "magma", "contrast_limits": [0, 255],
                                       "metadata": {**meta, ROLE: PRE_ANNOTATION_PROBABILITY}}, "image"))
    return layers


def _notify(message: str) -> None:
    try:
        from napari.utils.notifications import show_info
    except ImportError:  # headless use without napari
        import warnings

        warnings.warn(message, stacklevel=3)
        return
    show_info(message)
