"""What a run does: the inputs (folders walked recursively), where each one's output goes,
and the chunks of work (an image; a video's frame range)."""
from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from ..errors import UserError
from ..io.images import is_image_path
from ..io.mask_store import SUFFIX as STORE_SUFFIX
from ..io.mask_store import is_mask_store
from ..io.video import is_video_path

DEFAULT_CHUNK_FRAMES = 250  # 10 s of a 25 fps video: what a kill -9 loses per worker, at most


@dataclass(frozen=True)
class Input:
    kind: str  # "image" | "video"
    path: Path  # as given (or found in a given folder)
    target: Path  # <out>/<relative folder>/<stem>: + ".png" for an image, + ".zarr" for a video

    @property
    def key(self) -> str:
        """The input's name in the manifest: its absolute path."""
        return os.path.abspath(self.path)

    def outputs(self, probability: bool) -> List[Path]:
        if self.kind == "video":
            return [self.target.with_name(self.target.name + STORE_SUFFIX)]
        outputs = [self.target.with_name(self.target.name + ".png")]
        if probability:
            outputs.append(self.target.with_name(self.target.name + "_prob.png"))
        return outputs


def _walk(folder: Path, skip: Optional[Path]) -> List[Path]:
    """Images and videos under ``folder``, recursively, sorted; hidden files and folders, mask
    stores and the output folder itself are left out."""
    found: List[Path] = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        here = Path(root)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not d.endswith(STORE_SUFFIX)
                         and (skip is None or os.path.abspath(here / d) != str(skip)))
        for name in sorted(files):
            if not name.startswith(".") and (is_image_path(name) or is_video_path(name)):
                found.append(here / name)
    return found


def expand_inputs(inputs: Sequence, out: Path) -> List[Input]:
    """The inputs in the order given: a file as itself (its output named by its stem in
    ``out``), a folder as its images and videos found recursively (outputs under the same
    relative folders in ``out``). A file named twice is kept once; files under ``out`` are
    never inputs (a second run must not predict the first one's masks)."""
    out_abs = Path(os.path.abspath(out))
    items: List[Input] = []
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            if is_mask_store(path):
                raise UserError(f"{path} is a mask store (the output of a run), not images or videos to predict")
            found = _walk(path, out_abs)
            if not found:
                raise UserError(f"{path}: no images or videos in this folder or its subfolders")
            for file in found:
                relative = file.relative_to(path)
                items.append(Input("video" if is_video_path(file) else "image", file,
                                   out / relative.parent / relative.stem))
        elif path.is_file():
            items.append(Input("video" if is_video_path(path) else "image", path, out / path.stem))
        else:
            raise UserError(f"{path}: no such file or folder")
    seen, unique = set(), []
    for item in items:
        resolved = Path(item.path).resolve()
        if resolved in seen:
            continue
        seen.add(resolved)
        unique.append(item)
    return unique


def check_collisions(items: Iterable[Input], probability: bool) -> None:
    """Refuse inputs whose outputs would overwrite each other's (``d1/a.png`` and ``d2/a.png``
    given as files, or ``a.png`` and ``a.jpg`` in one folder), before anything runs."""
    writers: Dict[Path, List[Path]] = defaultdict(list)
    for item in items:
        for output in item.outputs(probability):
            writers[output].append(item.path)
    clashes = {output: paths for output, paths in writers.items() if len(paths) > 1}
    if clashes:
        lines = [f"  {' and '.join(str(p) for p in paths)} would both write {output}"
                 for output, paths in sorted(clashes.items())[:10]]
        more = f"\n  ... and {len(clashes) - 10} more" if len(clashes) > 10 else ""
        raise UserError("inputs with the same file name would overwrite each other's masks:\n"
                        + "\n".join(lines) + more
                        + "\nrename them, or run them one at a time with different --out folders")


def select_part(items: List[Input], parts: Optional[int], part: Optional[int]) -> List[Input]:
    """``--parts N --part K`` (K = 0 .. N-1, as nnU-Net's -num_parts/-part_id): every N-th input
    of the list sorted by path, from the K-th; the N parts cover every input exactly once."""
    if parts is None and part is None:
        return items
    if parts is None or part is None:
        raise UserError("--parts N and --part K go together (K from 0 to N-1)")
    if parts < 1:
        raise UserError(f"--parts must be 1 or more, not {parts}")
    if not 0 <= part < parts:
        raise UserError(f"--part must be from 0 to {parts - 1} with --parts {parts}, not {part}")
    return sorted(items, key=lambda item: item.key)[part::parts]


def frame_ranges(frames: int, chunk_frames: int) -> List[Tuple[int, int]]:
    return [(start, min(start + chunk_frames, frames)) for start in range(0, frames, chunk_frames)]


def chunk_id(item: Input, start: Optional[int] = None, stop: Optional[int] = None) -> str:
    return item.key if start is None else f"{item.key}#{start}-{stop}"


def make_chunk(item: Input, start: Optional[int] = None, stop: Optional[int] = None) -> dict:
    """A chunk as plain values (it travels to Ray workers as JSON)."""
    chunk = {"id": chunk_id(item, start, stop), "kind": item.kind, "path": item.key,
             "target": os.path.abspath(item.outputs(False)[0])}
    if start is not None:
        chunk.update(start=int(start), stop=int(stop))
    return chunk


def chunk_frames_of(chunk: dict) -> int:
    return chunk["stop"] - chunk["start"] if chunk["kind"] == "video" else 1
