"""Inference engines: eager PyTorch, or ONNX Runtime on the CPU.

    runner = make_runner(model, "microaunet", input_size=256, engine="auto", device=torch.device("cpu"))
    runner.engine                     # "onnxruntime" | "torch"
    out = runner(x)                   # same as model(x): {"logits": ..., "attention": {name: ...}}

"auto" is ONNX Runtime on the CPU when it is installed, torch on CUDA/MPS. For a
tiny network such as MicroAUNet, eager PyTorch's per-operator overhead costs far
more than its arithmetic; ONNX Runtime runs the whole graph in C++ (and without
the GIL, so the napari UI stays responsive while it runs).

The ONNX file is exported from the loaded network on first use and cached in
``$NAPARI_POLYP_HOME/onnx`` (see ``models.checkpoint.home_dir``) under a name
that hashes everything the graph depends on (:func:`export_key`): the weights'
sha256 (the checkpoint's, or the weights' own for untrained networks), the
frozen backbone's sha256, the variant, the input size, the opset, the torch
version and the network's source files. The key is also written into the file's
metadata and checked on load. Metadata can be copied into any file, so the file
itself is verified too: its sha256 is recorded at export in ``index.json``, an
index the cache owns, and checked at every load, by the built path and by the
torch-free served path alike; the bytes that were hashed are the bytes ONNX Runtime
runs. A file that does not load, does not match its index entry or has none (a
planted or tampered graph) is exported again, with one message. Attention maps are
outputs of the graph (``attention:NAME``).

When ONNX Runtime is missing or an export fails, the runner is torch and the
reason is given once, as an :class:`EngineFallbackWarning` (and in ``runner.note``).
"""
from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import numpy as np

ENGINES = ("auto", "torch", "onnxruntime")
OPSET = 17
EXPORT_FORMAT = 1  # bump when the exported graph's layout (names, axes) changes
INPUT_NAME = "image"
LOGITS = "logits"
ATTENTION_PREFIX = "attention:"
METADATA_KEY = "napari_polyp_export"
CACHE_BUDGET_BYTES = 2 * 2**30  # least recently used exports beyond this are deleted
INDEX_FILE = "index.json"  # in the cache folder: export file name -> {"sha256": of its bytes}


class EngineFallbackWarning(UserWarning):
    """ONNX Runtime was asked for (or chosen by "auto") but torch runs instead."""


def physical_cores() -> int:
    """Physical CPU cores this process may use (hyper-threads do not speed up inference)."""
    try:
        import psutil

        cores = psutil.cpu_count(logical=False) or os.cpu_count() or 1
    except ImportError:  # pragma: no cover - napari depends on psutil
        cores = os.cpu_count() or 1
    if hasattr(os, "sched_getaffinity"):
        cores = min(cores, len(os.sched_getaffinity(0)))
    return max(1, int(cores))


def onnxruntime_problem(modules=("onnxruntime",)) -> str:
    """"" when ``modules`` can be imported (ONNX Runtime; "onnx" too for an export), else why not.
    The exporter is only imported when a graph must be exported: running a cached one needs
    ONNX Runtime alone (and importing onnx cost each app start 0.2 s)."""
    for module in modules:
        try:
            __import__(module)
        except Exception as err:  # noqa: BLE001 -- a broken install is as good as none
            return f"{module} cannot be imported ({type(err).__name__}: {err}); pip install onnx onnxruntime"
    return ""


ENGINE_ENV = "NAPARI_POLYP_ENGINE"  # the engine used when none is chosen (default "auto")


def check_engine(engine: str) -> str:
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    return engine


def default_engine() -> str:
    """``$NAPARI_POLYP_ENGINE`` when set (the test suite picks torch there), else "auto"."""
    return check_engine(os.environ.get(ENGINE_ENV) or "auto")


def add_arguments(parser) -> None:
    """``--engine`` and ``--threads``, worded alike for every command that runs a network."""
    parser.add_argument("--engine", choices=ENGINES, default=None,
                        help=f"auto (default, or ${ENGINE_ENV}): ONNX Runtime on the CPU, torch on a GPU")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for the network (default: the physical cores)")


def runs_on_cpu_onnxruntime(device: str, engine: Optional[str]) -> bool:
    """Whether ``device`` and ``engine`` ("auto" for either) come to ONNX Runtime on the CPU,
    told without importing torch: "auto" means a GPU where torch has one, so an "auto" device
    counts as the CPU only on a machine without an NVIDIA driver or an Apple GPU."""
    import platform

    engine = engine or default_engine()
    if engine == "torch" or device not in ("auto", "cpu"):
        return False
    if device == "auto":
        apple_gpu = platform.system() == "Darwin" and platform.machine() == "arm64"
        return not (os.path.exists("/dev/nvidiactl") or apple_gpu)
    return True


