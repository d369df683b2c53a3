"""Whole-batch augmentation on the training device (``TrainConfig.augment_on_device``,
``napari-polyp train --augment-on-device``).

On a GPU the per-sample albumentations path (``augment.py``) on a few CPU cores cannot feed
the network; here the training arrays live on the device as uint8 tensors and every batch
is augmented there in one pass:

- flips, 90° turns, rotation, zoom and shift folded into one affine matrix per sample,
  applied with ``F.affine_grid`` + ``grid_sample`` (image bilinear, mask nearest,
  reflected borders like the CPU presets' ``BORDER_REFLECT_101``);
- light colour jitter (brightness, contrast, saturation, hue) and, for PEFNet, cut-out holes;
- the "generalise" preset's scope-to-scope changes (issue 27's recipe), each its own coin:
  gamma, Fourier amplitude mixing with another image of the batch (FDA, Yang & Soatto 2020:
  another centre's colour and illumination, this image's content), in "generalise-hist" also
  histogram matching to another image of the batch (its colours, rank for rank), a low-resolution scope
  (down, then up), defocus blur, specular highlights and sensor noise;
- "generalise-debris": synthetic debris lumps pasted on the background first (``debris.py``, on
  the CPU, per sample, as the CPU path does: a few milliseconds a sample).

Each sample's parameters are drawn from its own seed (``Batches.sample_seed``: run seed,
epoch, index), as on the CPU path, so a run is repeatable and a resumed run draws what an
unbroken one would. The presets follow the CPU presets of the same name [B]; PEFNet's grid
distortion is left out, and its random resized crop is a zoom of up to 1/sqrt(0.6).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Dict, List, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from napari_polyp.errors import UserError
from napari_polyp.inference import normalise

from .augment import DEBRIS_PRESETS, SMALL_LESION_ZOOM, maybe_paste_debris
from .batches import Batches


@dataclass(frozen=True)
class DeviceAugment:
    """Probabilities and ranges of one device preset (each drawn per sample)."""

    hflip: float = 0.5
    vflip: float = 0.5
    turn90: float = 0.0  # a random multiple of 90° (lossless on a square)
    affine: float = 0.7  # rotation + zoom + shift
    rotate: float = 90.0  # degrees, uniform in ±rotate
    zoom: Tuple[float, float] = (0.9, 1.1)  # > 1 magnifies
    shift: float = 0.05  # fraction of the side, uniform in ±shift
    colour: float = 0.5
    colour_strength: float = 0.2  # brightness, contrast, saturation factors in 1 ± strength
    hue: float = 0.02  # fraction of a full turn of the hue circle
    cutout: float = 0.0  # probability of 1-4 black holes of 5-15 % of the side
    # the generalisation recipe [B]; each a probability, then its range
    gamma: float = 0.0
    gamma_range: Tuple[float, float] = (0.6, 1.6)
    fda: float = 0.0  # amplitude mixing with the next image of the batch
    fda_beta: Tuple[float, float] = (0.005, 0.05)  # half-width of the low-frequency window, fraction of the side
    hist: float = 0.0  # histogram matching to the next image of the batch, part of the way (0.3-1.0)
    lowres: float = 0.0
    lowres_scale: Tuple[float, float] = (0.25, 0.7)
    blur: float = 0.0
    blur_sigma: Tuple[float, float] = (0.5, 2.5)  # px at the training size
    specular: float = 0.0  # 1-4 small saturated white spots
    noise: float = 0.0
    noise_sigma: Tuple[float, float] = (0.005, 0.04)
    debris: float = 0.0  # synthetic debris on the background, pasted on the CPU before the rest (debris.py)


_OFF = DeviceAugment(hflip=0, vflip=0, affine=0, colour=0)
DEVICE_PRESETS: Dict[str, DeviceAugment] = {
    "none": _OFF,
    "flips": replace(_OFF, hflip=0.5),
    "standard": DeviceAugment(),
    "strong": DeviceAugment(zoom=(0.7, 1.4), shift=0.1, colour_strength=0.3),
    "microaunet": replace(_OFF, hflip=0.5, vflip=0.5, affine=0.7, rotate=180.0, zoom=(1.0, 1.0), shift=0.0),
    "pefnet": DeviceAugment(turn90=0.0, affine=0.7, rotate=45.0, zoom=(1.0, 1 / math.sqrt(0.6)), shift=0.1,
                            colour=0.0, cutout=0.3),
    # issue 27: what differs from scope to scope (colour, light, optics, resolution, noise) [B]
    "generalise": DeviceAugment(affine=0.8, rotate=180.0, zoom=(0.6, 1.5), shift=0.1, colour=0.8,
                                colour_strength=0.35, hue=0.06, gamma=0.4, fda=0.4, lowres=0.25, blur=0.3,
                                specular=0.25, noise=0.25),
}
# the generalise preset without style mixing (FDA): what the mixing adds is measured against it
DEVICE_PRESETS["generalise-nofda"] = replace(DEVICE_PRESETS["generalise"], fda=0.0)
DEVICE_PRESETS["generalise-small"] = replace(DEVICE_PRESETS["generalise"], zoom=SMALL_LESION_ZOOM)
DEVICE_PRESETS["strong-small"] = replace(DEVICE_PRESETS["strong"], zoom=SMALL_LESION_ZOOM)
DEVICE_PRESETS["generalise-debris"] = replace(DEVICE_PRESETS["generalise"], debris=DEBRIS_PRESETS["generalise-debris"])
# the second style mixing beside FDA: whole colour distributions, not low frequencies
DEVICE_PRESETS["generalise-hist"] = replace(DEVICE_PRESETS["generalise"], hist=0.4)


def device_preset(name: str) -> DeviceAugment:
    try:
        return DEVICE_PRESETS[name]
    except KeyError:
        raise UserError(f"augmentation preset {name!r} has no on-device version; "
                        f"choose one of {', '.join(sorted(DEVICE_PRESETS))}") from None


N_PARAMS = 28 + 8 + 12  # draw()'s row: geometry and colour, the recipe's scalars, 4 highlights


def draw(aug: DeviceAugment, seed: int) -> np.ndarray:
    """One sample's parameters: [sx, sy, turns, angle, zoom, tx, ty, bright, contrast, sat, hue,
    holes, (y0, x0, h, w) x 4, gamma, fda beta, fda mix, lowres scale, blur sigma, noise sigma,
    highlights, histogram matching strength, (y, x, r) x 4], all from ``seed`` alone. The
    recipe's values are drawn after the others, so the earlier presets draw what they always drew."""
    rng = np.random.default_rng(seed)
    u = rng.random(16)  # the coin of each decision, drawn first so ranges never shift them
    sx = -1.0 if u[0] < aug.hflip else 1.0
    sy = -1.0 if u[1] < aug.vflip else 1.0
    turns = float(rng.integers(1, 4)) if u[2] < aug.turn90 else 0.0
    angle, zoom, tx, ty = 0.0, 1.0, 0.0, 0.0
    if u[3] < aug.affine:
        angle = rng.uniform(-aug.rotate, aug.rotate)
        zoom = rng.uniform(*aug.zoom)
        tx, ty = rng.uniform(-aug.shift, aug.shift, 2) * 2  # affine_grid's frame spans [-1, 1]
    bright = contrast = sat = 1.0
    hue = 0.0
    if u[4] < aug.colour:
        bright, contrast, sat = rng.uniform(1 - aug.colour_strength, 1 + aug.colour_strength, 3)
        hue = rng.uniform(-aug.hue, aug.hue)
    holes = np.zeros(16)
    n_holes = int(rng.integers(1, 5)) if u[5] < aug.cutout else 0
    for k in range(n_holes):
        h, w = rng.uniform(0.05, 0.15, 2)
        holes[4 * k:4 * k + 4] = (rng.uniform(0, 1 - h), rng.uniform(0, 1 - w), h, w)
    base = np.concatenate([[sx, sy, turns, angle, zoom, tx, ty, bright, contrast, sat, hue, n_holes], holes])
    return np.concatenate([base, _draw_recipe(aug, rng, u)])


