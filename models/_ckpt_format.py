"""The file format: a header (architecture, variant, training, metrics, the weights' sha256)
and the weights, written atomically, read with ``weights_only`` and checked; copying the
weights into a network; and ``peek_header``, which reads the header once per file version."""
from __future__ import annotations

import datetime as _dt
import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Optional, Tuple

from ._ckpt_cache import remember_verified, remembered_header

if TYPE_CHECKING:
    import torch

# torch is imported by the functions that read, write or hash weights, not by this module:
# finding checkpoints and peeking at their (remembered) headers must not cost an app start
# the 2-4 s of importing torch.

FORMAT = "napari-polyp-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint could not be used; the message says why and what to do."""


def weights_sha256(state_dict: Dict[str, "torch.Tensor"]) -> str:
    import torch

    digest = hashlib.sha256()
    for key in sorted(state_dict):
        tensor = state_dict[key].detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def trainable_state_dict(model: torch.nn.Module, half: bool = False) -> Dict[str, torch.Tensor]:
    """The weights a checkpoint stores: all but the frozen prefixes the model names
    (a frozen pretrained backbone is fetched separately, see dino_keys)."""
    skip: Tuple[str, ...] = tuple(getattr(model, "checkpoint_exclude", ()))
    out = {}
    for key, value in model.state_dict().items():
        if skip and key.startswith(skip):
            continue
        value = value.detach().cpu()
        if half and value.is_floating_point():
            value = value.half()
        out[key] = value.clone()
    return out


def save_checkpoint(
    model: "torch.nn.Module",
    path,
    *,
    architecture: str,
    variant: Optional[dict] = None,
    training: Optional[dict] = None,
    metrics: Optional[dict] = None,
    extra: Optional[dict] = None,
    half: bool = False,
) -> dict:
    """Write ``model``'s weights with a header; atomic (temp file + rename).

    Returns the header. ``extra`` holds plain values only (str, numbers, lists,
    dicts) so that ``weights_only`` loading stays possible.
    """
    import torch

    state = trainable_state_dict(model, half=half)
    header = {
        "architecture": architecture,
        # a network that knows its own layout (model.variant) records it even when not told
        "variant": dict(variant if variant is not None else getattr(model, "variant", None) or {}),
        "training": dict(training or {}),
        "metrics": dict(metrics or {}),
        "sha256": weights_sha256(state),
        "dtype": "float16" if half else "float32",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "torch": str(torch.__version__),
    }
    header.update(extra or {})
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "header": header, "state_dict": state}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return header


def read_checkpoint(path, expected_architecture: Optional[str] = None) -> Tuple[dict, dict]:
    """Load and verify a checkpoint; returns ``(header, state_dict)``.

    Refuses, with a message naming the file: a missing file, a file that is not
    a torch checkpoint, a torch file that is not of this project, a checkpoint
    of another architecture, and weights whose sha256 does not match the header.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # zip/pickle errors vary by torch version
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({load_problem(err, path)})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is a PyTorch file but not a napari-polyp checkpoint (no '{FORMAT}' header); "
            "train one with `napari-polyp train` or save it with models.checkpoint.save_checkpoint"
        )
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} uses checkpoint format {payload['format_version']}; this napari-polyp reads "
            f"up to {FORMAT_VERSION}: upgrade napari-polyp"
        )
    header, state = payload.get("header", {}), payload.get("state_dict", {})
    arch = header.get("architecture")
    if expected_architecture is not None and arch != expected_architecture:
        raise CheckpointError(
            f"{path} holds a '{arch}' checkpoint, but the model is '{expected_architecture}'"
        )
    actual = weights_sha256(state)
    if actual != header.get("sha256"):
        raise CheckpointError(
            f"{path}: weights do not match the sha256 in their header "
            f"(header {str(header.get('sha256'))[:12]}…, weights {actual[:12]}…); "
            "the file was modified or damaged"
        )
    remember_verified(path, header)
    return header, state


def load_problem(err: Exception, path=None) -> str:
    """Why torch.load (or a weights reader) refused a file, in our words: torch's own text for a
    file holding arbitrary Python objects advises loading it unsafely, which we never do nor
    advise; and a text file is said to be one (torch calls it a file of Python objects too)."""
    if path is not None and _is_text_file(path):
        return "it is a text file, not a file of weights"
    text = str(err)
    if "weights_only" in text or "Weights only load failed" in text or "WeightsUnpickler" in text:
        return ("it holds Python objects other than tensors and plain values, which napari-polyp "
                "never loads because loading them could run code from the file")
    first = text.strip().splitlines()[0] if text.strip() else "no detail"
    return f"{type(err).__name__}: {first}"


def _is_text_file(path) -> bool:
    """Whether ``path`` starts like text rather than a zip, pickle or safetensors file."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
    except OSError:
        return False
    if not head or head.startswith((b"PK\x03\x04", b"\x80")):
        return False
    try:
        decoded = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(ch.isprintable() or ch in "\t\r\n" for ch in decoded)


def load_into(model: torch.nn.Module, state: Dict[str, torch.Tensor], path, architecture: str,
              new_parts_ok: bool = False) -> None:
    """Copy checkpoint weights into ``model``; every non-excluded weight must match.

    ``new_parts_ok`` (a training start): weights under the model's ``identity_start_prefixes``
    (parts that start as "no change", such as zero-initialised adapters) may be missing and
    keep their initial values, so a checkpoint from before they existed starts them."""
    expected = trainable_state_dict(model)
    new_parts = tuple(getattr(model, "identity_start_prefixes", ())) if new_parts_ok else ()
    missing = sorted(k for k in set(expected) - set(state) if not (new_parts and k.startswith(new_parts)))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or unexpected or wrong_shape:
        detail = "; ".join(
            f"{label}: {', '.join(keys[:3])}{' …' if len(keys) > 3 else ''}"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape))
            if keys
        )
        raise CheckpointError(
            f"{path} does not fit this '{architecture}' network ({detail}); "
            "was it trained with another variant?"
        )
    model.load_state_dict(state, strict=False)


def peek_header(path) -> dict:
    """The header alone, verified (the whole file read, its weights' sha256 checked) once per
    file version (path, size, modification time) and then remembered, in memory and in
    ``$NAPARI_POLYP_HOME/checkpoint-headers.json``: choosing the default network reads the
    header of every checkpoint, which cost each app start ~0.4 s of loading and hashing.
    Only cards and menus use this; loading the weights always verifies the file itself."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    header = remembered_header(path)
    if header is None:  # verify the file (read_checkpoint remembers its header)
        return remember_verified(path, read_checkpoint(path)[0])
    return header
