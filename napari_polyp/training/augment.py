"""Augmentation presets (albumentations), one per network, applied to uint8 arrays
already at the training size; normalisation happens afterwards exactly as at
inference (``napari_polyp.inference.preprocess``).

Each sample is augmented with its own seed (run seed, epoch, index), so a run is
repeatable and a resumed run draws the same augmentations as an unbroken one.
"""
from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

from napari_polyp.errors import UserError

from .debris import paste_debris

_BORDER = cv2.BORDER_REFLECT_101
# the preset names build() knows; device_augment.DEVICE_PRESETS has the same ones for GPU batches
PRESETS = ("none", "flips", "microaunet", "pefnet", "standard", "strong", "strong-small", "generalise",
           "generalise-nofda", "generalise-small", "generalise-debris", "generalise-hist")
# the presets whose CPU pipeline is the generalise recipe at the shipped zoom (the batch mixings are the device path's)
_GENERALISE_AT_SHIPPED_ZOOM = ("generalise", "generalise-nofda", "generalise-debris", "generalise-hist")
# the presets that paste synthetic debris on the background first (debris.py), with this probability
DEBRIS_PRESETS = {"generalise-debris": 0.5}
# zoomed out further in "strong-small" and "generalise-small": ETIS's polyps cover 0.5-10 % of the frame, Kvasir-SEG's mostly
# 5-40 %; the reflected border fills the frame with mirrored content (and mirrored lesions, their masks with them)
SMALL_LESION_ZOOM = (0.35, 1.5)


def _albumentations():
    """Imported on first use: the trainer imports this module, and a GPU machine that trains
    with ``augment_on_device`` (``device_augment.py``) has no albumentations."""
    import albumentations

    return albumentations


def _flips():
    A = _albumentations()
    return [A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5)]


def _colour(strength: float = 0.2):
    A = _albumentations()
    return A.ColorJitter(brightness=strength, contrast=strength, saturation=strength, hue=0.02, p=0.5)


def _affine(rotate: float, scale=(0.9, 1.1), translate=0.05):
    A = _albumentations()
    return A.Affine(scale=scale, translate_percent=(-translate, translate), rotate=(-rotate, rotate),
                    border_mode=_BORDER, p=0.7)


def _scope_changes():
    """The CPU version of the device preset "generalise" (``device_augment``): colour, gamma,
    a low-resolution scope, defocus, noise, JPEG. Fourier amplitude mixing and histogram
    matching need a second image of the batch, so they are the device path's alone; on the
    CPU "generalise", "generalise-nofda" and "generalise-hist" are this."""
    A = _albumentations()
    return [A.ColorJitter(brightness=0.35, contrast=0.35, saturation=0.35, hue=0.06, p=0.8),
            A.RandomGamma(gamma_limit=(60, 160), p=0.4),
            A.Downscale(scale_range=(0.25, 0.7), p=0.25),
            A.GaussianBlur(sigma_limit=(0.5, 2.5), p=0.3),
            A.GaussNoise(std_range=(0.005, 0.04), p=0.25),
            A.ImageCompression(quality_range=(30, 90), p=0.25)]


def cpu_path_note(preset: str) -> str:
    """What a run's header and log add to a preset's name on the CPU path where the device path does
    more: the generalise presets' batch mixings (Fourier amplitude, histogram matching, highlights)."""
    if preset in _GENERALISE_AT_SHIPPED_ZOOM or preset == "generalise-small":
        return " (CPU path: without the batch mixings; --augment-on-device has them)"
    return ""


def check_preset(preset: str) -> None:
    """An unknown preset name is the user's typo: one line naming the choices."""
    if preset not in PRESETS:
        raise UserError(f"unknown augmentation preset {preset!r}; choose one of {', '.join(PRESETS)}")


