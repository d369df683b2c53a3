"""Train one network on a lent GPU in one device call, and send back its fp16 checkpoint in parts.

Run through ``tools/gpu_train.sh`` (it sets the paths and keeps a log in $OUT):

    bash tools/gpu_train.sh ea-dk  --minutes 8            # EA-DK from scratch, 352 px
    bash tools/gpu_train.sh pefnet --minutes 8            # PEFNet-T from scratch, 256 px
    bash tools/gpu_train.sh collect --bench               # parts left on the machine; GPU fps rows
    GPU_TRAIN_DRY_RUN=1 bash tools/gpu_train.sh ea-dk     # here, on the CPU: 2 steps on 24 pairs

Training goes through the project's own trainer (``napari-polyp train`` with
``--augment-on-device``, AMP) on the data that ``tools/pack_data.py`` packed into ``.gpu/data``
(carried with the call), within a time budget. Then the best checkpoint is written in float16,
scored again on the validation split, cut into parts of at most 16 MiB (``split_parts``) and
copied into $OUT as far as a call's limits allow (8 files, 64 MiB): ``<name>.pt.parts.json``
holds the sha256 of the whole and of each part, the metrics and the timings. Parts that do not
fit (PEFNet-T's 95 MB) wait in a stash on the machine for ``collect``, which must come while the
machine is still warm (30 s after a call). Extra arguments after the network pass to
``napari-polyp train`` (``--batch 32 --lr 1e-3``, ``--resume`` to go on with a run in the stash).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

START = time.monotonic()
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PACK = ROOT / ".gpu" / "data"
# what each network trains on: packed set, training side, variant [B: PEFNet's smallest]
NETWORKS = {
    "ea-dk": {"data": "kvasir-seg-352", "size": 352, "variant": None},
    "pefnet": {"data": "kvasir-seg-352", "size": 256, "variant": "tiny"},
    "eam-net": {"data": "ph2-256", "size": 256, "variant": None},
    "microaunet": {"data": "kvasir-seg-352", "size": 256, "variant": None},
}
OUT_FILES, OUT_BYTES = 8, 64 * 2 ** 20  # what one call may send back
OUT_RESERVE_BYTES = 2 * 2 ** 20  # the log, the manifest and the bench rows
DRY_RUN = os.environ.get("GPU_TRAIN_DRY_RUN") == "1"
DRY_RUN_PAIRS = 24


def out_dir() -> Path:
    folder = Path(os.environ.get("OUT") or "/tmp/gpu-train-out")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


STASH_MIN_FREE = 8 * 2 ** 30  # a run folder (weights, optimizer state, arrays) and the parts


def stash_dir() -> Path:
    """Runs and parts kept on the machine between calls: in memory (/dev/shm) when it has room
    (a container's may have 64 MB), so that saving a checkpoint every epoch costs little."""
    shm = Path("/dev/shm")
    roomy = shm.is_dir() and shutil.disk_usage(shm).free > STASH_MIN_FREE
    base = shm if roomy and not DRY_RUN else Path("/tmp")
    folder = base / "napari-polyp-gpu"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def say(text: str) -> None:
    print(f"[{time.monotonic() - START:6.1f} s] {text}", flush=True)


def describe_machine() -> dict:
    import timm
    import torch

    facts = {"torch": str(torch.__version__), "timm": str(timm.__version__), "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        facts["gpu"] = torch.cuda.get_device_name()
        torch.backends.cudnn.benchmark = True  # fixed input sizes: pick the fastest kernels once
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    return facts


def dry_run_data(name: str) -> Path:
    """The first DRY_RUN_PAIRS pairs of a packed set (links), for a CPU rehearsal."""
    source, dest = PACK / name, stash_dir() / f"dry-{name}"
    for sub in ("images", "masks"):
        (dest / sub).mkdir(parents=True, exist_ok=True)
        for path in sorted((source / sub).iterdir())[:DRY_RUN_PAIRS]:
            link = dest / sub / path.name
            if not link.exists():
                link.symlink_to(path)
    return dest


def train_argv(name: str, args, extra) -> list:
    spec = NETWORKS[name]
    data = dry_run_data(spec["data"]) if DRY_RUN else PACK / spec["data"]
    if not (data / "images").is_dir():
        raise SystemExit(f"{data} is missing: run tools/pack_data.py here and name .gpu in the call's carry list")
    argv = ["--model", name, "--data", str(data), "--out", str(stash_dir() / "runs" / name),
            "--size", str(spec["size"]), "--augment-on-device", "--quiet",
            "--time-budget-min", str(args.minutes), "--threads", str(args.threads)]
    if spec["variant"]:
        argv += ["--variant", spec["variant"]]
    if DRY_RUN:
        argv += ["--device", "cpu", "--max-steps", "2", "--batch", "4", "--epochs", "1"]
    return argv + list(extra)


def train(name: str, argv: list, machine: dict):
    from napari_polyp.commands.train import add_arguments, config_from_args, print_events
    from napari_polyp.training.trainer import iter_train

    parser = argparse.ArgumentParser(prog="napari-polyp train")
    add_arguments(parser)
    config = config_from_args(parser.parse_args(argv))
    where = f"tools/gpu_train.py on {machine.get('gpu', 'cpu')}, torch {machine['torch']}"
    config = dataclasses.replace(config, command=f"napari-polyp train {shlex.join(argv)}  # {where}")
    say(f"training: {config.command}")
    return print_events(iter_train(config), quiet=True)


def half_checkpoint(name: str, best: Path, dest: Path, machine: dict) -> dict:
    """best.pt in float16 at ``dest``, scored on its validation stems before and after."""
    import torch

    import models
    from models.checkpoint import read_checkpoint, save_checkpoint
    from napari_polyp.training import data as data_mod
    from napari_polyp.training.trainer import Batches, norm_card, validate

    header, _ = read_checkpoint(best, expected_architecture=name)
    training = header["training"]
    pairs = data_mod.select(data_mod.find_pairs(training["data"]), training["val_stems"])
    val_arrays = data_mod.PairArrays(pairs, training["size"])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    batches = Batches(val_arrays, norm_card(name, training["size"]), None, 0, device)

    def score(path):
        model = models.create_model(name, checkpoint=path).to(device)
        return validate(model, batches, val_arrays, batch=16)

    fp32 = score(best)
    model = models.create_model(name, checkpoint=best)
    metrics = dict(header["metrics"], split="validation", resolution=f"{training['size']} px (packed data)",
                   threshold=0.5, float32_dice=fp32["dice"])
    save_checkpoint(model, dest, architecture=name, variant=header.get("variant"), training=training,
                    metrics=metrics, extra={"trained_on": machine}, half=True)
    fp16 = score(dest)
    metrics["float16_dice"] = fp16["dice"]
    save_checkpoint(model, dest, architecture=name, variant=header.get("variant"), training=training,
                    metrics=metrics, extra={"trained_on": machine}, half=True)
    return metrics


def send(files: list, reserved_files: int) -> list:
    """Copy files into $OUT, in order, while a call's limits allow (``reserved_files``: files
    still to be written there); returns those left behind. The log is already there."""
    out = out_dir()
    used_files = len(list(out.iterdir())) + reserved_files
    used_bytes = sum(p.stat().st_size for p in out.iterdir()) + OUT_RESERVE_BYTES
    left = []
    for path in files:
        size = Path(path).stat().st_size
        if left or used_files + 1 > OUT_FILES or used_bytes + size > OUT_BYTES:
            left.append(str(path))
            continue
        shutil.copy2(path, out / Path(path).name)
        used_files, used_bytes = used_files + 1, used_bytes + size
    return left


def pending_file() -> Path:
    return stash_dir() / "pending.json"


def train_and_send(name: str, args, extra) -> int:
    from models.checkpoint import PART_MAX_BYTES, split_parts

    machine = describe_machine()
    say(f"machine: {json.dumps(machine)}")
    started = time.monotonic()
    done = train(name, train_argv(name, args, extra), machine)
    trained_s = time.monotonic() - started
    parts_dir = stash_dir() / "parts" / name
    shutil.rmtree(parts_dir, ignore_errors=True)
    parts_dir.mkdir(parents=True)
    metrics = half_checkpoint(name, Path(done.checkpoint), parts_dir / f"{name}.pt", machine)
    say(f"validation (float16): {json.dumps(metrics)}")
    timings = {"to_training_s": round(started - START, 1), "training_s": round(trained_s, 1),
               "after_training_s": round(time.monotonic() - started - trained_s, 1),
               "epochs": done.epoch, "steps": done.step}
    manifest = split_parts(parts_dir / f"{name}.pt", PART_MAX_BYTES, parts_dir,
                           extra={"metrics": metrics, "timings": timings, "machine": machine})
    (parts_dir / f"{name}.pt").unlink()  # the parts hold it; memory is what the stash lives in
    parts = [parts_dir / p["name"] for p in json.loads(manifest.read_text())["parts"]]
    left = send([manifest] + parts, reserved_files=int(args.bench))  # the bench rows come later
    pending_file().write_text(json.dumps(left))
    say(f"sent {len(parts) + 1 - len(left)} files to $OUT; {len(left)} left for `collect`: "
        f"{[Path(p).name for p in left]}")
    return 0


def collect(args) -> int:
    path = pending_file()
    if not path.is_file():
        say("nothing to collect: no stash on this machine (a cold machine starts bare)")
        return 1 if not args.bench else 0
    left = send(json.loads(path.read_text()), reserved_files=int(args.bench))
    path.write_text(json.dumps(left))
    say(f"collected; {len(left)} files still left: {[Path(p).name for p in left]}")
    return 0


def bench_argv(batch: str) -> list:
    if DRY_RUN:  # the CPU rehearsal: one small network
        return ["--device", "cpu", "--models", "microaunet", "--runs", "3", "--batch", batch]
    return ["--device", "cuda", "--amp", "--batch", batch]


def bench() -> None:
    """GPU rows of benchmarks/bench_all.py (batch 1 and 8, AMP) into $OUT/bench-cuda.txt."""
    with open(out_dir() / "bench-cuda.txt", "w") as fh:
        for batch in ("1", "8"):
            say(f"bench_all {' '.join(bench_argv(batch))}")
            subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_all.py")] + bench_argv(batch),
                           stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT, check=False)
            fh.flush()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=sorted(NETWORKS) + ["collect"])
    parser.add_argument("--minutes", type=float, default=8.0,
                        help="training budget, data loading and the last validation included")
    parser.add_argument("--threads", type=int, default=8, help="torch CPU threads (16 cores there)")
    parser.add_argument("--bench", action="store_true", help="also bench_all --device cuda --amp")
    args, extra = parser.parse_known_args(argv)
    status = collect(args) if args.what == "collect" else train_and_send(args.what, args, extra)
    if args.bench:
        bench()
    say("done")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
