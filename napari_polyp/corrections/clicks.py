"""Correct a mask with clicks: the click refiner (``models/click_refiner.py``) behind one session.

    from napari_polyp.corrections.clicks import ClickSession
    s = ClickSession(image, prior=probability_or_None)  # image HxWx3 uint8; prior HxW float in [0, 1]
    mask = s.click(row, col, positive=True)              # HxW bool, the whole image
    mask = s.undo()                                      # the mask before the last click

Each click runs the refiner on the image, the current mask and every click so far, then:

- **zoom-in** (FocalClick's idea): once there is a mask, the network sees a square crop around
  the object and the clicks (their box grown by ``CROP_MARGIN``) at its input size, and its
  answer is pasted back there, so boundaries are decided near the image's own resolution;
  with no mask yet (a lesion the network missed), it sees the whole image, then (``second_look``)
  once more zoomed in on what it found there, within the same click.
- **local change** (``local=True``): of what the network would change, only the connected
  regions at the click, and only the click's way (a positive click adds, a negative one
  removes), are applied; a click never moves the mask far from where it was made (a click
  about a missed part must not redraw a good boundary elsewhere).
- **clicks are honoured** (``honour_clicks=True``): where the network still leaves the clicked
  pixel on the wrong side, the region it is no surer of, connected to the click, takes the
  click's side, and so does the image's own patch at the click (a superpixel, bounded by the
  image's edges; for a negative click only what the mask holds of it), at least a small disc:
  every click makes progress, as far as the image shows the structure clicked on. The
  probability kept for the next click agrees with the honoured mask, so the network does not
  put back what a click took. A click the network does obey still takes its patch, and the
  patches of its colour joined to it, within 1.5× the click's depth in the error (its distance
  to the edge of the mask as it was): a click deep inside a wrong fold or a missed lobe means
  all of it, a click near the edge a little of it. Both kinds of click also take their colour
  region (``_colour_cut``: GrabCut, started from the mask, within the same disc): a negative click
  in a large fold the network is sure of takes the fold's mucosa, not one superpixel a click.
- **what clicks took stays out**: what a click removed within ``STICKY_REACH`` times its depth is
  recorded (``removed``; undo restores it), and beyond that reach a positive click may not put it
  back, nor add what lies nearer to an earlier negative click than to itself (``claimed_by_others``:
  a negative click has the last word in its own neighbourhood). The network's change further out,
  and its first answer from nothing, are proposals. A negative click may take anything: it only
  removes, and only at itself.
- **no holes, no specks** (``tidied``): after each click the mask's holes are filled, except
  where a negative click or a recorded removal opened one, and the specks the click left
  (parts under ``SPECK_SHARE`` of the largest, at what it changed, with no positive click) are
  dropped. A polyp or a skin lesion is one solid region: the network left holes at specular
  highlights and negative clicks left the rims of what they removed, each one more click.
  And what a negative click leaves of the blob it was made in, thinner than ``RIM_SHARE`` of its
  depth there, goes with it (``rim_left``): a click in the middle of a false blob means the blob.

The same session serves the workspace's Click mode, ``benchmarks/clicks.py`` and the tests.
``protocol_click`` is the standard simulated annotator (NoC protocol): the point deepest
inside the larger error region, positive in a missed region.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np
from scipy import ndimage

from napari_polyp.conventions import DEFAULT_THRESHOLD
from napari_polyp.errors import UserError
from napari_polyp.inference.refiner import (  # noqa: F401 -- Click, click_discs, refiner_runner: named here too
    CROP_MARGIN,
    FULL_IMAGE_SHARE,
    MIN_CROP,
    Click,
    click_discs,
    refiner_input,
    refiner_runner,
    sigmoid,
    torch_tensor,
)
from napari_polyp.inference.resample import resize_map

from ._colour_cut import colour_region
from ._patches import ImagePatches

LOCAL_REACH = 0.02  # a change region counts as "at the click" within this share of the image's side
MAX_PIXELS = 8000 * 8000  # larger images are refused with one message (memory, not the network)
THRESHOLD = DEFAULT_THRESHOLD  # the refined mask: probability above it
HONOUR_MARGIN = 0.02  # probability margin around the clicked pixel's of the region a click takes
HONOUR_MAX_SHARE = 0.25  # a click never takes more than this share of the image by that rule
DEPTH_REACH = 1.5  # what a click takes beyond its disc lies within this many times its depth in the error
# (distance to the mask's edge): deep in a wrong fold or a missed lobe it takes it, near the edge little
# (1 / 1.25 / 1.5 / 2 / 2.5 / 3 measured, docs/clicks.md)
HONOURED_MARGIN = 0.25  # a honoured region sits this far past the threshold in the kept probability
STICKY_REACH = 2.0  # beyond this many times its depth, a positive click may not put back what clicks removed
# (a positive click the network obeyed once put back a 38,659 px fold three negative clicks had taken)
SPECK_SHARE = 0.2  # a part a click leaves under this share of the mask's largest part is a speck
# (0.05 / 0.1 / 0.2 / 0.3 measured, docs/clicks.md)
RIM_SHARE = 0.4  # what a negative click leaves of its blob thinner than this share of its depth is a rim
# (rims at etis20: 0.24-0.30; a polyp the blob had merged with: 0.48; docs/clicks.md)
_EIGHT = np.ones((3, 3), bool)  # parts of a mask are 8-connected, as in ``cleanup``


class ClickSession:
    """One image's click correction: the clicks, the mask after each, undo."""

    def __init__(self, image: np.ndarray, prior: Optional[np.ndarray] = None, *, checkpoint=None,
                 engine: Optional[str] = None, threads: Optional[int] = None, zoom: bool = True,
                 local: bool = True, box: Optional[Tuple[int, int, int, int]] = None, runner=None,
                 task: Optional[str] = None, honour_clicks: bool = True, influence: Optional[float] = None,
                 second_look: bool = True):
        self.image = _checked_image(image)
        h, w = self.image.shape[:2]
        self.probability = _checked_prior(prior, (h, w))
        self.mask = self.probability > THRESHOLD
        self.clicks: List[Click] = []
        self.removed = np.zeros((h, w), bool)  # where a click removed a pixel, within its own reach
        self._undo: List[Tuple[np.ndarray, np.ndarray, List[Click], np.ndarray]] = []
        self.zoom, self.local, self.task, self.honour_clicks = zoom, local, task, honour_clicks
        self.influence = influence  # a share of the image's side: no change further from the click
        self.second_look = second_look
        self.box = _checked_box(box, (h, w)) if box is not None else None
        self._runner = runner
        self._patches: Optional[ImagePatches] = None  # made at first need (about 0.03 s)
        self._checkpoint, self._engine, self._threads = checkpoint, engine, threads

    # -- the contract ---------------------------------------------------------------------
    def click(self, row: int, col: int, positive: bool = True) -> np.ndarray:
        """Add a click at (row, col) and return the refined mask (HxW bool)."""
        h, w = self.mask.shape
        if not (0 <= row < h and 0 <= col < w):
            raise UserError(f"the click at row {row}, column {col} is outside the image ({h}×{w} px); "
                            "the mask is unchanged")
        self._undo.append((self.probability.copy(), self.mask.copy(), list(self.clicks), self.removed.copy()))
        self.clicks.append(Click(int(row), int(col), bool(positive)))
        try:
            found_from_nothing = not self.mask.any()
            probability = self._refine()
            self._apply(probability)
            if found_from_nothing and self.second_look and self.mask.any() and self.crop() != (0, 0, h, w):
                self._apply(self._refine())  # a second look, zoomed in on what the whole image showed
        except Exception:
            self.probability, self.mask, self.clicks, self.removed = self._undo.pop()
            raise
        return self.mask.copy()

    def undo(self) -> np.ndarray:
        """Return to the mask before the last click."""
        if not self._undo:
            raise UserError("nothing to undo: no click has been made on this image")
        self.probability, self.mask, self.clicks, self.removed = self._undo.pop()
        return self.mask.copy()

    def drag_box(self, top: int, left: int, bottom: int, right: int) -> np.ndarray:
        """A box around a lesion as the first interaction: the network looks inside it (zoomed
        in) with a positive click at its centre."""
        self.box = _checked_box((top, left, bottom, right), self.mask.shape)
        top, left, bottom, right = self.box
        return self.click((top + bottom - 1) // 2, (left + right - 1) // 2, positive=True)

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    def click_log(self) -> List[dict]:
        """The clicks as plain values (saved with a correction)."""
        return [c.to_dict() for c in self.clicks]

    # -- one refinement -------------------------------------------------------------------
    @property
    def runner(self):
        if self._runner is None:
            self._runner = refiner_runner(self._checkpoint, self._engine, self._threads)
        return self._runner

    def _refine(self) -> np.ndarray:
        """The network's probability for the whole image (outside the crop: unchanged)."""
        top, left, bottom, right = self.crop()
        size = int(self.runner.input_size)
        crop_hw = (bottom - top, right - left)
        x = refiner_input(self.image[top:bottom, left:right], self.probability[top:bottom, left:right],
                          [Click(c.row - top, c.col - left, c.positive) for c in self.clicks], size)
        logits = self.runner.run(x)["logits"] if hasattr(self.runner, "run") else \
            self.runner(torch_tensor(x))["logits"].detach().numpy()
        probability = self.probability.copy()
        probability[top:bottom, left:right] = resize_map(sigmoid(logits[0, 0]), crop_hw)
        return probability

    def crop(self) -> Tuple[int, int, int, int]:
        """(top, left, bottom, right) the network sees: the whole image, or a square around
        the mask and the clicks (see the module docstring)."""
        h, w = self.mask.shape
        whole = (0, 0, h, w)
        if not self.zoom:
            return whole
        rows, cols = [c.row for c in self.clicks], [c.col for c in self.clicks]
        if self.box is not None:
            rows += [self.box[0], self.box[2] - 1]
            cols += [self.box[1], self.box[3] - 1]
        elif not self.mask.any():
            return whole
        if self.mask.any():
            mask_top, mask_left, mask_bottom, mask_right = _box(self.mask)
            rows += [mask_top, mask_bottom - 1]
            cols += [mask_left, mask_right - 1]
        top, bottom, left, right = min(rows), max(rows) + 1, min(cols), max(cols) + 1
        side = max(bottom - top, right - left) * (1 + 2 * CROP_MARGIN)
        side = int(min(max(side, MIN_CROP), max(h, w)))
        if side * side > FULL_IMAGE_SHARE * h * w:
            return whole
        centre_r, centre_c = (top + bottom) / 2, (left + right) / 2
        top = int(np.clip(round(centre_r - side / 2), 0, max(h - side, 0)))
        left = int(np.clip(round(centre_c - side / 2), 0, max(w - side, 0)))
        return top, left, min(top + side, h), min(left + side, w)

    def _apply(self, probability: np.ndarray) -> None:
        before, removed_before = self.mask, self.removed.copy()
        own_reach = self.sticky_reach(self.clicks[-1])
        guarded = self.guarded(own_reach)
        probability = np.where(guarded, self.probability, probability)
        new = probability > THRESHOLD
        if self.local:
            # a click changes the mask only its own way: a negative click once grew the mask by
            # 39,000 px where the network redrew a fold (Kvasir-SEG, IoU 0.90 -> 0.65)
            against = (new != self.mask) & (new != self.clicks[-1].positive)
            probability = np.where(against, self.probability, probability)
            new = np.where(against, self.mask, new)
            changed = new != self.mask
            keep = regions_at(changed, self.clicks[-1], reach(self.mask.shape))
            if self.influence and self.mask.any():
                keep &= within(self.mask.shape, self.clicks[-1], self.influence * max(self.mask.shape))
            probability = np.where(changed & ~keep, self.probability, probability)
            new = np.where(keep, new, self.mask)
        if self.honour_clicks:
            click = self.clicks[-1]
            if new[click.row, click.col] != click.positive:
                patch = with_region(self.patch_at(click), self.colour_region(click))
                new = honour_click(new, probability, click, reach(self.mask.shape), patch,
                                   limit=self.depth_disc(click))
                probability = agreeing_probability(probability, new)
            elif self.mask[click.row, click.col] != click.positive:
                patch = with_region(self.depth_patch(click), self.colour_region(click))
                if patch is not None and (new[patch] != click.positive).any():
                    new = new | patch if click.positive else new & ~patch
                    probability = agreeing_probability(probability, new)
        new = np.where(guarded, before, new)
        if own_reach is not None:  # what the click itself took; the network's proposal beyond is not
            self.removed[before & ~new & own_reach] = True
            self.removed[new & own_reach] = False  # put back at the click: no longer removed
        tidy = tidied(new, before, self.clicks, self.removed)
        if tidy is not new:
            self.removed[tidy != new] = False  # a filled hole or a dropped speck is nobody's removal
            new, probability = tidy, agreeing_probability(probability, tidy)
        rim = rim_left(new, before, self.clicks)
        if rim is not None:
            self.removed |= rim
            new = new & ~rim
            probability = agreeing_probability(probability, new)
        claimed = claimed_by_others(new != before, self.clicks)
        if claimed is not None:
            new = np.where(claimed, before, new)
            self.removed[claimed] = removed_before[claimed]
            probability = agreeing_probability(probability, new)
        self.probability, self.mask = probability.astype(np.float32), new

    def sticky_reach(self, click: Click) -> Optional[np.ndarray]:
        """HxW bool: within ``STICKY_REACH`` times the click's depth (at least 3 px): what it takes
        there is recorded, and beyond it a positive click may not put back what clicks removed;
        None on an empty mask (from nothing, the network's first answer is a proposal)."""
        if not self.mask.any():
            return None
        depth = depth_at(self.mask != click.positive, click.row, click.col)
        return within(self.mask.shape, click, max(STICKY_REACH * depth, 3))

    def guarded(self, reach: Optional[np.ndarray]) -> np.ndarray:
        """HxW bool: the pixels the last click may not change. For a positive click, those clicks
        removed beyond its ``reach`` (a click near one removed fold may still put some back; one
        across the lesion may not). A negative click may take anything: guarding what positive
        clicks added as well cost 0.5 clicks from nothing at etis20 and gained none on Kvasir."""
        if reach is None or not self.clicks[-1].positive:
            return np.zeros(self.mask.shape, bool)
        return self.removed & ~reach

    def depth_disc(self, click: Click) -> Optional[np.ndarray]:
        """HxW bool: within ``DEPTH_REACH`` times the click's depth in the error (its distance to
        the edge of the mask as it was); None on an empty mask, where the depth is the border's."""
        if not self.mask.any():
            return None
        depth = depth_at(self.mask != click.positive, click.row, click.col)
        return within(self.mask.shape, click, DEPTH_REACH * depth)

    def depth_patch(self, click: Click) -> Optional[np.ndarray]:
        """The click's patch and the patches of its colour joined to it, on the click's wrong side
        of the mask as it was, within its depth disc; from nothing, or where a positive click's
        would outgrow the mask, the clicked patch alone (the alike patches from nothing took Dice
        after one click from 0.90 to 0.70 on Kvasir-SEG)."""
        disc = self.depth_disc(click)
        if disc is None:
            return self.patch_at(click)
        alike = self.patches.alike(click.row, click.col, disc & (self.mask != click.positive))
        if alike is None:
            return None
        alike &= disc
        if click.positive and alike.sum() > self.mask.sum():
            # a missed part is not larger than the lesion: a click far from a small false mask has
            # the distance to it as its depth, and the mucosa's patches would grow over half the
            # frame (etis20 frame 008: 58 % of it)
            return self.patch_at(click)
        return alike

    def colour_region(self, click: Click) -> Optional[np.ndarray]:
        """HxW bool: what GrabCut, started from the mask, moves to the click's side within its
        depth disc, joined to the click (``_colour_cut``); None on an empty mask (no colour model
        of the lesion yet) or where a positive click's would outgrow the mask."""
        disc = self.depth_disc(click)
        if disc is None:
            return None
        patches, step = self.patches, self.patches.step
        clicks = [(c.row // step, c.col // step, c.positive) for c in self.clicks]
        small = colour_region(patches.small_image, patches.small(self.mask), patches.small(disc), clicks,
                              (click.row // step, click.col // step, click.positive))
        if small is None:
            return None
        region = patches.full_size(small) & disc
        if click.positive and region.sum() > self.mask.sum():
            return None
        return region

    def patch_at(self, click: Click) -> Optional[np.ndarray]:
        """HxW bool: the image's superpixel at the click; None where it is over
        ``_patches.MAX_SHARE`` of the image."""
        return self.patches.at(click.row, click.col)

    @property
    def patches(self) -> ImagePatches:
        if self._patches is None:
            self._patches = ImagePatches(self.image)
        return self._patches


def honour_click(mask: np.ndarray, probability: np.ndarray, click: Click, radius: int,
                 patch: Optional[np.ndarray] = None, limit: Optional[np.ndarray] = None) -> np.ndarray:
    """A click is an order: where the network's answer still has the clicked pixel on the wrong
    side, the region the network is no surer of than of that pixel, connected to it, takes the
    click's side (the network's own gradient of belief decides its extent), or at least a disc
    of ``radius`` px. Capped at ``HONOUR_MAX_SHARE`` of the image: beyond that, the disc alone.
    ``patch`` (the image's superpixel at the click) is taken too: where the network is equally
    sure of a whole false fold, the image's edges still bound what the click means. ``limit``
    (the click's depth disc) bounds both: a negative click the network ignored at 0.99 once took
    a whole polyp it was as sure of (Kvasir-SEG, IoU 0.72 -> 0.00), and at etis20, where a polyp
    is a superpixel or two, the patch of a click beside it took half of it."""
    if mask[click.row, click.col] == click.positive:
        return mask
    level = float(probability[click.row, click.col])
    if click.positive:
        candidate = probability >= level - HONOUR_MARGIN
    else:
        candidate = mask & (probability <= level + HONOUR_MARGIN)
    labels, _ = ndimage.label(candidate)
    region = labels == labels[click.row, click.col]
    if region.sum() > HONOUR_MAX_SHARE * mask.size:
        region = np.zeros_like(mask)
    if patch is not None:
        region |= patch if click.positive else patch & mask
    if limit is not None:
        region &= limit
    region |= within(mask.shape, click, radius)
    out = mask.copy()
    out[region] = click.positive
    return out


def tidied(mask: np.ndarray, before: np.ndarray, clicks: List[Click], removed: np.ndarray) -> np.ndarray:
    """``mask`` (the mask after a click; ``before``, the mask before it) with its holes filled and
    the specks the click left dropped; the same array where neither is found.

    A hole stays open where a negative click or a ``removed`` pixel lies in it. A speck is
    a part under ``SPECK_SHARE`` of the largest part, within 2 px of what the click changed or
    new with it (the rim of a false blob a negative click took, a crumb of what a positive one
    added), that no positive click lies in; a small part elsewhere (a second lesion) is left.
    Worked in the box of both masks: on a 48-megapixel image the whole frame took 7 s."""
    if not mask.any():
        return mask
    top, left, bottom, right = _box(mask | before)
    window = (slice(top, bottom), slice(left, right))
    inside = [Click(c.row - top, c.col - left, c.positive) for c in clicks
              if top <= c.row < bottom and left <= c.col < right]
    tidy = _tidied_window(mask[window], before[window], inside, removed[window])
    if tidy is None:
        return mask
    out = mask.copy()
    out[window] = tidy
    return out


def claimed_by_others(changed: np.ndarray, clicks: List[Click]) -> Optional[np.ndarray]:
    """HxW bool: of the pixels a positive click (the last of ``clicks``) added, those nearer to an
    earlier negative click than to it; None where there are none. A negative click has the last
    word in its own neighbourhood: at etis20 a positive and a negative click a few pixels apart
    took turns adding and taking the same region (IoU 0.89, 0.83, 0.89, ... on frame 001). A
    negative click is not held back the other way: it only removes, and only at itself (holding
    it back too cost 0.7 clicks at etis20 from nothing)."""
    click = clicks[-1]
    negatives = [c for c in clicks[:-1] if not c.positive]
    if not click.positive or not negatives or not changed.any():
        return None
    rows, cols = np.nonzero(changed)
    own = (rows - click.row) ** 2 + (cols - click.col) ** 2
    nearest = np.min([(rows - c.row) ** 2 + (cols - c.col) ** 2 for c in negatives], axis=0)
    back = nearest < own
    if not back.any():
        return None
    out = np.zeros(changed.shape, bool)
    out[rows[back], cols[back]] = True
    return out


def rim_left(mask: np.ndarray, before: np.ndarray, clicks: List[Click]) -> Optional[np.ndarray]:
    """HxW bool: the rim a negative click (the last of ``clicks``) left of the blob it took, or None.

    The blob is the part of ``before`` the click was made in; where it holds no positive click
    and the click took its pixel, the parts of it left in ``mask`` thinner than ``RIM_SHARE``
    times the click's depth in it are its rim. A click in the middle of a blob says the blob is
    wrong: at etis20 the network, sure of a lump of debris, gave up its core and kept a ring
    around the click, one more click each. A part as thick as a lesion (a polyp the blob had
    merged with) is left: only a rim, never a lesion, goes without a click on it."""
    click = clicks[-1]
    if click.positive or not before[click.row, click.col] or mask[click.row, click.col]:
        return None
    top, left, bottom, right = _box(before)  # worked in boxes: a frame may have 48 megapixels
    parts, _ = ndimage.label(before[top:bottom, left:right], structure=_EIGHT)
    blob = parts == parts[click.row - top, click.col - left]
    blob_top, blob_left, blob_bottom, blob_right = _box(blob)
    blob = blob[blob_top:blob_bottom, blob_left:blob_right]
    top, left, bottom, right = top + blob_top, left + blob_left, top + blob_bottom, left + blob_right
    window = (slice(top, bottom), slice(left, right))
    if any(c.positive and blob[c.row - top, c.col - left] for c in clicks
           if top <= c.row < bottom and left <= c.col < right):
        return None
    left_of_it, count = ndimage.label(mask[window] & blob, structure=_EIGHT)
    if count == 0:
        return None
    depth = ndimage.distance_transform_edt(np.pad(left_of_it > 0, 1))[1:-1, 1:-1]
    thickness = ndimage.maximum(depth, left_of_it, np.arange(1, count + 1))
    thin = np.concatenate([[False], np.asarray(thickness) < RIM_SHARE * depth_at(before, click.row, click.col)])
    if not thin.any():
        return None
    out = np.zeros(mask.shape, bool)
    out[window] = thin[left_of_it]
    return out


def _tidied_window(mask, before, clicks, removed) -> Optional[np.ndarray]:
    """``tidied`` within the box of both masks; None where nothing changes. Label counts by
    ``bincount``: ``ndimage.sum`` and ``np.unique`` took seconds on a large mask."""
    out = mask
    # a hole is a part of the background the box's edge does not reach (the box holds the mask)
    padded, count = ndimage.label(np.pad(~mask, 1, constant_values=True))
    outside, background = padded[0, 0], padded[1:-1, 1:-1]  # the ring around the box: outside
    if count > 1:
        kept_open = _labels_in(background, removed, count)
        kept_open[[0, outside]] = True  # the mask itself, and what the box's edge reaches
        for c in clicks:
            kept_open[background[c.row, c.col]] |= not c.positive
        holes = ~kept_open[background]
        if holes.any():
            out = mask | holes
    parts, count = ndimage.label(out, structure=_EIGHT)
    if count > 1:
        sizes = np.bincount(parts.ravel(), minlength=count + 1)
        speck = sizes < SPECK_SHARE * sizes[1:].max()
        speck[0] = False
        for c in clicks:
            speck[parts[c.row, c.col]] &= not c.positive
        if speck.any():
            changed = mask != before
            left_by_click = ~_labels_in(parts, before, count)  # parts new with the click
            left_by_click |= _labels_in(parts, _near(changed, 2), count) if changed.any() else False
            speck &= left_by_click
            if speck.any():
                out = out & ~speck[parts]
    return None if out is mask else out


def _labels_in(labels: np.ndarray, region: np.ndarray, count: int) -> np.ndarray:
    """(count + 1,) bool: which labels occur in ``region``."""
    return np.bincount(labels[region], minlength=count + 1) > 0


def _near(region: np.ndarray, distance: int) -> np.ndarray:
    """``region`` grown by ``distance`` px (4-connected steps), worked in its box only."""
    top, left, bottom, right = _box(region)
    top, left = max(top - distance, 0), max(left - distance, 0)
    bottom, right = min(bottom + distance, region.shape[0]), min(right + distance, region.shape[1])
    out = np.zeros_like(region)
    out[top:bottom, left:right] = ndimage.binary_dilation(region[top:bottom, left:right], iterations=distance)
    return out


def _box(region: np.ndarray) -> Tuple[int, int, int, int]:
    """(top, left, bottom, right) of a non-empty HxW bool region."""
    rows, cols = np.nonzero(region.any(1))[0], np.nonzero(region.any(0))[0]
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def with_region(patch: Optional[np.ndarray], region: Optional[np.ndarray]) -> Optional[np.ndarray]:
    """The union of two optional HxW bool regions."""
    if region is None:
        return patch
    return region if patch is None else patch | region


def agreeing_probability(probability: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The probability moved ``HONOURED_MARGIN`` past the threshold wherever the mask overrules it."""
    out = probability.copy()
    out[mask & (probability <= THRESHOLD)] = THRESHOLD + HONOURED_MARGIN
    out[~mask & (probability > THRESHOLD)] = THRESHOLD - HONOURED_MARGIN
    return out


def depth_at(region: np.ndarray, row: int, col: int) -> float:
    """The distance from (row, col), inside ``region``, to the nearest pixel outside it (beyond
    the image's border counts as outside), searched in a window that doubles until it holds
    one: exact, and a few milliseconds on any image size."""
    h, w = region.shape
    to_border = float(min(row + 1, col + 1, h - row, w - col))
    radius = 16
    while True:
        radius = min(radius, int(np.ceil(to_border)))  # nothing beyond the border's distance can be nearer
        top, left = max(row - radius, 0), max(col - radius, 0)
        rr, cc = np.nonzero(~region[top:row + radius + 1, left:col + radius + 1])
        nearest = float(np.sqrt(np.min((rr + top - row) ** 2 + (cc + left - col) ** 2))) if len(rr) else np.inf
        if nearest <= radius or radius >= to_border:  # the window holds every pixel this near
            return min(nearest, to_border)
        radius *= 2


def within(shape, click: Click, radius: float) -> np.ndarray:
    """HxW bool: the disc of ``radius`` px around the click (drawn in its box only: on a 48-megapixel
    image the whole-image distance took 0.4 s a disc)."""
    out = np.zeros(shape, bool)
    reach_px = int(np.floor(max(radius, 0)))
    top, bottom = max(click.row - reach_px, 0), min(click.row + reach_px + 1, shape[0])
    left, right = max(click.col - reach_px, 0), min(click.col + reach_px + 1, shape[1])
    if top < bottom and left < right:
        rr, cc = np.ogrid[top:bottom, left:right]
        out[top:bottom, left:right] = (rr - click.row) ** 2 + (cc - click.col) ** 2 <= radius ** 2
    return out


def reach(shape) -> int:
    return max(2, int(round(LOCAL_REACH * max(shape))))


def regions_at(changed: np.ndarray, click: Click, radius: int) -> np.ndarray:
    """The connected regions of ``changed`` within ``radius`` px of the click."""
    if not changed.any():
        return changed
    labels, _ = ndimage.label(changed)
    h, w = changed.shape
    top, bottom = max(click.row - radius, 0), min(click.row + radius + 1, h)
    left, right = max(click.col - radius, 0), min(click.col + radius + 1, w)
    window = labels[top:bottom, left:right]
    rr, cc = np.ogrid[top:bottom, left:right]
    near = (rr - click.row) ** 2 + (cc - click.col) ** 2 <= radius ** 2
    ids = np.unique(window[near & (window > 0)])
    return np.isin(labels, ids) if len(ids) else np.zeros_like(changed)


# -- the simulated annotator (benchmark protocol) -----------------------------------------

def protocol_click(mask: np.ndarray, truth: np.ndarray) -> Optional[Click]:
    """The NoC protocol's next click: the point deepest inside the larger error region (the
    one whose Euclidean distance-transform maximum is larger; the image border counts as
    edge), positive in a missed (false negative) region; None when there is no error."""
    best = None
    for positive, error in ((True, truth & ~mask), (False, mask & ~truth)):
        if not error.any():
            continue
        depth = ndimage.distance_transform_edt(np.pad(error, 1))[1:-1, 1:-1]
        index = int(np.argmax(depth))
        if best is None or depth.flat[index] > best[0]:
            best = (depth.flat[index], Click(index // mask.shape[1], index % mask.shape[1], positive))
    return None if best is None else best[1]


# -- input checks ----------------------------------------------------------------------

def _checked_image(image) -> np.ndarray:
    from napari_polyp.io.images import as_rgb_uint8

    if image is None:
        raise UserError("open an image before clicking: there is no image to correct")
    image = np.asarray(image)
    if image.ndim not in (2, 3) or image.shape[0] < 1 or image.shape[1] < 1:
        raise UserError(f"the image has shape {image.shape}; a click session needs one 2-D image (H×W×3)")
    if image.shape[0] * image.shape[1] > MAX_PIXELS:
        raise UserError(f"the image is {image.shape[1]}×{image.shape[0]} px; clicks work on images up to "
                        f"{MAX_PIXELS // 1_000_000} megapixels (crop or downscale it first)")
    return as_rgb_uint8(image)


def _checked_prior(prior, hw) -> np.ndarray:
    if prior is None:
        return np.zeros(hw, np.float32)
    prior = np.asarray(prior)
    if prior.shape != tuple(hw):
        raise UserError(f"the starting mask has shape {prior.shape}, the image is {hw[0]}×{hw[1]} px: "
                        "they must match")
    values = np.nan_to_num(prior.astype(np.float32))
    if prior.dtype == bool or values.max(initial=0) > 1.0:  # a 0/255 or label mask
        return (values > 0).astype(np.float32)
    return np.clip(values, 0.0, 1.0)


def _checked_box(box, hw) -> Tuple[int, int, int, int]:
    top, left, bottom, right = (int(v) for v in box)
    top, bottom = sorted((top, bottom))
    left, right = sorted((left, right))
    top, left = max(top, 0), max(left, 0)
    bottom, right = min(bottom, hw[0]), min(right, hw[1])
    if bottom - top < 2 or right - left < 2:
        raise UserError(f"the box {box} has no area inside the image ({hw[1]}×{hw[0]} px)")
    return top, left, bottom, right
