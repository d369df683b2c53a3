"""The simulated annotator of click training, batched on the training device (torch).

Everything here works on whole batches (B x 1 x H x W), so that a GPU simulates the clicks
of a batch in a few kernels instead of a loop over images:

- ``error_depth``: how deep each pixel lies inside an error region (chessboard distance to
  the region's edge, the image border counting as edge, capped at ``MAX_DEPTH``), from
  repeated 3x3 erosions;
- ``next_clicks``: one click per sample in the larger error region (false negative or false
  positive, whichever lies deeper), positive in a false negative; at its deepest point (the
  benchmark's protocol, ``napari_polyp.corrections.clicks.protocol_click``, with the exact
  Euclidean distance there) or drawn with weight depth² (training's variety);
- ``click_maps``: the positive and negative click discs the refiner reads;
- ``perturb_masks``: starting masks with a network's kind of errors, made from the truth:
  grown or shrunk, shifted, a false blob attached or apart, a part cut off, holes, softened;
- ``band_masks``: a good mask whose edge is off by a band along one stretch of its outline;
- ``structure_masks``: the error of a network on a new image: a neighbouring structure taken
  in or a part of the lesion left out, along the image's own edges (superpixels; on the CPU).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from models.click_refiner import CLICK_RADIUS

MAX_DEPTH = 64  # erosions; deeper points are all "deepest"


def erode(mask: torch.Tensor) -> torch.Tensor:
    """3x3 erosion of a {0,1} float mask, outside the image counting as background."""
    return -F.max_pool2d(-F.pad(mask, (1, 1, 1, 1), value=0.0), 3, 1)


def error_depth(error: torch.Tensor, max_depth: int = MAX_DEPTH) -> torch.Tensor:
    """Bx1xHxW {0,1} -> the number of erosions each pixel survives (0 outside the region)."""
    depth = torch.zeros_like(error)
    current = error
    for _ in range(max_depth):
        depth += current
        current = erode(current)
        if not bool(current.any()):
            break
    return depth


def next_clicks(pred: torch.Tensor, truth: torch.Tensor, deepest: bool = True,
                generator: Optional[torch.Generator] = None):
    """One click per sample: (rows, cols, positive, valid), each of shape [B].

    ``pred`` and ``truth``: Bx1xHxW {0,1}. ``valid`` is False where the prediction has no
    error left (no click)."""
    fn = ((truth > 0.5) & (pred <= 0.5)).float()
    fp = ((truth <= 0.5) & (pred > 0.5)).float()
    depth_fn, depth_fp = error_depth(fn), error_depth(fp)
    positive = depth_fn.flatten(1).amax(1) >= depth_fp.flatten(1).amax(1)
    depth = torch.where(positive.view(-1, 1, 1, 1), depth_fn, depth_fp).flatten(1)
    valid = depth.amax(1) > 0
    if deepest:
        noise = torch.rand(depth.shape, device=depth.device, generator=generator) * 0.5  # random ties
        index = (depth + noise * (depth > 0)).argmax(1)
    else:
        weights = depth ** 2
        weights[~valid] = 1.0  # any pixel; the click is marked invalid anyway
        index = torch.multinomial(weights, 1, generator=generator).squeeze(1)
    width = fn.shape[-1]
    return index // width, index % width, positive, valid


def click_maps(clicks: torch.Tensor, shape, radius: float = CLICK_RADIUS) -> torch.Tensor:
    """clicks [B,K,3] (row, col, sign: +1 positive, -1 negative, 0 none) -> Bx2xHxW discs
    (channel 0 positive, 1 negative); a pixel is in a disc within ``radius`` of its centre."""
    h, w = shape
    ys = torch.arange(h, device=clicks.device, dtype=torch.float32).view(1, 1, -1, 1)
    xs = torch.arange(w, device=clicks.device, dtype=torch.float32).view(1, 1, 1, -1)
    rows, cols, sign = (clicks[..., k].float().view(*clicks.shape[:2], 1, 1) for k in range(3))
    inside = (ys - rows) ** 2 + (xs - cols) ** 2 <= radius ** 2  # B,K,H,W
    positive = (inside & (sign > 0)).any(1)
    negative = (inside & (sign < 0)).any(1)
    return torch.stack([positive, negative], 1).float()


def _uniform(n: int, lo: float, hi: float, device, generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, device=device, generator=generator)


def _grow(mask: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    """Dilate (radius > 0) or erode (radius < 0) each sample by |radius| px (a square)."""
    out = mask.clone()
    for r in sorted({int(v) for v in radius.tolist()} - {0}):
        rows = radius.round().long() == r
        k = 2 * abs(r) + 1
        src = mask[rows]
        out[rows] = F.max_pool2d(src, k, 1, abs(r)) if r > 0 else -F.max_pool2d(-src, k, 1, abs(r))
    return out


def _ellipses(n: int, shape, centre_y, centre_x, radius_y, radius_x) -> torch.Tensor:
    h, w = shape
    ys = (torch.arange(h, device=centre_y.device).float().view(1, 1, -1, 1) + 0.5) / h
    xs = (torch.arange(w, device=centre_y.device).float().view(1, 1, 1, -1) + 0.5) / w
    return ((((ys - centre_y.view(-1, 1, 1, 1)) / radius_y.view(-1, 1, 1, 1)) ** 2
             + ((xs - centre_x.view(-1, 1, 1, 1)) / radius_x.view(-1, 1, 1, 1)) ** 2) <= 1).float()


def _object_points(mask: torch.Tensor, generator) -> torch.Tensor:
    """A random foreground point per sample (the image centre for an empty mask), in [0, 1]."""
    flat = mask.flatten(1) + 1e-6
    index = torch.multinomial(flat, 1, generator=generator).squeeze(1)
    h, w = mask.shape[-2:]
    return torch.stack([(index // w).float() / h, (index % w).float() / w], 1)


def _shift(mask: torch.Tensor, amount: torch.Tensor, generator) -> torch.Tensor:
    """Translate, scale and rotate a little (a misaligned boundary)."""
    b = mask.shape[0]
    angle = _uniform(b, -0.3, 0.3, mask.device, generator) * amount
    zoom = 1 + _uniform(b, -0.2, 0.2, mask.device, generator) * amount
    tx, ty = (_uniform(b, -0.1, 0.1, mask.device, generator) * amount for _ in range(2))
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(mask.shape), align_corners=False)
    return F.grid_sample(mask, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def perturb_masks(truth: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Bx1xHxW {0,1} truth -> Bx1xHxW probability masks with a network's kind of errors.

    Each sample gets each change with its own probability: grown or shrunk by up to 8 % of
    the side, shifted/zoomed/turned a little, a false blob (attached to the lesion or apart),
    a part cut off, a hole; then its edge is softened as a network's probability would be."""
    b, _, h, w = truth.shape
    dev = truth.device
    side = min(h, w)
    coin = torch.rand(b, 6, device=dev, generator=generator)
    mask = truth.float()
    radius = torch.where(coin[:, 0] < 0.6, _uniform(b, -0.08, 0.08, dev, generator) * side, torch.zeros(b, device=dev))
    mask = _grow(mask, radius)
    shifted = _shift(mask, _uniform(b, 0.2, 1.0, dev, generator), generator)
    mask = torch.where((coin[:, 1] < 0.35).view(-1, 1, 1, 1), shifted, mask)
    near = _object_points(truth, generator)  # attached blobs start on the lesion
    apart = torch.rand(b, 2, device=dev, generator=generator)
    centre = torch.where((torch.rand(b, device=dev, generator=generator) < 0.5).view(-1, 1), near, apart)
    blob = _ellipses(b, (h, w), centre[:, 0], centre[:, 1], _uniform(b, 0.03, 0.2, dev, generator),
                     _uniform(b, 0.03, 0.2, dev, generator))
    mask = torch.where((coin[:, 2] < 0.3).view(-1, 1, 1, 1), torch.maximum(mask, blob), mask)
    cut_at = _object_points(truth, generator)
    cut = _ellipses(b, (h, w), cut_at[:, 0], cut_at[:, 1], _uniform(b, 0.05, 0.3, dev, generator),
                    _uniform(b, 0.05, 0.3, dev, generator))
    mask = torch.where((coin[:, 3] < 0.3).view(-1, 1, 1, 1), mask * (1 - cut), mask)
    hole_at = _object_points(truth, generator)
    hole = _ellipses(b, (h, w), hole_at[:, 0], hole_at[:, 1], _uniform(b, 0.01, 0.06, dev, generator),
                     _uniform(b, 0.01, 0.06, dev, generator))
    mask = torch.where((coin[:, 4] < 0.15).view(-1, 1, 1, 1), mask * (1 - hole), mask)
    return soften(mask, generator)