def build(preset: str, size: int) -> "albumentations.Compose":
    """The named preset. "none" returns an identity pipeline."""
    check_preset(preset)
    A = _albumentations()
    if preset == "none":
        transforms = []
    elif preset == "flips":  # [B] horizontal flips only: what a cache of identity + hflip views holds
        transforms = [A.HorizontalFlip(p=0.5)]
    elif preset == "microaunet":  # [C] flips and 0-360 degree rotation
        transforms = _flips() + [A.Rotate(limit=(-180, 180), border_mode=_BORDER, p=0.7)]
    elif preset == "pefnet":  # [P] crop, rotation, grid distortion, CutOut, flips
        transforms = _flips() + [
            A.RandomResizedCrop(size=(size, size), scale=(0.6, 1.0), p=0.5),
            A.Rotate(limit=(-45, 45), border_mode=_BORDER, p=0.5),
            A.GridDistortion(p=0.25, border_mode=_BORDER),
            A.CoarseDropout(num_holes_range=(1, 4), hole_height_range=(0.05, 0.15),
                            hole_width_range=(0.05, 0.15), fill=0, fill_mask=None, p=0.3),
        ]
    elif preset == "standard":  # [B] flips, rotation/scale/shift, light colour jitter
        transforms = _flips() + [_affine(rotate=90), _colour()]
    elif preset == "strong":  # [B] the same, wider zoom and shift, stronger colour: for long fine-tuning
        transforms = _flips() + [_affine(rotate=90, scale=(0.7, 1.4), translate=0.1), _colour(0.3)]
    elif preset == "strong-small":  # [B] the same, zoomed out to small lesions
        transforms = _flips() + [_affine(rotate=90, scale=SMALL_LESION_ZOOM, translate=0.1), _colour(0.3)]
    elif preset in _GENERALISE_AT_SHIPPED_ZOOM:  # [B] issue 27: what differs between scopes
        transforms = _flips() + [_affine(rotate=180, scale=(0.6, 1.5), translate=0.1)] + _scope_changes()
    elif preset == "generalise-small":  # [B] the same, zoomed out to small lesions
        transforms = _flips() + [_affine(rotate=180, scale=SMALL_LESION_ZOOM, translate=0.1)] + _scope_changes()
    else:  # a name in PRESETS without a pipeline: the project's bug, not the user's
        raise AssertionError(f"augmentation preset {preset!r} is listed but has no pipeline")
    # a teacher's probability map (uint8) moves with the image exactly as the mask does
    return A.Compose(transforms, additional_targets={"teacher": "mask"})


def maybe_paste_debris(image: np.ndarray, mask: np.ndarray, seed: int, probability: float) -> np.ndarray:
    """With ``probability`` (a coin of the sample's own seed), debris on the image's background."""
    rng = np.random.default_rng((int(seed) % (2 ** 32), 0xDEB))  # a stream of its own beside the pipeline's
    return paste_debris(image, mask, rng) if rng.random() < probability else image


class Augmenter:
    """Callable (image, mask, seed[, teacher]) -> (image, mask[, teacher]), deterministic per seed.

    ``teacher``: a precomputed teacher probability map (HxW uint8), warped with the very
    geometric transform of the image and mask (as a mask: no colour changes)."""

    def __init__(self, preset: str, size: int):
        self.preset = preset
        self.pipeline = build(preset, size)
        self.debris = DEBRIS_PRESETS.get(preset, 0.0)

    def __call__(self, image: np.ndarray, mask: np.ndarray, seed: int, teacher: Optional[np.ndarray] = None):
        if self.debris:  # before the warp and the colour changes, which then apply to the debris too
            image = maybe_paste_debris(image, mask, seed, self.debris)
        if not self.pipeline.transforms:
            return (image, mask) if teacher is None else (image, mask, teacher)
        self.pipeline.set_random_seed(int(seed) % (2 ** 32))
        if teacher is None:
            out = self.pipeline(image=image, mask=mask)
            return out["image"], out["mask"]
        out = self.pipeline(image=image, mask=mask, teacher=teacher)
        return out["image"], out["mask"], out["teacher"]
