"""Synthetic faecal debris on the background of training images (issue 27, hard negatives).

At etis20 the default network takes a lump of pale yellow debris for the polyp on 6 of 20 frames
(docs/generalisation.md, "Where the default fails at etis20"); Kvasir-SEG shows little, and no
labelled images of debris are to be had. So lumps are drawn: a rounded blob of 0.5-3 % of the frame
(etis20's lumps: 0.6-1.0 %), cream to yellow, crumbly, lit as a raised dome with its highlights,
a shadow where it meets the wall, pasted on the background, never on the lesion. The mask does not
change: debris is background.

A lump only teaches where the network would take it for a lesion: flat, dull lumps (the first
drawing) were called lesion on 0 % of their pixels by the shipped EA-DK; these crumbly, lit ones on
21 % (24 Kvasir-SEG validation images, ``benchmarks/debris.py``). Trained on, they are unlearned, but
etis20's real lumps keep their probability (docs/generalisation.md): not shipped in a checkpoint.

Everything is drawn from the caller's generator, so a sample's debris repeats with its seed.
"""
from __future__ import annotations

import cv2
import numpy as np

DEBRIS_AREA = (0.005, 0.03)  # share of the frame one lump covers
DEBRIS_COUNT = (1, 3)  # lumps per image, inclusive
# cream to ochre in HSV: hue in degrees, saturation and value in [0, 1]
DEBRIS_HUE = (38.0, 52.0)
DEBRIS_SATURATION = (0.25, 0.55)
DEBRIS_VALUE = (0.85, 1.0)
_LESION_MARGIN = 0.03  # share of the side kept clear around the lesion


def _smooth_noise(rng: np.random.Generator, shape, cells: int) -> np.ndarray:
    """Noise in [-1, 1] with about ``cells`` features a side (a coarse grid, cubic upsampling)."""
    coarse = rng.uniform(-1.0, 1.0, (cells + 3, cells + 3)).astype(np.float32)
    return np.clip(cv2.resize(coarse, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC), -1.0, 1.0)


def lump_shape(rng: np.random.Generator, side: int) -> np.ndarray:
    """A side x side float alpha in [0, 1]: a rounded, irregular blob with a crisp edge."""
    yy, xx = (np.mgrid[0:side, 0:side].astype(np.float32) - (side - 1) / 2) / (side / 2)
    angle = rng.uniform(0, np.pi)
    aspect = rng.uniform(0.6, 1.0)
    u = xx * np.cos(angle) + yy * np.sin(angle)
    v = (-xx * np.sin(angle) + yy * np.cos(angle)) / aspect
    radius = np.sqrt(u * u + v * v)  # 1 at the ellipse's edge, which fills ~0.6 of the box
    field = 1.0 - radius / 0.62 + 0.3 * _smooth_noise(rng, (side, side), int(rng.integers(3, 6)))
    blob = (field > 0).astype(np.float32)
    return cv2.GaussianBlur(blob, (0, 0), max(0.5, side / 80))


def lump_colour(rng: np.random.Generator, alpha: np.ndarray) -> np.ndarray:
    """The lump's RGB in [0, 1], lit as a raised lump under the scope's light: one base colour,
    granular texture, a dome's shading and its highlights (what makes a real lump look like a polyp)."""
    side = alpha.shape[0]
    hsv = np.array([[[rng.uniform(*DEBRIS_HUE) / 2, rng.uniform(*DEBRIS_SATURATION) * 255,
                      rng.uniform(*DEBRIS_VALUE) * 255]]], np.float32)
    base = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32) / 255
    grain = cv2.GaussianBlur(rng.normal(0, 1, (side, side)).astype(np.float32), (0, 0), 0.8)
    grain /= grain.std() + 1e-6
    inside = cv2.distanceTransform((alpha > 0.5).astype(np.uint8), cv2.DIST_L2, 3)
    height = cv2.GaussianBlur(np.sqrt(inside / (inside.max() + 1e-6)), (0, 0), max(0.8, side / 30))
    height = height * side * rng.uniform(0.15, 0.35) + 0.6 * grain  # a dome, rough
    gy, gx = np.gradient(height)
    normal_z = 1.0 / np.sqrt(gx * gx + gy * gy + 1.0)
    light = np.array([rng.uniform(-0.4, 0.4), rng.uniform(-0.4, 0.4), 1.0], np.float32)
    light /= np.linalg.norm(light)
    lambert = np.clip((-gx * light[0] - gy * light[1] + light[2]) * normal_z, 0, 1)
    shade = 0.8 + 0.3 * lambert  # brighter than the mucosa, as real lumps are
    crumbs = 1 + rng.uniform(0.08, 0.15) * np.clip(grain, -0.8, 2.0)  # crumbly, cottage-cheese texture
    colour = base[None, None, :] * (shade * crumbs)[..., None]
    speckle = np.clip(grain - 1.6, 0, 1)[..., None] * 0.6  # bright crumbs
    highlight = (np.clip(lambert, 0, 1) ** rng.uniform(30, 80) * rng.uniform(0.4, 0.9))[..., None]
    colour = colour + (1 - colour) * np.clip(speckle + highlight, 0, 1)
    return np.clip(colour, 0.0, 1.0)


def _scene_light(grey: np.ndarray) -> np.ndarray:
    """How lit each pixel's neighbourhood is, relative to the frame (so lumps in shadow are dark)."""
    local = cv2.GaussianBlur(grey.astype(np.float32), (0, 0), max(2.0, grey.shape[0] / 30))
    lit = grey > 20
    reference = np.percentile(local[lit], 75) if lit.any() else 255.0
    return np.clip(np.sqrt(local / max(reference, 1.0)), 0.75, 1.1)


def paste_debris(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``image`` (HxWx3 uint8) with 1-3 lumps of debris on its background; ``mask`` (HxW, lesion > 0)
    is kept clear and is not changed. Returns a new array; the image is left as it was."""
    h, w = mask.shape
    keep_clear = cv2.dilate((mask > 0).astype(np.uint8),
                            cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (1 + 2 * int(_LESION_MARGIN * max(h, w)),) * 2))
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    free = (keep_clear == 0) & (grey > 20)  # the background inside the scope's field
    rows, cols = np.nonzero(free)
    if rows.size == 0:
        return image
    light = _scene_light(grey)
    out = image.astype(np.float32) / 255
    for _ in range(int(rng.integers(DEBRIS_COUNT[0], DEBRIS_COUNT[1] + 1))):
        side = max(5, int(round(np.sqrt(rng.uniform(*DEBRIS_AREA) * h * w) / 0.85)))
        alpha = lump_shape(rng, side)
        colour = lump_colour(rng, alpha)
        k = int(rng.integers(rows.size))
        top, left = rows[k] - side // 2, cols[k] - side // 2
        y0, x0, y1, x1 = max(top, 0), max(left, 0), min(top + side, h), min(left + side, w)
        a = alpha[y0 - top:y1 - top, x0 - left:x1 - left] * free[y0:y1, x0:x1]
        c = colour[y0 - top:y1 - top, x0 - left:x1 - left] * light[y0:y1, x0:x1, None]
        crevice = np.clip(cv2.GaussianBlur(a, (0, 0), max(1.0, side / 40)) - a, 0, 1) * free[y0:y1, x0:x1]
        crevice *= rng.uniform(0.3, 0.7)
        out[y0:y1, x0:x1] *= (1 - crevice)[..., None]  # the shadow where the lump meets the wall
        out[y0:y1, x0:x1] = a[..., None] * c + (1 - a[..., None]) * out[y0:y1, x0:x1]
    return (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)
