"""The project's checkpoint format: a small checked header plus the weights.

A checkpoint is a ``torch.save`` of a plain dict, so ``torch.load(...,
weights_only=True)`` reads it without running any pickled code::

    {"format": "napari-polyp-checkpoint", "format_version": 1,
     "header": {"architecture": "microaunet", "variant": {...},
                "training": {...}, "metrics": {...}, "sha256": "<weights>", ...},
     "state_dict": {name: tensor}}

``sha256`` is taken over the weights themselves (names, dtypes, shapes and
bytes in sorted order), so a file whose tensors were edited after saving is
refused, and layers can cite the hash of the weights that produced them.

Where checkpoints live:
- shipped with the package: ``models/checkpoints/<name>.pt``;
- over ``LARGE_CHECKPOINT_BYTES`` (too large for the wheel): in the repository only, at
  ``models/checkpoints/large/<name>.pt``, listed with their sha256 in
  ``models/checkpoints/large.json`` (which the wheel carries, so a missing one is named);
- trained or fine-tuned by the user: ``$NAPARI_POLYP_HOME/checkpoints``
  (default ``~/.cache/napari-polyp/checkpoints``); ``set_preferred`` makes one
  of those the default for its architecture.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Iterable, List, Optional, Tuple

if TYPE_CHECKING:
    import torch

# torch is imported by the functions that read, write or hash weights, not by this module:
# finding checkpoints and peeking at their (remembered) headers must not cost an app start
# the 2-4 s of importing torch.

FORMAT = "napari-polyp-checkpoint"
FORMAT_VERSION = 1
SHIPPED_DIR = Path(__file__).parent / "checkpoints"


class CheckpointError(ValueError):
    """A checkpoint could not be used; the message says why and what to do."""


def home_dir() -> Path:
    return Path(os.environ.get("NAPARI_POLYP_HOME", Path.home() / ".cache" / "napari-polyp"))


def user_checkpoint_dir() -> Path:
    return home_dir() / "checkpoints"


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
    _remember_verified(path, header)
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


# -- where the default checkpoint of each architecture is -------------------------

def _preferred_file() -> Path:
    return user_checkpoint_dir() / "preferred.json"


def _read_preferred() -> dict:
    """architecture -> preferred checkpoint path; an unreadable or malformed file counts as empty."""
    return {k: v for k, v in read_json_object(_preferred_file()).items() if isinstance(v, str)}


def set_preferred(architecture: str, path) -> None:
    """Make ``path`` what ``create_model(architecture)`` loads by default."""
    chosen = str(Path(path).resolve())
    update_json_file(_preferred_file(), lambda prefs: {**prefs, architecture: chosen})


def read_json_object(path) -> dict:
    """The JSON object in ``path``; {} when it is missing, unreadable or not an object."""
    try:
        value = json.loads(Path(path).read_bytes())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def update_json_file(path, change) -> None:
    """Replace the JSON object in ``path`` (preferred.json, the ONNX cache's notes) by
    ``change(object)``, safe when several processes write at once: read and written under a lock
    beside it, through a temporary file of a unique name, fsynced and renamed over the file, so a
    reader sees the old object or the new one (never an empty file) and no update is lost."""
    import tempfile

    from filelock import FileLock

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path.with_name(f".{path.name}.lock")), timeout=60):
        data = json.dumps(change(read_json_object(path)), indent=1, sort_keys=True).encode()
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                if hasattr(os, "fchmod"):  # mkstemp's 0600 would hide the file from a shared cache's users
                    umask = os.umask(0)
                    os.umask(umask)
                    os.fchmod(fh.fileno(), 0o666 & ~umask)
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def shipped_checkpoint(architecture: str) -> Optional[Path]:
    path = SHIPPED_DIR / f"{architecture}.pt"
    return path if path.is_file() else large_checkpoint(architecture)


# -- checkpoints too large for the wheel -------------------------------------------------

LARGE_CHECKPOINT_BYTES = 20 * 1000 * 1000  # above this a checkpoint stays out of the wheel (setup.cfg)
LARGE_INDEX = "large.json"  # {architecture: {"file": "large/<name>.pt", "bytes": n, "sha256": file hash}}
_large_missing_reported: set = set()
_large_verified: Dict[Tuple[str, float, int], str] = {}


def large_index() -> dict:
    """The large checkpoints the repository holds (an unreadable index counts as empty)."""
    try:
        index = json.loads((SHIPPED_DIR / LARGE_INDEX).read_text())
    except (OSError, ValueError):
        return {}
    return index if isinstance(index, dict) else {}


def large_checkpoint(architecture: str) -> Optional[Path]:
    """The repository's large checkpoint of ``architecture`` when it is present and its sha256
    is the recorded one; a missing or different file is named once in a warning that says
    where to get it."""
    entry = large_index().get(architecture)
    if not isinstance(entry, dict) or "file" not in entry:
        return None
    path = SHIPPED_DIR / entry["file"]
    problem = _large_problem(path, entry)
    if problem is None:
        return path
    if (architecture, problem) not in _large_missing_reported:
        _large_missing_reported.add((architecture, problem))
        warnings.warn(f"the {architecture} checkpoint {path} {problem}. It is too large for the wheel "
                      f"({entry.get('bytes', 0) / 1e6:.0f} MB): get models/checkpoints/{entry['file']} from the "
                      f"napari-polyp repository (git clone, or the file alone; sha256 {entry.get('sha256', '?')}) "
                      f"and put it there, or pass a checkpoint path; using untrained weights meanwhile.",
                      UserWarning, stacklevel=3)
    return None


def _large_problem(path: Path, entry: dict) -> Optional[str]:
    if not path.is_file():
        return "is missing"
    stat = path.stat()
    key = (str(path), stat.st_mtime, stat.st_size)
    if key not in _large_verified:  # hashing 100 MB takes a while: once per file version
        _large_verified[key] = file_sha256(path)
    if _large_verified[key] != entry.get("sha256"):
        return "is not the recorded file (its sha256 differs)"
    return None


def record_large_checkpoint(architecture: str, path) -> dict:
    """List ``path`` (a file under ``SHIPPED_DIR/large``) in the index with its size and sha256."""
    path = Path(path).resolve()
    entry = {"file": path.relative_to(SHIPPED_DIR.resolve()).as_posix(), "bytes": path.stat().st_size,
             "sha256": file_sha256(path)}
    index = large_index()
    index[architecture] = entry
    target = SHIPPED_DIR / LARGE_INDEX
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(index, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, target)
    return entry


# -- parts: a checkpoint cut into pieces of a bounded size, and joined back ---------------

PART_MAX_BYTES = 16 * 2 ** 20  # what one file back from a lent GPU machine may weigh
PARTS_SUFFIX = ".parts.json"


def split_parts(path, max_bytes: int = PART_MAX_BYTES, out_dir=None, extra: Optional[dict] = None) -> Path:
    """Cut ``path`` into ``<name>.part01``, ``.part02``, ... of at most ``max_bytes`` each (in
    ``out_dir``, default beside it) and write ``<name>.parts.json``: the whole file's size and
    sha256, each part's name, size and sha256 in order, and ``extra``. Returns that manifest's path."""
    path = Path(path)
    out_dir = Path(out_dir) if out_dir is not None else path.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    parts = []
    with open(path, "rb") as fh:
        for number, block in enumerate(iter(lambda: fh.read(max_bytes), b""), start=1):
            name = f"{path.name}.part{number:02d}"
            (out_dir / name).write_bytes(block)
            parts.append({"name": name, "bytes": len(block), "sha256": hashlib.sha256(block).hexdigest()})
    manifest = {"file": path.name, "bytes": path.stat().st_size, "sha256": file_sha256(path), "parts": parts,
                **(extra or {})}
    target = out_dir / f"{path.name}{PARTS_SUFFIX}"
    target.write_text(json.dumps(manifest, indent=1))
    return target


def join_parts(manifest, dest=None, parts: Optional[List] = None) -> Path:
    """Join the parts a ``split_parts`` manifest lists into ``dest`` (default: the whole
    file's name beside the manifest), checking each part's sha256 against its place in the
    manifest and then the whole's; ``parts``: the part files in order (default: found by
    name beside the manifest). A missing, damaged or misplaced part raises a CheckpointError
    naming it, and nothing is written."""
    manifest_path = Path(manifest)
    try:
        recorded = json.loads(manifest_path.read_text())
        expected = recorded["parts"]
    except (OSError, ValueError, KeyError) as err:
        raise CheckpointError(f"{manifest_path} is not a parts manifest ({type(err).__name__}: {err})") from None
    folder = manifest_path.parent
    files = [Path(p) for p in parts] if parts is not None else [folder / e["name"] for e in expected]
    if len(files) != len(expected):
        raise CheckpointError(f"{recorded['file']} has {len(expected)} parts, {len(files)} given")
    blocks = [_checked_part(f, number, expected) for number, f in enumerate(files, start=1)]
    whole = b"".join(blocks)
    if hashlib.sha256(whole).hexdigest() != recorded["sha256"]:
        raise CheckpointError(f"the joined {recorded['file']} does not have the recorded sha256 {recorded['sha256']}")
    dest = Path(dest) if dest is not None else folder / recorded["file"]
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(whole)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _checked_part(path: Path, number: int, expected: List[dict]) -> bytes:
    """The bytes of ``path``, which must be part ``number`` of ``expected`` (1-based)."""
    want = expected[number - 1]
    if not path.is_file():
        raise CheckpointError(f"part {number} of {len(expected)} ({path}) is missing: fetch {want['name']} again")
    block = path.read_bytes()
    digest = hashlib.sha256(block).hexdigest()
    if digest == want["sha256"]:
        return block
    elsewhere = [i for i, e in enumerate(expected, start=1) if e["sha256"] == digest]
    if elsewhere:
        raise CheckpointError(f"parts out of order: {path} is part {elsewhere[0]}, not part {number} "
                              f"({want['name']})")
    raise CheckpointError(f"part {number} of {len(expected)} ({path}) is damaged: its sha256 {digest} is not "
                          f"the recorded {want['sha256']}; fetch {want['name']} again")


def default_checkpoint(architecture: str) -> Optional[Path]:
    """The user's preferred checkpoint if it still exists and is a valid checkpoint of
    ``architecture``, else the shipped one (a broken preferred file is named in a warning)."""
    preferred = preferred_checkpoint(architecture)
    if preferred is None:
        return shipped_checkpoint(architecture)
    problem = _problem_with(preferred, architecture)
    if problem is None:
        return preferred
    fall_back_from(preferred, problem, architecture)
    return shipped_checkpoint(architecture)


def preferred_checkpoint(architecture: str) -> Optional[Path]:
    """The file ``set_preferred`` named for ``architecture``, if it still exists (unverified)."""
    preferred = _read_preferred().get(architecture)
    return Path(preferred) if preferred and Path(preferred).is_file() else None


def _problem_with(path: Path, architecture: str) -> Optional[str]:
    try:
        header = peek_header(path)
    except CheckpointError as err:
        return str(err)
    if header.get("architecture") != architecture:
        return f"{path} holds a '{header.get('architecture')}' checkpoint, not '{architecture}'"
    return None


_fallbacks_reported: set = set()


def fall_back_from(path: Path, problem: str, architecture: str) -> None:
    """Warn (once per file version) that the preferred checkpoint is broken and the shipped one is used."""
    key = (str(path), _mtime(path))
    if key in _fallbacks_reported:
        return
    _fallbacks_reported.add(key)
    shipped = shipped_checkpoint(architecture)
    instead = f"using the shipped checkpoint {shipped} instead" if shipped else "using untrained weights instead"
    warnings.warn(f"the preferred {architecture} checkpoint {path} cannot be used: {problem}; {instead}. "
                  f"Fine-tune again or delete {_preferred_file()} to stop this warning.", UserWarning, stacklevel=3)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def list_checkpoints(architecture: str) -> List[Path]:
    """Shipped and user checkpoints of one architecture, default first."""
    found: List[Path] = []
    default = default_checkpoint(architecture)
    if default:
        found.append(default)
    shipped = shipped_checkpoint(architecture)
    candidates: Iterable[Path] = ([shipped] if shipped else []) + sorted(user_checkpoint_dir().glob("*.pt"))
    for path in candidates:
        if path in found:
            continue
        try:
            header = peek_header(path)
        except CheckpointError:
            continue
        if header.get("architecture") == architecture:
            found.append(path)
    return found


_header_cache: Dict[Tuple[str, int, int], dict] = {}
HEADER_CACHE_FILE = "checkpoint-headers.json"  # in home_dir(): verified headers, see peek_header


def file_version(path: Path) -> Tuple[str, int, int]:
    """(resolved path, size, modification time in ns): what says a file is still the one seen."""
    stat = path.stat()
    return str(path.resolve()), stat.st_size, stat.st_mtime_ns


def peek_header(path) -> dict:
    """The header alone, verified (the whole file read, its weights' sha256 checked) once per
    file version (path, size, modification time) and then remembered, in memory and in
    ``$NAPARI_POLYP_HOME/checkpoint-headers.json``: choosing the default network reads the
    header of every checkpoint, which cost each app start ~0.4 s of loading and hashing.
    Only cards and menus use this; loading the weights always verifies the file itself."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    version = file_version(path)
    if version not in _header_cache:
        header = _remembered_header(version)
        if header is None:  # verify the file (read_checkpoint remembers its header)
            return _remember_verified(path, read_checkpoint(path)[0])
        _header_cache[version] = header
    return _header_cache[version]


def _remember_verified(path: Path, header: dict) -> dict:
    """A header whose file was just verified, for peek_header: in memory, and on disk for the
    next process (as plain JSON values, the same whether verified now or remembered)."""
    version = file_version(path)
    if version not in _header_cache:
        _header_cache[version] = json.loads(json.dumps(header, default=str))
        _remember_header(version, _header_cache[version])
    return _header_cache[version]


def _read_header_file() -> dict:
    try:
        data = json.loads((home_dir() / HEADER_CACHE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _remembered_header(version: Tuple[str, int, int]) -> Optional[dict]:
    entry = _read_header_file().get(version[0])
    if isinstance(entry, dict) and [entry.get("size"), entry.get("mtime_ns")] == list(version[1:]) \
            and isinstance(entry.get("header"), dict):
        return entry["header"]
    return None


def _remember_header(version: Tuple[str, int, int], header: dict) -> None:
    """Best effort (a read-only home just means verifying again next time); atomic, so a
    concurrent writer loses at most its own entry."""
    entries = {k: v for k, v in _read_header_file().items() if Path(k).is_file()}
    entries[version[0]] = {"size": version[1], "mtime_ns": version[2], "header": header}
    target = home_dir() / HEADER_CACHE_FILE
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(entries, default=str))
        os.replace(tmp, target)
    except OSError:
        tmp.unlink(missing_ok=True)
