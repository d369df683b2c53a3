"""How masks, reference comparisons and attention maps look: colours, names, contrast.

No Qt and no napari import at module level: the facts live here once, the layer code
and the widgets apply them.

- The mask is cyan (#00e5ff): it stands out on red-pink mucosa and on brown skin
  lesions, where napari's default first label colour (red-orange) disappears.
- A reference mask is shown as the comparison with the mask being edited:
  true positive green, false positive magenta, false negative yellow.
- Attention layers carry plain-language names with the paper's term in brackets
  ("where MicroAUNet looked (LSCAB spatial)").
"""
from __future__ import annotations

from typing import Dict, Tuple

import numpy as np

from .conventions import MASK_COLOR, MASK_COLOR_DICT

MASK_RGB = tuple(int(MASK_COLOR[i:i + 2], 16) for i in (1, 3, 5))  # (0, 229, 255), for drawing into images
AGREEMENT_COLORS = {1: "#00e676", 2: "#ff00ff", 3: "#ffd600"}  # TP, FP, FN
AGREEMENT_NAMES = {1: "true positive (both)", 2: "false positive (mask only)", 3: "false negative (reference only)"}
TP, FP, FN = 1, 2, 3
KEPT_ATTENTION = "attention_kept"  # layer role of maps kept to compare with another network's

# map name -> (plain words, with {net} for the network; the paper's term)
ATTENTION_TERMS: Dict[str, Tuple[str, str]] = {
    "lscab_spatial": ("where {net} looked", "LSCAB spatial attention"),
    "cls_attention": ("where {net} looked", "DINOv2 CLS self-attention"),
    "cmam_spatial": ("where {net} looked", "CMAM spatial attention"),
    "eab_max": ("edges {net} weighed", "EAB edge attention, max"),
    "kernel_init": ("{net}'s first guess of the lesion", "EA kernel initialisation"),
    "stage1": ("{net} focus, finest scale", "stage-1 attention"),
    "stage2": ("{net} focus, scale 2", "stage-2 attention"),
    "stage3": ("{net} focus, scale 3", "stage-3 attention"),
    "stage4": ("{net} focus, coarsest scale", "stage-4 attention"),
    "mpe_energy": ("where {net} found structure", "MPE positional energy"),
}


def network_name(model: str) -> str:
    """How the app names a network: its card's display name (an unknown name as it is)."""
    from models.cards import CARDS  # plain data: no torch

    card = CARDS.get(model)
    return (card.display_name or card.name) if card is not None else (model or "network")


def attention_title(model: str, map_name: str) -> Tuple[str, str]:
    """(plain-language layer title, the paper's term) of one attention map."""
    plain, term = ATTENTION_TERMS.get(map_name, ("{net}: " + map_name.replace("_", " "), map_name))
    return plain.format(net=network_name(model)), term


def attention_layer_name(image_name: str, model: str, map_name: str) -> str:
    plain, term = attention_title(model, map_name)
    return f"{image_name}: {plain} ({term})"


def auto_contrast(values: np.ndarray) -> Tuple[float, float]:
    """Contrast limits of one map: its 1st-99th percentile, so one hot pixel does not grey the rest."""
    finite = np.asarray(values, dtype=np.float32)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return 0.0, 1.0
    low, high = (float(v) for v in np.percentile(finite, (1, 99)))
    if high - low < 1e-6:
        high = low + 1e-3
    return low, high