def _draw_recipe(aug: DeviceAugment, rng, u) -> np.ndarray:
    """The generalise preset's values (identity values when a coin says no)."""
    gamma = rng.uniform(*aug.gamma_range) if u[6] < aug.gamma else 1.0
    beta, mix = (rng.uniform(*aug.fda_beta), rng.uniform(0.3, 1.0)) if u[7] < aug.fda else (0.0, 0.0)
    scale = rng.uniform(*aug.lowres_scale) if u[8] < aug.lowres else 1.0
    sigma = rng.uniform(*aug.blur_sigma) if u[9] < aug.blur else 0.0
    noise = rng.uniform(*aug.noise_sigma) if u[10] < aug.noise else 0.0
    spots = np.zeros(12)
    n_spots = int(rng.integers(1, 5)) if u[11] < aug.specular else 0
    for k in range(n_spots):
        spots[3 * k:3 * k + 3] = (rng.uniform(0.05, 0.95), rng.uniform(0.05, 0.95), rng.uniform(0.005, 0.03))
    hist = rng.uniform(0.3, 1.0) if u[12] < aug.hist else 0.0  # drawn last: the other presets draw as before
    return np.concatenate([[gamma, beta, mix, scale, sigma, noise, n_spots, hist], spots])


def affine_matrices(params: torch.Tensor) -> torch.Tensor:
    """Bx2x3 ``affine_grid`` matrices (output -> input coordinates) from ``draw``'s rows."""
    sx, sy, turns, angle, zoom, tx, ty = params[:, :7].unbind(1)
    theta = torch.deg2rad(angle) + turns * (math.pi / 2)
    cos, sin = torch.cos(theta) / zoom, torch.sin(theta) / zoom
    rows = torch.stack([torch.stack([cos * sx, -sin * sy, tx], 1),
                        torch.stack([sin * sx, cos * sy, ty], 1)], 1)
    # exact zeros and ones keep flips and quarter turns on the pixel grid (no resampling blur)
    return torch.where(rows.abs() < 1e-6, torch.zeros_like(rows), rows)