def cache_dir() -> Path:
    from models.checkpoint import home_dir

    return home_dir() / "onnx"


# -- runners ----------------------------------------------------------------------
@dataclass
class TorchRunner:
    """The network itself, eager."""

    model: torch.nn.Module
    note: str = ""
    engine: str = "torch"

    def __call__(self, x: torch.Tensor) -> dict:
        return self.model(x)


@dataclass
class OnnxRunner:
    """An ONNX Runtime session that answers like the network: torch in, torch out."""

    session: object
    path: Path
    attention_names: List[str]
    threads: int
    key: dict = field(default_factory=dict)  # what the graph was exported from (export_key)
    note: str = ""
    engine: str = "onnxruntime"
    input_size: int = field(init=False)

    def __post_init__(self):
        self.input_size = int(self.session.get_inputs()[0].shape[-1])
        self._outputs = [LOGITS] + [ATTENTION_PREFIX + n for n in self.attention_names]

    def __call__(self, x: "torch.Tensor") -> dict:
        import torch

        out = self.run(x.detach().to("cpu", torch.float32).contiguous().numpy())
        return {"logits": torch.from_numpy(out["logits"]),
                "attention": {n: torch.from_numpy(m) for n, m in out["attention"].items()}}

    def run(self, array: np.ndarray) -> dict:
        """The same for numpy arrays (no torch needed)."""
        logits, *maps = self.session.run(self._outputs, {INPUT_NAME: np.ascontiguousarray(array, np.float32)})
        return {"logits": logits, "attention": dict(zip(self.attention_names, maps))}


_warned: set = set()


def _fall_back(model, reason: str, model_name: str) -> TorchRunner:
    note = f"{model_name}: running in PyTorch instead of ONNX Runtime: {reason}"
    if note not in _warned:  # one message per network and reason, not one per image
        _warned.add(note)
        warnings.warn(note, EngineFallbackWarning, stacklevel=3)
    return TorchRunner(model, note=note)


def make_runner(model: torch.nn.Module, model_name: str, input_size: int, engine: str = "auto",
                device: Optional[torch.device] = None, threads: Optional[int] = None,
                directory: Optional[Path] = None):
    """The runner for ``engine`` ("auto" | "torch" | "onnxruntime"), see the module docstring.

    ``threads``: ONNX Runtime's intra-op threads (default: :func:`physical_cores`);
    ``directory``: where exports are cached (default :func:`cache_dir`).
    """
    import torch

    engine = check_engine(engine or default_engine())
    device = torch.device(device or "cpu")
    if engine == "torch" or (engine == "auto" and device.type != "cpu"):
        return TorchRunner(model)
    if device.type != "cpu":
        return _fall_back(model, f"ONNX Runtime runs on the CPU here, not on {device.type}", model_name)
    problem = onnxruntime_problem()
    if problem:
        return _fall_back(model, problem, model_name)
    try:
        runner = load_or_export(model, model_name, input_size, threads=threads, directory=directory)
        if directory is None and getattr(model, "checkpoint_path", None):
            remember_served(model.checkpoint_path, input_size, runner.path, runner.key)
        return runner
    except Exception as err:  # noqa: BLE001 -- any export problem: torch still works
        return _fall_back(model, f"the ONNX export failed ({type(err).__name__}: {_first_line(err)})",
                          model_name)


# -- straight from the cache ---------------------------------------------------------
SERVED_FILE = "served.json"  # in cache_dir(): checkpoint file version + input size -> its export


def _served_key(checkpoint_path, input_size: int) -> str:
    from models.checkpoint import file_version

    return json.dumps([*file_version(Path(checkpoint_path)), int(input_size)])


def remember_served(checkpoint_path, input_size: int, export_file: Path, key: dict) -> None:
    """Note that ``export_file`` is ``checkpoint_path``'s graph, so that the next start can
    run it without torch (:func:`served_runner`). Best effort, atomic."""
    from models.checkpoint import update_json_file

    entry = {"file": Path(export_file).name, "key": key}
    try:
        update_json_file(cache_dir() / SERVED_FILE,
                         lambda entries: {**entries, _served_key(checkpoint_path, input_size): entry})
    except (OSError, ValueError):
        pass