def near_truth_masks(truth: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Bx1xHxW {0,1} truth -> masks a good network gives: the edge off by up to 2 % of the side
    and one small error (a blob attached or apart, or a bite out of the lesion), softened.

    They teach the refiner that a click on a small error of a good mask fixes that error and
    leaves the rest; the starts of ``perturb_masks`` are mostly far from the truth."""
    b, _, h, w = truth.shape
    dev = truth.device
    side = min(h, w)
    mask = _grow(truth.float(), _uniform(b, -0.02, 0.02, dev, generator) * side)
    at = torch.where((torch.rand(b, device=dev, generator=generator) < 0.7).view(-1, 1),
                     _object_points(truth, generator), torch.rand(b, 2, device=dev, generator=generator))
    small = _ellipses(b, (h, w), at[:, 0], at[:, 1], _uniform(b, 0.02, 0.08, dev, generator),
                      _uniform(b, 0.02, 0.08, dev, generator))
    bite = (torch.rand(b, device=dev, generator=generator) < 0.5).view(-1, 1, 1, 1)
    mask = torch.where(bite, mask * (1 - small), torch.maximum(mask, small))
    return soften(mask, generator)


def band_masks(truth: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Bx1xHxW {0,1} truth -> the truth with its edge moved out or in by 1-5 % of the side along
    one stretch of its outline (the part inside a disc of 0.3-1.0 lesion radii around a point
    of the edge), softened.

    These are the errors the clicks were left with on good masks (docs/clicks.md, "Where the
    clicks go"): a rim a few px wide along one side. A click inside such a band should move
    that stretch of edge and nothing else; ``near_truth_masks`` moves the edge all round."""
    b, _, h, w = truth.shape
    dev = truth.device
    side = min(h, w)
    truth = truth.float()
    sign = torch.where(torch.rand(b, device=dev, generator=generator) < 0.5, 1.0, -1.0)
    moved = _grow(truth, sign * _uniform(b, 0.01, 0.05, dev, generator) * side)
    at = _object_points(truth - erode(truth), generator)  # a point of the edge
    lesion_radius = (truth.flatten(1).sum(1) / torch.pi).sqrt().clamp(min=0.05 * side)
    reach = _uniform(b, 0.3, 1.0, dev, generator) * lesion_radius
    stretch = _ellipses(b, (h, w), at[:, 0], at[:, 1], reach / h, reach / w)
    return soften(torch.where(stretch > 0, moved, truth), generator)


def masktrack_priors(truth: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Bx1xHxW {0,1} truth -> the previous frame's mask as propagation hands it over (MaskTrack,
    Perazzi et al. 2017: deformed true masks of still images): moved, zoomed and turned (up to
    10 % of the side, 20 %, 0.3 rad), grown or shrunk (up to 4 % of the side), bent by a smooth
    elastic field (up to 5 % of the side), softened; one sample in ten is the truth itself, so
    that a good prior is kept as it is.

    With no clicks, the refiner learns to pull such a prior onto the object in this frame."""
    b, _, h, w = truth.shape
    dev = truth.device
    side = min(h, w)
    coin = torch.rand(b, 3, device=dev, generator=generator)
    mask = _shift(truth.float(), _uniform(b, 0.0, 1.0, dev, generator), generator)
    grown = _grow(mask, _uniform(b, -0.04, 0.04, dev, generator) * side)
    mask = torch.where((coin[:, 0] < 0.5).view(-1, 1, 1, 1), grown, mask)
    mask = torch.where((coin[:, 1] < 0.5).view(-1, 1, 1, 1), _elastic(mask, 0.05, generator), mask)
    mask = torch.where((coin[:, 2] < 0.1).view(-1, 1, 1, 1), truth.float(), mask)
    return soften(mask, generator)


STRUCTURE_SEGMENTS = 80  # SLIC superpixels per image: regions the size of a fold or a lobe
DARK = 0.1  # superpixels darker than this (mean in [0, 1]) are the frame around the view


def structure_masks(x: torch.Tensor, truth: torch.Tensor, rng: np.random.Generator,
                    generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Bx3xHxW images in [0, 1] and their Bx1xHxW {0,1} truth -> masks with the error a trained
    network makes on a new image: a whole neighbouring structure taken in (a fold, a lobe of
    mucosa beside the polyp: superpixels attached to the lesion, 15-100 % of its area), or a
    part of the lesion left out (superpixels along its edge, 10-40 %), softened.

    Their boundaries follow the image's edges, as a network's do, so a click on one has to
    move a confident boundary; the blobs of ``perturb_masks`` are ellipses the image does not
    explain. Computed on the CPU at half size (SLIC, about 15 ms an image)."""
    from skimage.segmentation import slic

    images = x.detach().float().cpu().numpy().transpose(0, 2, 3, 1)[:, ::2, ::2]
    truths = truth.detach().cpu().numpy()[:, 0, ::2, ::2] > 0.5
    out = np.empty_like(truths, dtype=np.float32)
    for i, (image, lesion) in enumerate(zip(images, truths)):
        labels = slic(np.ascontiguousarray(image), n_segments=STRUCTURE_SEGMENTS, compactness=10,
                      start_label=0, channel_axis=-1)
        out[i] = _structure_error(labels, lesion, image.mean(-1), rng) if lesion.any() else lesion
    mask = torch.from_numpy(out)[:, None].to(truth.device)
    mask = F.interpolate(mask, size=truth.shape[-2:], mode="nearest")
    return soften(mask, generator)


def _structure_error(labels: np.ndarray, lesion: np.ndarray, brightness: np.ndarray,
                     rng: np.random.Generator) -> np.ndarray:
    """One sample of ``structure_masks``: a connected run of superpixels grown from the lesion's
    edge, outward (taken in) or inward (left out)."""
    from skimage.segmentation import find_boundaries

    n = int(labels.max()) + 1
    area = np.bincount(labels.ravel(), minlength=n).astype(float)
    dark = np.bincount(labels.ravel(), weights=brightness.ravel(), minlength=n) / np.maximum(area, 1) < DARK
    inside = np.bincount(labels.ravel(), weights=lesion.ravel(), minlength=n) / np.maximum(area, 1)
    neighbours = _adjacency(labels, n)
    add = rng.random() < 0.7
    members = (inside < 0.5) & ~dark if add else inside >= 0.5  # no network takes in the scope's black frame
    edge = {int(a) for a in np.unique(labels[find_boundaries(lesion, mode="thick")]) if members[a]}
    if not edge:
        return lesion
    goal = lesion.sum() * (rng.uniform(0.15, 1.0) if add else rng.uniform(0.1, 0.4))
    chosen, frontier, size = set(), [int(rng.choice(sorted(edge)))], 0.0
    while frontier and size < goal:
        region = frontier.pop(int(rng.integers(len(frontier))))
        if region in chosen:
            continue
        chosen.add(region)
        size += area[region] * (1 - inside[region] if add else inside[region])
        frontier += [r for r in neighbours[region] if members[r] and r not in chosen]
    taken = np.isin(labels, sorted(chosen))
    return (lesion | taken) if add else (lesion & ~taken)


def _adjacency(labels: np.ndarray, n: int) -> list:
    """Each superpixel's neighbours (sharing a 4-neighbourhood edge)."""
    pairs = np.concatenate([np.stack([labels[1:].ravel(), labels[:-1].ravel()], 1),
                            np.stack([labels[:, 1:].ravel(), labels[:, :-1].ravel()], 1)])
    pairs = np.unique(pairs[pairs[:, 0] != pairs[:, 1]], axis=0)
    neighbours = [[] for _ in range(n)]
    for a, b in pairs:
        neighbours[a].append(int(b))
        neighbours[b].append(int(a))
    return neighbours


def _elastic(mask: torch.Tensor, strength: float, generator) -> torch.Tensor:
    """Each sample bent by a smooth random displacement (a 4x4 field, bicubic up) of up to
    ``strength`` of the side."""
    b = mask.shape[0]
    amount = _uniform(b, 0.0, 2 * strength, mask.device, generator).view(-1, 1, 1, 1)  # grid units: [-1, 1]
    coarse = (torch.rand(b, 2, 4, 4, device=mask.device, generator=generator) * 2 - 1) * amount
    field = F.interpolate(coarse, size=mask.shape[-2:], mode="bicubic", align_corners=False).permute(0, 2, 3, 1)
    identity = F.affine_grid(torch.eye(2, 3, device=mask.device).expand(b, 2, 3), list(mask.shape),
                             align_corners=False)
    return F.grid_sample(mask, identity + field, mode="nearest", padding_mode="zeros", align_corners=False)


def soften(mask: torch.Tensor, generator=None) -> torch.Tensor:
    """A binary mask -> a probability with a soft edge of a few px (a network's output)."""
    k = 2 * int(torch.randint(0, 4, (1,), generator=generator, device=mask.device).item()) + 1
    soft = F.avg_pool2d(F.pad(mask, (k // 2,) * 4, mode="replicate"), k, 1)
    return soft.clamp(0.02, 0.98) if k > 1 else mask


def degrade_for_teacher(x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Bx3xHxW [0, 1] images made harder for a teacher network (coarser and duller), so that
    its masks on its own training images show the errors it makes on new ones."""
    b, _, h, w = x.shape
    scale = _uniform(b, 0.2, 0.8, x.device, generator)
    out = torch.empty_like(x)
    for i, s in enumerate(scale.tolist()):
        small = F.interpolate(x[i:i + 1], size=(max(8, int(h * s)), max(8, int(w * s))), mode="area")
        out[i:i + 1] = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    contrast = _uniform(b, 0.5, 1.2, x.device, generator).view(-1, 1, 1, 1)
    mean = out.mean((1, 2, 3), keepdim=True)
    return ((out - mean) * contrast + mean).clamp(0, 1)


def object_crops(truth: torch.Tensor, generator: Optional[torch.Generator] = None,
                 expand=(1.3, 2.5)) -> torch.Tensor:
    """Bx2x3 ``affine_grid`` matrices of a square crop around each sample's lesion (its box
    grown by a random factor): the zoom-in view the click session refines at."""
    y0, y1, x0, x1, _ = _lesion_boxes(truth)
    half = torch.maximum(y1 - y0, x1 - x0) / 2 * _uniform(len(truth), *expand, truth.device, generator)
    return _square_crops(half.clamp(0.15, 1.0), (y0 + y1) / 2, (x0 + x1) / 2)


def focus_crops(truth: torch.Tensor, generator: Optional[torch.Generator] = None,
                shrink=(0.3, 0.8)) -> torch.Tensor:
    """Bx2x3 ``affine_grid`` matrices of a square crop smaller than each sample's lesion (its
    larger half-side times a random factor of ``shrink``), centred at a random point of the
    lesion's box and kept inside the image: a view where the lesion runs past the crop's sides,
    as a click's close-up (FocalClick's focus crop) and a first look around a click see it.
    An empty mask: the whole image."""
    y0, y1, x0, x1, empty = _lesion_boxes(truth)
    b = len(truth)
    half = (torch.maximum(y1 - y0, x1 - x0) / 2 * _uniform(b, *shrink, truth.device, generator)).clamp(0.1, 1.0)
    cy = (y0 + (y1 - y0) * torch.rand(b, device=truth.device, generator=generator)).clamp(-1 + half, 1 - half)
    cx = (x0 + (x1 - x0) * torch.rand(b, device=truth.device, generator=generator)).clamp(-1 + half, 1 - half)
    half, cy, cx = torch.where(empty, torch.ones_like(half), half), cy.masked_fill(empty, 0), cx.masked_fill(empty, 0)
    return _square_crops(half, cy, cx)


def _lesion_boxes(truth: torch.Tensor):
    """(top, bottom, left, right, empty) per sample: the lesion's box in ``affine_grid``
    coordinates ([-1, 1]; the whole image where the mask is empty)."""
    _, _, h, w = truth.shape
    rows, cols = truth[:, 0].amax(2) > 0.5, truth[:, 0].amax(1) > 0.5
    y0, y1 = _extent(rows, torch.linspace(-1, 1, h, device=truth.device))
    x0, x1 = _extent(cols, torch.linspace(-1, 1, w, device=truth.device))
    return y0, y1, x0, x1, ~rows.any(1)


def _square_crops(half: torch.Tensor, cy: torch.Tensor, cx: torch.Tensor) -> torch.Tensor:
    """Bx2x3 ``affine_grid`` matrices of squares of half-side ``half`` centred at (cy, cx)."""
    zero = torch.zeros_like(half)
    return torch.stack([torch.stack([half, zero, cx], 1), torch.stack([zero, half, cy], 1)], 1)


def _extent(present: torch.Tensor, axis: torch.Tensor):
    """(lo, hi) per sample of the ``axis`` positions where ``present``; (-1, 1) where none is."""
    big = torch.tensor(2.0, device=present.device)
    lo = torch.where(present, axis.expand_as(present), big).amin(1)
    hi = torch.where(present, axis.expand_as(present), -big).amax(1)
    empty = ~present.any(1)
    return torch.where(empty, -torch.ones_like(lo), lo), torch.where(empty, torch.ones_like(hi), hi)


def crop_batch(x: torch.Tensor, y: torch.Tensor, theta: torch.Tensor):
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    y = F.grid_sample(y, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return x, y


def iou(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Per-sample IoU of {0,1} masks (1 when both are empty)."""
    p, t = pred.flatten(1) > 0.5, truth.flatten(1) > 0.5
    inter, union = (p & t).sum(1).float(), (p | t).sum(1).float()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


def dice(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    p, t = pred.flatten(1) > 0.5, truth.flatten(1) > 0.5
    inter, total = (p & t).sum(1).float(), (p.sum(1) + t.sum(1)).float()
    return torch.where(total > 0, 2 * inter / total.clamp_min(1), torch.ones_like(total))