def warp(images: torch.Tensor, masks: torch.Tensor, params: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Bx3xHxW float images in [0, 1] (bilinear) and Bx1xHxW float masks (nearest), warped alike."""
    grid = F.affine_grid(affine_matrices(params), list(images.shape), align_corners=False)
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    masks = F.grid_sample(masks, grid, mode="nearest", padding_mode="reflection", align_corners=False)
    return images, masks


_GREY = (0.299, 0.587, 0.114)


def jitter_colour(images: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Brightness, contrast (around each image's mean grey), saturation and a hue turn
    (a rotation about the grey axis in YIQ space); factors of 1 and hue 0 leave a sample as is."""
    bright, contrast, sat, hue = (params[:, k].view(-1, 1, 1, 1) for k in range(7, 11))
    grey_w = images.new_tensor(_GREY).view(1, 3, 1, 1)
    x = images * bright
    mean = (x * grey_w).sum(1, keepdim=True).mean((2, 3), keepdim=True)
    x = (x - mean) * contrast + mean
    grey = (x * grey_w).sum(1, keepdim=True)
    x = (x - grey) * sat + grey
    return _turn_hue(x, hue.view(-1)).clamp_(0.0, 1.0)


def _turn_hue(x: torch.Tensor, hue: torch.Tensor) -> torch.Tensor:
    to_yiq = x.new_tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    angle = hue * 2 * math.pi
    cos, sin = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(cos), torch.zeros_like(cos)
    turn = torch.stack([torch.stack([one, zero, zero], 1), torch.stack([zero, cos, -sin], 1),
                        torch.stack([zero, sin, cos], 1)], 1)  # Bx3x3
    matrix = torch.linalg.inv(to_yiq) @ turn @ to_yiq
    return torch.einsum("bij,bjhw->bihw", matrix, x)


def cut_holes(images: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Black rectangles (PEFNet's CoarseDropout); the mask keeps the lesion under them."""
    size_h, size_w = images.shape[-2:]
    ys = (torch.arange(size_h, device=images.device) + 0.5) / size_h
    xs = (torch.arange(size_w, device=images.device) + 0.5) / size_w
    holes = params[:, 12:28].view(-1, 4, 4)  # y0, x0, h, w (zeros: no hole)
    y0, x0, h, w = (holes[..., k, None, None] for k in range(4))
    inside = ((ys.view(1, 1, -1, 1) >= y0) & (ys.view(1, 1, -1, 1) < y0 + h)
              & (xs.view(1, 1, 1, -1) >= x0) & (xs.view(1, 1, 1, -1) < x0 + w)).any(1, keepdim=True)
    return images.masked_fill(inside, 0.0)


def apply_gamma(x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    return x.clamp_min(1e-6).pow(params[:, 28].view(-1, 1, 1, 1))


def mix_amplitude(x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """FDA: the low-frequency amplitude of each chosen image moves towards the next image's
    (its colour and illumination), the phase (its content, so the mask) stays."""
    beta, mix = params[:, 29], params[:, 30]
    if not bool((mix > 0).any()):
        return x
    spectrum = torch.fft.fft2(x.float())
    amplitude, phase = spectrum.abs(), spectrum.angle()
    partner = amplitude.roll(1, dims=0)
    h, w = x.shape[-2:]
    fy = torch.fft.fftfreq(h, device=x.device).abs().view(1, 1, -1, 1)
    fx = torch.fft.fftfreq(w, device=x.device).abs().view(1, 1, 1, -1)
    low = ((fy <= beta.view(-1, 1, 1, 1)) & (fx <= beta.view(-1, 1, 1, 1))).float() * mix.view(-1, 1, 1, 1)
    amplitude = amplitude * (1 - low) + partner * low
    return torch.fft.ifft2(torch.polar(amplitude, phase)).real.clamp(0.0, 1.0).to(x.dtype)


def match_histograms(x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Each chosen image's channels take the next image's values rank for rank (its colour
    distribution, this image's content), part of the way (the strength); the mask stays."""
    strength = params[:, 35]
    chosen = torch.nonzero(strength > 0).flatten().tolist()
    if not chosen:
        return x
    flat, partner = x.flatten(2), x.roll(1, dims=0).flatten(2)
    out = x.clone()
    for i in chosen:
        matched = torch.empty_like(flat[i]).scatter_(-1, flat[i].argsort(-1), partner[i].sort(-1).values)
        share = float(strength[i])
        out[i] = (1 - share) * x[i] + share * matched.view_as(x[i])
    return out


def lower_resolution(x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """A coarser sensor: each chosen image down to its scale (area), then back up (bilinear)."""
    out = x.clone()
    for i in torch.nonzero(params[:, 31] < 1.0).flatten().tolist():
        side = [max(8, int(round(s * float(params[i, 31])))) for s in x.shape[-2:]]
        small = F.interpolate(x[i:i + 1], size=side, mode="area")
        out[i:i + 1] = F.interpolate(small, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return out


def gaussian_blur(x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Defocus: a separable Gaussian of each sample's sigma (0: unchanged)."""
    sigma = params[:, 32]
    if not bool((sigma > 0).any()):
        return x
    radius = int(math.ceil(3 * float(sigma.max())))
    taps = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (taps.view(1, -1) / sigma.clamp_min(1e-3).view(-1, 1)) ** 2)
    kernel = torch.where(sigma.view(-1, 1) > 0, kernel, (taps == 0).to(x.dtype).expand_as(kernel))
    kernel = kernel / kernel.sum(1, keepdim=True)  # B x taps
    b, c, h, w = x.shape
    rows = kernel.repeat_interleave(c, 0)  # one kernel per (sample, channel) group
    y = F.conv2d(F.pad(x.reshape(1, b * c, h, w), (radius, radius, 0, 0), mode="reflect"),
                 rows.view(b * c, 1, 1, -1), groups=b * c)
    y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode="reflect"), rows.view(b * c, 1, -1, 1), groups=b * c)
    return y.view(b, c, h, w)


def add_highlights(x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Specular reflections: soft saturated white discs (the mask does not change)."""
    if not bool((params[:, 34] > 0).any()):
        return x
    h, w = x.shape[-2:]
    ys = ((torch.arange(h, device=x.device) + 0.5) / h).view(1, 1, -1, 1)
    xs = ((torch.arange(w, device=x.device) + 0.5) / w).view(1, 1, 1, -1)
    spots = params[:, 36:48].view(-1, 4, 3)
    y0, x0, r = (spots[..., k, None, None] for k in range(3))
    distance = ((ys - y0) ** 2 + (xs - x0) ** 2).sqrt()
    light = ((1.0 - distance / r.clamp_min(1e-6)).clamp(0, 1) * 2).clamp(0, 1) * (r > 0)
    return torch.maximum(x, light.amax(1, keepdim=True))


def add_noise(x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Sensor noise of each sample's sigma, from a generator seeded by the sample's parameters."""
    sigma = params[:, 33]
    if not bool((sigma > 0).any()):
        return x
    generator = torch.Generator(device=x.device).manual_seed(int(params[:, :12].abs().sum().item() * 1e4) % 2 ** 31)
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return (x + noise * sigma.view(-1, 1, 1, 1)).clamp(0.0, 1.0)


def augment_batch(images: torch.Tensor, masks: torch.Tensor, params: torch.Tensor, aug: DeviceAugment):
    """uint8 Bx3xHxW images and Bx1xHxW {0,1} masks -> float images in [0, 1] and float masks."""
    x, y = warp(images.float().div_(255.0), masks.float(), params)
    if aug.colour > 0:
        x = jitter_colour(x, params)
    if params.shape[1] >= N_PARAMS:  # the recipe's steps, in the order a scope would cause them
        steps = ((aug.gamma, apply_gamma), (aug.fda, mix_amplitude), (aug.hist, match_histograms),
                 (aug.lowres, lower_resolution),
                 (aug.blur, gaussian_blur), (aug.specular, add_highlights), (aug.noise, add_noise))
        for probability, step in steps:
            if probability > 0:
                x = step(x, params)
    if aug.cutout > 0:
        x = cut_holes(x, params)
    return x, y


class DeviceBatches(Batches):
    """Training batches augmented on the device; validation batches as in :class:`Batches`."""

    def __init__(self, arrays, card, preset: str, seed: int, device):
        super().__init__(arrays, card, None, seed, device)
        if arrays.images.shape[1] != card.input_size:
            raise ValueError(f"arrays at {arrays.images.shape[1]} px, card at {card.input_size} px")
        self.preset_name, self.aug = preset, device_preset(preset)
        # uint8 on the device: 810 Kvasir images at 352 px are 0.3 GB
        self.images = torch.from_numpy(arrays.images).to(device).permute(0, 3, 1, 2)
        self.masks = torch.from_numpy(arrays.masks).to(device)[:, None]

    def _with_debris(self, images: torch.Tensor, indices: List[int], epoch: int) -> torch.Tensor:
        """Debris pasted on the CPU (numpy) where each sample's coin says so, as the CPU path does."""
        images = images.clone()
        for k, i in enumerate(indices):
            before = self.arrays.images[i]
            after = maybe_paste_debris(before, self.arrays.masks[i], self.sample_seed(epoch, i), self.aug.debris)
            if after is not before:
                images[k] = torch.from_numpy(after).to(self.device).permute(2, 0, 1)
        return images

    def params(self, indices: List[int], epoch: int) -> torch.Tensor:
        rows = [draw(self.aug, self.sample_seed(epoch, i)) for i in indices]
        return torch.from_numpy(np.stack(rows).astype(np.float32)).to(self.device)

    def train_batch(self, indices, epoch: int):
        if self.teacher_maps is not None:
            raise UserError("teacher maps are not warped on the device: train with teacher maps "
                            "without --augment-on-device")
        rows = torch.as_tensor(list(indices), device=self.device)
        images = self.images[rows]
        if self.aug.debris:
            images = self._with_debris(images, list(indices), epoch)
        x, y = augment_batch(images, self.masks[rows], self.params(list(indices), epoch), self.aug)
        return normalise(x, self.card), y, None