def served_runner(model_name: str, checkpoint_path, input_size: int, threads: Optional[int] = None):
    """The cached graph of this checkpoint file at this input size, opened without torch, when
    an earlier run exported it and nothing it depends on has changed since (the checkpoint
    file, the network's source files, the torch version that exported it); else None."""
    from importlib.metadata import version

    if onnxruntime_problem():
        return None
    try:
        entries = json.loads((cache_dir() / SERVED_FILE).read_text())
        entry = entries[_served_key(checkpoint_path, input_size)]
        key, path = entry["key"], cache_dir() / Path(entry["file"]).name
        current = {"architecture": model_name, "input_size": int(input_size), "format": EXPORT_FORMAT,
                   "opset": OPSET, "torch": version("torch").split("+")[0],
                   "source_sha256": architecture_source_sha256(model_name)}
        if any(key.get(k) != v for k, v in current.items()) or not path.is_file():
            return None
        return open_export(path, key, threads or physical_cores(), verified_graph(path))
    except Exception:  # noqa: BLE001 -- a missing or odd note, a graph not matching the index, ONNX Runtime
        return None   # refusing the file: the built path runs, and says why when it exports again


# -- export and cache -------------------------------------------------------------
def export_key(model: torch.nn.Module, model_name: str, input_size: int, opset: int = OPSET) -> dict:
    """Everything the exported graph depends on, as plain values."""
    import torch
    from models.checkpoint import weights_sha256

    header = getattr(model, "checkpoint_header", None) or {}
    key = {
        "format": EXPORT_FORMAT,
        "architecture": model_name,
        "variant": _plain(getattr(model, "variant", {})),
        "weights_sha256": header.get("sha256") or weights_sha256(model.state_dict()),
        "input_size": int(input_size),
        "opset": int(opset),
        "torch": str(torch.__version__).split("+")[0],
        "source_sha256": _source_sha256(model),
    }
    if hasattr(model, "backbone_sha256") and header.get("sha256"):
        key["backbone_sha256"] = model.backbone_sha256()  # a checkpoint without its frozen backbone
    return key


def _plain(value):
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _source_sha256(model: torch.nn.Module) -> str:
    """The network's code: its class's file and the shared blocks (an edit there changes the graph)."""
    return _files_sha256([inspect.getsourcefile(type(model)) or "", _blocks_file()])


def _blocks_file() -> str:
    import models

    return str(Path(models.__file__).parent / "blocks.py")  # not imported: it imports torch


def _files_sha256(files) -> str:
    digest = hashlib.sha256()
    for module_file in sorted(set(files)):
        if module_file and os.path.isfile(module_file):
            digest.update(Path(module_file).read_bytes())
    return digest.hexdigest()


def architecture_source_sha256(model_name: str) -> str:
    """:func:`_source_sha256` of a registered network, from its files alone (no torch)."""
    import models
    from models.cards import module_of

    return _files_sha256([str(Path(models.__file__).parent / f"{module_of(model_name)}.py"), _blocks_file()])


def export_path(key: dict, directory: Path) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return Path(directory) / f"{key['architecture']}-{key['input_size']}px-opset{key['opset']}-{digest}.onnx"


def load_or_export(model: torch.nn.Module, model_name: str, input_size: int, threads: Optional[int] = None,
                   directory: Optional[Path] = None, opset: int = OPSET) -> OnnxRunner:
    """The cached export of ``model`` when there is a valid one, else a fresh export."""
    directory = Path(directory or cache_dir())
    key = export_key(model, model_name, input_size, opset)
    path = export_path(key, directory)
    threads = threads or physical_cores()
    if path.is_file() or path.is_symlink():
        try:
            runner = open_export(path, key, threads, verified_graph(path))
            os.utime(path)  # recently used: kept when the cache is pruned
            return runner
        except Exception as err:  # noqa: BLE001 -- corrupt, truncated or foreign: export again
            warnings.warn(f"the cached ONNX file {path} cannot be used ({_first_line(err)}); exporting again",
                          EngineFallbackWarning, stacklevel=2)
            path.unlink(missing_ok=True)
    problem = onnxruntime_problem(("onnx",))
    if problem:
        raise RuntimeError(problem)
    export(model, path, input_size, key, opset)
    prune_cache(directory, keep=path)
    return open_export(path, key, threads)


def export(model: torch.nn.Module, path: Path, input_size: int, key: dict, opset: int = OPSET) -> Path:
    """Write ``model`` as ONNX (dynamic batch, fixed square ``input_size``) to ``path``, atomically."""
    import onnx
    import torch

    model = model.eval()
    x = torch.zeros(1, getattr(model, "in_channels", 3), input_size, input_size)  # the click refiner reads 6
    with torch.inference_mode():
        attention_names = list(model(x)["attention"])
    outputs = [LOGITS] + [ATTENTION_PREFIX + n for n in attention_names]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fixed_size = getattr(model, "fixed_input_size", None)  # networks that need help to trace, e.g. dino-keys
    try:
        with warnings.catch_warnings(), torch.no_grad(), \
                (fixed_size(input_size) if fixed_size else contextlib.nullcontext()):
            warnings.simplefilter("ignore")  # tracer warnings: shapes are constants at one input size, by design
            # .eval() on the wrapper too: the exporter restores the wrapper's mode afterwards, which
            # would otherwise put the network (and its BatchNorm) into training mode
            torch.onnx.export(_TupleOutputs(model).eval(), (x,), str(tmp), dynamo=False, opset_version=opset,
                              input_names=[INPUT_NAME], output_names=outputs,
                              dynamic_axes={name: {0: "batch"} for name in [INPUT_NAME] + outputs})
        graph = onnx.load(str(tmp))
        entry = graph.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, json.dumps({**key, "attention": attention_names}, sort_keys=True)
        onnx.save(graph, str(tmp))
        digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
        os.replace(tmp, path)
        _record_in_index(path, digest)
    finally:
        model.eval()
        tmp.unlink(missing_ok=True)
    return path