def agreement(mask: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """HxW uint8: 1 where mask and reference agree on foreground, 2 mask only, 3 reference only, 0 else."""
    mask, reference = np.asarray(mask) > 0, np.asarray(reference) > 0
    if mask.shape != reference.shape:
        raise ValueError(f"mask {mask.shape} and reference {reference.shape} differ in size")
    out = np.zeros(mask.shape, np.uint8)
    out[mask & reference] = TP
    out[mask & ~reference] = FP
    out[~mask & reference] = FN
    return out


def mask_colormap():
    """napari's colormap for a 0/1 mask: transparent background, label 1 in MASK_COLOR."""
    from napari.utils.colormaps import DirectLabelColormap

    return DirectLabelColormap(color_dict=MASK_COLOR_DICT)


def agreement_colormap():
    from napari.utils.colormaps import DirectLabelColormap

    return DirectLabelColormap(color_dict={None: "transparent", 0: "transparent", **AGREEMENT_COLORS})


def style_mask(labels, contour: bool = False) -> None:
    """Give a mask layer the contrasting colour, filled (50 %) or as a 2-px outline."""
    labels.colormap = mask_colormap()
    labels.contour = 2 if contour else 0
    labels.opacity = 0.9 if contour else 0.5


def colorize(values: np.ndarray, colormap: str = "inferno", limits: Tuple[float, float] = None) -> np.ndarray:
    """HxW values -> HxWx3 uint8 through a napari colormap, scaled to ``limits`` (default: auto)."""
    from napari.utils.colormaps import ensure_colormap

    low, high = limits or auto_contrast(values)
    scaled = np.clip((np.asarray(values, np.float32) - low) / max(high - low, 1e-6), 0, 1)
    rgba = ensure_colormap(colormap).map(scaled.ravel())
    return (np.asarray(rgba)[:, :3].reshape(scaled.shape + (3,)) * 255).astype(np.uint8)


def outline(mask: np.ndarray, width: int = 2) -> np.ndarray:
    """The boundary pixels of a 0/1 mask, ``width`` pixels thick (inside the mask): object
    pixels within ``width`` 4-neighbour steps of the background (the image border counts as
    background). Plain array shifts: 3x faster than scipy's binary_erosion, which matters
    once a frame in Live video."""
    inside = np.asarray(mask) > 0
    core = inside
    for _ in range(width):
        shrunk = np.zeros_like(core)
        shrunk[1:-1, 1:-1] = core[1:-1, 1:-1] & core[:-2, 1:-1] & core[2:, 1:-1] & core[1:-1, :-2] & core[1:-1, 2:]
        core = shrunk
    return inside & ~core


def outlined(image: np.ndarray, mask: np.ndarray, width: int = 2) -> np.ndarray:
    """A copy of an HxWx3 uint8 image with the mask's outline drawn in MASK_COLOR."""
    picture = np.array(image, dtype=np.uint8, copy=True)
    picture[outline(mask, width)] = MASK_RGB
    return picture


def _text_strip(text: str, width: int, height: int) -> np.ndarray:
    """A white strip with ``text`` in black, shortened with "…" to fit ``width``."""
    from PIL import Image, ImageDraw, ImageFont

    strip = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    try:
        font = ImageFont.load_default(size=max(10, int(height * 0.6)))
    except TypeError:  # Pillow < 10.1: one size
        font = ImageFont.load_default()
    shown = text
    while shown and draw.textlength(shown, font=font) > width - 4:
        shown = shown[:-2] + "…" if len(shown) > 2 else ""
    draw.text((2, max(0, (height - int(height * 0.6)) // 2 - 1)), shown, fill=(0, 0, 0), font=font)
    return np.asarray(strip)


def _colour_bar(height: int, colormap: str, limits: Tuple[float, float], scale: int = 1) -> np.ndarray:
    """A vertical colour bar (high at the top) with its limits written beside it (``scale``: text
    and bar size, for large images)."""
    width, label_w, label_h = 14 * scale, 34 * scale, 14 * scale
    ramp = np.linspace(1.0, 0.0, height, dtype=np.float32)[:, None].repeat(width, axis=1)
    bar = colorize(ramp, colormap, (0.0, 1.0))
    labels = np.concatenate([_text_strip(f"{limits[1]:.2f}", label_w, label_h),
                             np.full((max(0, height - 2 * label_h), label_w, 3), 255, np.uint8),
                             _text_strip(f"{limits[0]:.2f}", label_w, label_h)])[:height]
    return np.concatenate([bar, np.full((height, 3 * scale, 3), 255, np.uint8), labels], axis=1)


def figure_grid(image: np.ndarray, mask: np.ndarray, maps, mask_title: str = "mask", columns: int = 3,
                gap: int = 8) -> np.ndarray:
    """One RGB figure for a paper: a grid of titled panels: the image, the image with the mask
    outlined (``mask_title`` says whose), then each map with its colour bar. ``maps``: a list of
    (title, HxW values, colormap name). Text grows with the image (a title ~1/25 of its height)."""
    from .io.images import as_rgb_uint8

    image = as_rgb_uint8(np.asarray(image))
    h, w = image.shape[:2]
    if np.shape(mask) != (h, w):
        raise ValueError(f"the mask is {np.shape(mask)}, the image {(h, w)}")
    scale = max(1, round(h / 300))
    title_height = 22 * scale
    bar_width = (14 + 3 + 34) * scale
    blank_bar = np.full((h, bar_width, 3), 255, np.uint8)
    panels = [("image", np.concatenate([image, blank_bar], axis=1)),
              (mask_title, np.concatenate([outlined(image, mask, max(1, round(max(h, w) / 200))), blank_bar], axis=1))]
    for title, values, colormap in maps:
        limits = auto_contrast(values)
        panels.append((title, np.concatenate([colorize(values, colormap, limits),
                                              _colour_bar(h, colormap, limits, scale)], axis=1)))
    cell_w = w + bar_width
    titled = [np.concatenate([_text_strip(title, cell_w, title_height), panel]) for title, panel in panels]
    columns = max(1, min(columns, len(titled)))
    blank = np.full_like(titled[0], 255)
    rows = []
    for start in range(0, len(titled), columns):
        cells = titled[start:start + columns] + [blank] * (columns - len(titled[start:start + columns]))
        row = [cells[0]]
        for cell in cells[1:]:
            row += [np.full((cell.shape[0], gap, 3), 255, np.uint8), cell]
        rows.append(np.concatenate(row, axis=1))
    grid = [rows[0]]
    for row in rows[1:]:
        grid += [np.full((gap, row.shape[1], 3), 255, np.uint8), row]
    return np.concatenate(grid, axis=0)


def figure_panels(image: np.ndarray, mask: np.ndarray, maps, gap: int = 8) -> np.ndarray:
    """One RGB figure for a paper: image | image with the mask outlined | each map, side by side
    (white gaps). ``maps``: a list of (HxW values, colormap name)."""
    from .io.images import as_rgb_uint8

    image = as_rgb_uint8(np.asarray(image))
    h, w = image.shape[:2]
    if np.shape(mask) != (h, w):
        raise ValueError(f"the mask is {np.shape(mask)}, the image {(h, w)}")
    overlay = outlined(image, mask, max(1, round(max(h, w) / 200)))
    panels = [image, overlay] + [colorize(values, colormap) for values, colormap in maps]
    spacer = np.full((h, gap, 3), 255, np.uint8)
    row = [panels[0]]
    for panel in panels[1:]:
        row += [spacer, panel]
    return np.concatenate(row, axis=1)
