"""A video's masks on disk, one frame a chunk: a zarr store that is never whole in memory.

    from napari_polyp.io.mask_store import MaskStore

    store = MaskStore.create("clip.zarr", (T, H, W), probabilities=True, attrs={"network": "ea-dk"})
    store.write(i, mask, probability)       # HxW {0,1}; HxW float in [0, 1] (or uint8 0..255), optional
    store = MaskStore.open("clip.zarr")      # read-only; mode="r+" to write more frames
    store.read(i)                            # HxW uint8 0/1 (zeros for a frame never written)
    store.read_probability(i)                # HxW float32 in [0, 1], or None without probabilities
    store.is_written(i), store.written()     # which frames hold a result
    store.masks()                            # T x H x W dask array, lazy: napari layer data
    store.attrs                              # the provenance written at create (a dict)

Layout (zarr format 3, a folder): ``mask`` is (T, H, W) uint8 0/1 and ``probability`` (when
asked for) (T, H, W) uint8 0..255 (probability × 255, rounded); chunks are (1, H, W): one file
per frame (``mask/c.<frame>.0.0``, flat: no folder per frame), compressed (Blosc zstd,
bit-shuffled; a 320×256 mask took 478 bytes, its probability 8.6 kB). The
group's attributes hold ``attrs`` under ``napari_polyp`` with ``kind: "masks"`` and the format
number. A frame is *written* when its chunk file exists: every written frame gets a file, an
empty mask too, and zarr writes each file atomically (a temporary file renamed), so a
process killed mid-write leaves the old file or none. Frames are independent files, so
several processes may write different frames of one store at once; the attributes are
written once, by :meth:`create`.

Reading a frame costs ~2 ms (640×480); :meth:`masks` is a dask array whose slices read one
chunk (``inline_array``: ~5 ms a frame even for 90,000 frames, where a plain ``from_zarr``
graph takes ~0.2 s a slice).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import numpy as np

from ..errors import InputFileError, UserError

FORMAT = 1
ATTRS_KEY = "napari_polyp"
MASK, PROBABILITY = "mask", "probability"
SUFFIX = ".zarr"

PathLike = Union[str, os.PathLike]


def is_mask_store(path: PathLike) -> bool:
    """Whether ``path`` is a folder holding a mask store written by :class:`MaskStore` (cheap:
    reads one small JSON file, never raises)."""
    import json

    meta = Path(path) / "zarr.json"
    try:
        if not meta.is_file() or meta.stat().st_size > 1_000_000:
            return False
        attrs = json.loads(meta.read_text()).get("attributes", {}).get(ATTRS_KEY, {})
        return isinstance(attrs, dict) and attrs.get("kind") == "masks"
    except (OSError, ValueError, AttributeError):
        return False


def _compressor():
    from zarr.codecs import BloscCodec, BloscShuffle

    return BloscCodec(cname="zstd", clevel=3, shuffle=BloscShuffle.bitshuffle)


class MaskStore:
    """Per-frame masks (and optionally probabilities) of one video, chunked one frame a chunk.

    Use :meth:`create` or :meth:`open`; see the module docstring."""

    def __init__(self, path: Path, group, mode: str):
        self.path = Path(path)
        self._group = group
        self.mode = mode
        # every written frame gets its file, an empty mask too (zarr skips chunks equal to the
        # fill value unless told otherwise, and the config is not stored with the array)
        config = {"write_empty_chunks": True}
        self._mask = group[MASK].with_config(config)
        self._probability = group[PROBABILITY].with_config(config) if PROBABILITY in group else None

    # -- opening ----------------------------------------------------------------------
    @classmethod
    def create(cls, path: PathLike, shape: Tuple[int, int, int], probabilities: bool = False,
               attrs: Optional[dict] = None, overwrite: bool = False) -> "MaskStore":
        """A new, empty store for ``shape`` = (frames, height, width). ``attrs``: plain JSON values
        (the provenance). An existing store at ``path`` is replaced only with ``overwrite``;
        anything else there (a file, a folder that is not a mask store) is refused."""
        import zarr

        path = Path(path)
        frames, height, width = (int(v) for v in shape)
        if frames < 1 or height < 1 or width < 1:
            raise UserError(f"{path}: a mask store needs at least one frame of one pixel, not {shape}")
        if path.exists() or path.is_symlink():
            if not is_mask_store(path):
                raise UserError(f"{path} exists and is not a mask store: it is left alone (choose another place)")
            if not overwrite:
                raise UserError(f"{path} holds masks already (pass overwrite to replace them)")
            shutil.rmtree(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        group = zarr.open_group(str(path), mode="w", zarr_format=3)
        group.attrs[ATTRS_KEY] = {**_plain(attrs or {}), "kind": "masks", "format": FORMAT}
        for name in (MASK, PROBABILITY) if probabilities else (MASK,):
            group.create_array(name, shape=(frames, height, width), chunks=(1, height, width), dtype="uint8",
                               fill_value=0, compressors=_compressor(), config={"write_empty_chunks": True},
                               chunk_key_encoding={"name": "default", "separator": "."},
                               dimension_names=("frame", "y", "x"))
        return cls(path, zarr.open_group(str(path), mode="r+"), "r+")

    @classmethod
    def open(cls, path: PathLike, mode: str = "r") -> "MaskStore":
        """An existing store; ``mode`` "r" (read) or "r+" (write frames too). A path that is not
        a mask store raises :class:`InputFileError` naming it."""
        import zarr

        if mode not in ("r", "r+"):
            raise ValueError(f"mode must be 'r' or 'r+', not {mode!r}")
        path = Path(path)
        if not path.exists():
            raise InputFileError(path, "does not exist")
        if not is_mask_store(path):
            raise InputFileError(path, "is not a napari-polyp mask store (no masks in its zarr.json)")
        try:
            group = zarr.open_group(str(path), mode=mode)
            store = cls(path, group, mode)
        except Exception as err:  # noqa: BLE001 -- a damaged store is the file's problem
            raise InputFileError(path, f"cannot be opened as a mask store ({type(err).__name__}: {err})") from None
        if store._mask.ndim != 3 or store._mask.dtype != np.uint8:
            raise InputFileError(path, f"its masks are {store._mask.dtype} of shape {store._mask.shape}, "
                                       "not T x H x W uint8")
        return store

    # -- what it holds ----------------------------------------------------------------
    @property
    def shape(self) -> Tuple[int, int, int]:
        return tuple(int(v) for v in self._mask.shape)

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def has_probabilities(self) -> bool:
        return self._probability is not None

    @property
    def attrs(self) -> Dict:
        """The attributes given at :meth:`create` (with ``kind`` and ``format``), as a copy."""
        return dict(self._group.attrs.get(ATTRS_KEY, {}))

    def __repr__(self) -> str:
        return f"MaskStore({str(self.path)!r}, shape={self.shape}, probabilities={self.has_probabilities})"

    # -- frames -----------------------------------------------------------------------
    def _check_index(self, index: int) -> int:
        frames = len(self)
        if not -frames <= int(index) < frames:
            raise IndexError(f"frame {index} out of range for a mask store of {frames} frames ({self.path})")
        return int(index) % frames

    def write(self, index: int, mask, probability=None) -> None:
        """Store frame ``index``: ``mask`` HxW (bool or {0,1}; anything > 0 is foreground) and,
        when the store keeps them, ``probability`` HxW (float in [0, 1], or uint8 0..255)."""
        if self.mode != "r+":
            raise UserError(f"{self.path} was opened read-only (open it with mode='r+' to write)")
        index = self._check_index(index)
        mask = np.asarray(mask)
        if mask.shape != self.shape[1:]:
            raise UserError(f"{self.path}: frame {index}'s mask is {mask.shape[0]}×{mask.shape[1]}, "
                            f"the store's frames are {self.shape[1]}×{self.shape[2]}")
        if self._probability is not None:
            if probability is None:
                raise UserError(f"{self.path} keeps probabilities: frame {index} needs one")
            self._probability[index] = probability_to_uint8(probability)
        self._mask[index] = (mask > 0).astype(np.uint8)

    def read(self, index: int) -> np.ndarray:
        """Frame ``index``'s mask, HxW uint8 0/1 (zeros for a frame never written)."""
        return np.asarray(self._mask[self._check_index(index)])

    def read_probability(self, index: int) -> Optional[np.ndarray]:
        """Frame ``index``'s probability, HxW float32 in [0, 1] (steps of 1/255); None when the
        store keeps none."""
        if self._probability is None:
            return None
        return np.asarray(self._probability[self._check_index(index)]).astype(np.float32) / np.float32(255.0)

    def frame_file(self, index: int, name: str = MASK) -> Path:
        """The file that holds frame ``index`` of array ``name`` ("mask" or "probability")."""
        return self.path / name / f"c.{self._check_index(index)}.0.0"  # flat keys: no folder per frame

    def is_written(self, index: int) -> bool:
        """Whether frame ``index`` holds a result (its chunk files exist)."""
        names = (MASK, PROBABILITY) if self._probability is not None else (MASK,)
        return all(self.frame_file(index, name).is_file() for name in names)

    def written(self) -> List[int]:
        """The frames that hold a result, sorted (one directory listing per array)."""
        def frames(name: str) -> set:
            try:
                names = [entry.name.split(".") for entry in os.scandir(self.path / name) if entry.is_file()]
            except FileNotFoundError:
                return set()
            return {int(parts[1]) for parts in names if len(parts) == 4 and parts[0] == "c" and parts[1].isdigit()}

        done = frames(MASK)
        if self._probability is not None:
            done &= frames(PROBABILITY)
        return sorted(i for i in done if i < len(self))

    # -- lazy views -------------------------------------------------------------------
    def masks(self):
        """The masks as a lazy T x H x W uint8 dask array (one chunk a frame): napari layer data."""
        import dask.array as da

        return da.from_zarr(self._mask, inline_array=True)

    def probabilities(self):
        """The probabilities as a lazy T x H x W uint8 dask array (0..255), or None."""
        import dask.array as da

        return None if self._probability is None else da.from_zarr(self._probability, inline_array=True)


    # -- the video it was made of, and by what ------------------------------------------
    def video_path(self) -> Path:
        """The video whose masks these are (where ``source`` names it, or beside the store)."""
        source = self.attrs.get("source")
        if not source:
            raise InputFileError(self.path, "does not name the video its masks were made of")
        for candidate in (Path(source), self.path.parent / Path(source).name):
            if candidate.is_file():
                return candidate
        raise InputFileError(self.path, f"its video {source} is not there (moved? put it back, or beside "
                                        f"{self.path.name})")

    def check_video(self, frames, video_path) -> None:
        """The store must be this video's: as many frames, of the same size."""
        shape = (len(frames), int(frames.height), int(frames.width))
        if shape != self.shape:
            raise UserError(f"{self.path} holds {self.shape[0]} masks of {self.shape[1]}×{self.shape[2]}, but "
                            f"{video_path} has {shape[0]} frames of {shape[1]}×{shape[2]}: the video changed "
                            "since it was pre-annotated")

    def network_label(self) -> str:
        """How the app names the network its masks came from: "ea-dk +TTA (pre-annotated)"."""
        attrs = self.attrs
        return (f"{attrs.get('model') or 'unknown network'}{' +TTA' if attrs.get('tta') else ''}"
                f"{'' if attrs.get('checkpoint') else ' (random weights)'} (pre-annotated)")

def probability_to_uint8(probability) -> np.ndarray:
    """A probability map as stored: uint8 as given, else round(p × 255) clipped to 0..255."""
    probability = np.asarray(probability)
    if probability.dtype == np.uint8:
        return probability
    return np.clip(np.rint(probability.astype(np.float32) * np.float32(255.0)), 0, 255).astype(np.uint8)


def _plain(value: dict) -> dict:
    import json

    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as err:
        raise UserError(f"mask store attributes must be plain JSON values ({err})") from None


__all__ = ["MaskStore", "is_mask_store", "probability_to_uint8"]