class CachedGraphMismatch(ValueError):
    """A cached ONNX file is not the one this cache exported (planted, tampered or unindexed)."""


def _record_in_index(path: Path, digest: str) -> None:
    from models.checkpoint import update_json_file

    update_json_file(path.parent / INDEX_FILE, lambda index: {**index, path.name: {"sha256": digest}})


def verified_graph(path: Path) -> bytes:
    """The bytes of a cached graph, when their sha256 is the one recorded in the cache's index at
    export; else :class:`CachedGraphMismatch`. The caller runs these very bytes (no second read
    that another process could swap)."""
    from models.checkpoint import read_json_object

    if Path(path).is_symlink():
        raise CachedGraphMismatch("it is a symbolic link, not a file this cache wrote")
    data = Path(path).read_bytes()
    entry = read_json_object(Path(path).parent / INDEX_FILE).get(Path(path).name)
    recorded = entry.get("sha256") if isinstance(entry, dict) else None
    if recorded is None:
        raise CachedGraphMismatch(f"its sha256 is not in the cache's {INDEX_FILE}: this cache did not export it")
    if hashlib.sha256(data).hexdigest() != recorded:
        raise CachedGraphMismatch(f"its sha256 differs from the one recorded at export in {INDEX_FILE}: "
                                  "the file was changed or replaced")
    return data


def _TupleOutputs(model):  # noqa: N802 -- a class made on first use: torch is imported lazily
    """The network with its output dict flattened to (logits, *attention maps): ONNX outputs are a list."""
    import torch

    class TupleOutputs(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, x):
            out = self.model(x)
            return (out["logits"],) + tuple(out["attention"].values())

    return TupleOutputs()


def open_export(path: Path, key: dict, threads: int, graph: Optional[bytes] = None) -> OnnxRunner:
    """An ONNX Runtime session on ``graph`` (the bytes of ``path``, verified by the caller with
    :func:`verified_graph`; read from ``path`` when None), refused unless its metadata is ``key``."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    # Idle threads sleep instead of spinning: spinning burns the cores that napari's UI,
    # video decoding and other work need, and on a busy 2-core machine made it 2x slower.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only: ORT's own warnings are not the user's business
    session = ort.InferenceSession(graph if graph is not None else str(path), sess_options=options,
                                   providers=["CPUExecutionProvider"])
    stored = json.loads(session.get_modelmeta().custom_metadata_map.get(METADATA_KEY, "{}"))
    attention = stored.pop("attention", None)
    if stored != json.loads(json.dumps(key, sort_keys=True)) or not isinstance(attention, list):
        raise ValueError("its metadata does not match the network")
    expected = [LOGITS] + [ATTENTION_PREFIX + n for n in attention]
    if [o.name for o in session.get_outputs()] != expected or \
            [i.name for i in session.get_inputs()] != [INPUT_NAME]:
        raise ValueError("its inputs or outputs are not the network's")
    return OnnxRunner(session, Path(path), attention, int(threads), key=dict(key))


def prune_cache(directory: Path, keep: Optional[Path] = None, budget: int = CACHE_BUDGET_BYTES) -> List[Path]:
    """Delete the least recently used exports beyond ``budget`` bytes (never ``keep``); returns them."""
    files = sorted(Path(directory).glob("*.onnx"), key=lambda p: p.stat().st_mtime, reverse=True)
    total, removed = 0, []
    for path in files:
        total += path.stat().st_size
        if total > budget and path != keep:
            path.unlink(missing_ok=True)
            removed.append(path)
    if removed:
        from models.checkpoint import update_json_file

        gone = {p.name for p in removed}
        update_json_file(Path(directory) / INDEX_FILE, lambda index: {k: v for k, v in index.items() if k not in gone})
    return removed


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0][:300] if lines else type(err).__name__


__all__ = ["ENGINES", "EngineFallbackWarning", "OnnxRunner", "TorchRunner", "cache_dir", "export_key",
           "load_or_export", "make_runner", "physical_cores"]
