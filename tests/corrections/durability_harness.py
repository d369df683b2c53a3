"""Kill-and-check harness for the corrections dataset (used by tests/corrections/test_durability.py
and benchmarks/durability.py; it lives with the tests, not in the package).

A child process saves into a dataset in a loop, printing each version it has
saved; the parent SIGKILLs it at a random moment and then checks that

- the dataset still reads (every manifest line but a torn last one parses, every
  current item loads: image and mask);
- each current mask is exactly the mask its record's version stands for
  (masks encode their version, see :func:`mask_for`);
- no save the child reported as done was lost (version >= last reported);
- every earlier version kept in history/ is the right mask.

    python tests/corrections/durability_harness.py child DATASET
    python tests/corrections/durability_harness.py concurrent DATASET PREFIX N
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from napari_polyp.corrections.dataset import CorrectionsDataset, decode_mask, read_manifest, sha256_bytes

SHAPE = (24, 32)
ITEM = "item"


def mask_for(version: int) -> np.ndarray:
    """A mask that encodes its version: the first ``version`` pixels (raster order) are object."""
    flat = np.zeros(SHAPE[0] * SHAPE[1], np.uint8)
    flat[: version % flat.size] = 1
    return flat.reshape(SHAPE)


def image_for(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*SHAPE, 3), dtype=np.uint8)


def version_of(mask: np.ndarray) -> int:
    return int(np.count_nonzero(mask))


# --------------------------------------------------------------------------- children


def child_save_loop(root: str) -> None:
    """Save forever: the item again and again, and now and then a new item."""
    dataset = CorrectionsDataset(root)
    print("ready", flush=True)
    step = 0
    while True:
        current = dataset.get(ITEM)
        version = (current.version if current else 0) + 1
        record = dataset.save(image_for(0), mask_for(version), stem=ITEM, predicted=mask_for(0),
                              model="test", threshold=0.5, status="corrected", note=f"v{version}")
        print(f"saved {record.version}", flush=True)
        step += 1
        if step % 3 == 0:
            stem = f"new{os.getpid()}-{step}"
            dataset.save(image_for(step), mask_for(7), stem=stem, status="accepted")
            print(f"new {stem}", flush=True)


def child_concurrent(root: str, prefix: str, count: int, start_file: Optional[str] = None) -> None:
    """Save ``count`` own items and ``count`` versions of the shared item."""
    dataset = CorrectionsDataset(root)
    if start_file:  # start together with the other writer
        deadline = time.time() + 30
        while not os.path.exists(start_file) and time.time() < deadline:
            time.sleep(0.005)
    for i in range(count):
        dataset.save(image_for(i), mask_for(i + 1), stem=f"{prefix}{i}", status="accepted", note=prefix)
        dataset.save(image_for(0), mask_for(i + 1), stem="shared", status="corrected", note=f"{prefix}{i}")
    print("done", flush=True)


# --------------------------------------------------------------------------- checks


def check_dataset(root: str, last_confirmed: int = 0) -> List[str]:
    """Problems found in the dataset after a kill (an empty list = it survived)."""
    problems: List[str] = []
    dataset = CorrectionsDataset(root)
    try:
        records, _torn = read_manifest(dataset.manifest_path)
        raw_lines = dataset.manifest_path.read_bytes().split(b"\n")[:-1] if dataset.manifest_path.exists() else []
        if len(records) != len([line for line in raw_lines if line.strip()]):
            problems.append("a complete manifest line did not parse")
        latest: Dict[str, object] = dataset.latest()
    except Exception as err:  # noqa: BLE001  (anything here means "unreadable")
        return [f"dataset unreadable: {type(err).__name__}: {err}"]
    for stem, record in latest.items():
        try:
            image, mask, _ = dataset.load(stem)
        except Exception as err:  # noqa: BLE001
            problems.append(f"{stem}: cannot load ({type(err).__name__}: {err})")
            continue
        if image.shape[:2] != mask.shape:
            problems.append(f"{stem}: image and mask shapes differ")
        if stem == ITEM and version_of(mask) != record.version:
            problems.append(f"{stem}: record says version {record.version}, mask is version {version_of(mask)}")
    item = latest.get(ITEM)
    if last_confirmed and (item is None or item.version < last_confirmed):
        have = item.version if item else None
        problems.append(f"lost a confirmed save: child reported version {last_confirmed}, dataset has {have}")
    if item is not None:
        for version, path in dataset.history(ITEM):
            if version >= item.version:
                continue
            try:
                kept = decode_mask(path.read_bytes())
            except Exception as err:  # noqa: BLE001
                problems.append(f"history {path.name} unreadable ({err})")
                continue
            if version_of(kept) != version:
                problems.append(f"history {path.name} holds version {version_of(kept)}")
        if item.version > 1 and not (dataset.history_dir(ITEM) / f"{item.version - 1}.png").exists():
            problems.append(f"previous good mask (version {item.version - 1}) missing from history")
    return problems


# --------------------------------------------------------------------------- the kill loop


def _child_command(*args: str) -> List[str]:
    return [sys.executable, str(Path(__file__).resolve()), *args]


def _child_env(extra: Optional[dict] = None) -> dict:
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = package_root + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("NAPARI_POLYP_REVIEWER", "durability-test")
    env.update(extra or {})
    return env


def kill_once(root: str, rng: random.Random) -> Dict[str, object]:
    """Start a saving child, SIGKILL it at a random moment of its saves, check the dataset.

    The moment is chosen relative to the child's own pace (a loaded machine makes
    saves slower): after 0, 1 or 2 completed saves, then a random fraction of
    1.5x the time one save took."""
    proc = subprocess.Popen(_child_command("child", root), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=_child_env(), text=True)
    assert proc.stdout is not None
    first = proc.stdout.readline()
    if first.strip() != "ready":
        proc.kill()
        _, err = proc.communicate()
        raise RuntimeError(f"the saving child did not start: {first!r} {err[-2000:]}")
    lines: List[str] = []
    wait_for = rng.randint(0, 2)
    last = time.perf_counter()
    pace = 0.05
    while sum(line.startswith("saved ") for line in lines) < wait_for:
        line = proc.stdout.readline()
        if not line:
            break
        now = time.perf_counter()
        if line.startswith("saved "):
            pace = now - last
            last = now
        lines.append(line)
    time.sleep(rng.uniform(0.0, 1.5 * pace))
    os.kill(proc.pid, signal.SIGKILL)
    out, _ = proc.communicate()
    lines.extend(out.splitlines())
    confirmed = [int(line.split()[1]) for line in lines if line.startswith("saved ")]
    last_confirmed = max(confirmed) if confirmed else 0
    problems = check_dataset(root, last_confirmed)
    return {"saves_done": len(confirmed), "last_confirmed": last_confirmed, "problems": problems,
            "killed": proc.returncode == -signal.SIGKILL}


def run_crash_point(root: str, point: str) -> subprocess.CompletedProcess:
    """One save in a child that dies (os._exit) at a named point of the save."""
    code = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parent)!r}); "
        "from durability_harness import *; "
        "from napari_polyp.corrections.dataset import CorrectionsDataset; "
        "ds = CorrectionsDataset(sys.argv[1]); cur = ds.get(ITEM); v = (cur.version if cur else 0) + 1; "
        "ds.save(image_for(0), mask_for(v), stem=ITEM, status='corrected'); "
        "ds.save(image_for(5), mask_for(3), stem='fresh' + str(v), status='accepted')"
    )
    return subprocess.run([sys.executable, "-c", code, root], env=_child_env({"NAPARI_POLYP_CRASH_AT": point}),
                          capture_output=True, text=True, timeout=120)


def run_kills(root: str, kills: int, seed: int = 0, verbose: bool = False) -> Dict[str, object]:
    rng = random.Random(seed)
    dataset = CorrectionsDataset(root)
    if dataset.get(ITEM) is None:
        dataset.save(image_for(0), mask_for(1), stem=ITEM, status="corrected")
    survived, failures, saves = 0, [], 0
    traces: Dict[str, int] = {}
    for trial in range(kills):
        result = kill_once(root, rng)
        saves += int(result["saves_done"])
        for kind in interrupted_save_traces(dataset):
            traces[kind] = traces.get(kind, 0) + 1
        if result["problems"]:
            failures.append((trial, result["problems"]))
            if verbose:
                print(f"kill {trial}: {result['problems']}", flush=True)
        else:
            survived += 1
        if verbose and (trial + 1) % 25 == 0:
            print(f"{trial + 1} kills, {survived} survived, {saves} saves completed", flush=True)
    final = check_dataset(root)
    repaired = dataset.repair()
    after_repair = check_dataset(root)
    return {"kills": kills, "survived": survived, "failures": failures, "saves_completed": saves,
            "traces": traces, "final_problems": final + after_repair, "repair": repaired,
            "items": len(dataset), "item_version": dataset.get(ITEM).version}


def interrupted_save_traces(dataset: CorrectionsDataset) -> List[str]:
    """What a kill left behind mid-save (evidence the kill hit inside a save)."""
    found = []
    if read_manifest(dataset.manifest_path)[1]:
        found.append("torn manifest line")
    record = dataset.get(ITEM)
    if record is not None and record.mask_sha256:
        path = dataset.root / record.mask
        if path.exists() and sha256_bytes(path.read_bytes()) != record.mask_sha256:
            found.append("mask file ahead of its record")
    if any(p.name.startswith(".tmp-") for p in dataset.root.rglob(".tmp-*")):
        found.append("temporary file")
    if not found:
        found.append("clean (between saves)")
    return found


def main(argv: List[str]) -> int:
    if argv[:1] == ["child"]:
        child_save_loop(argv[1])
    elif argv[:1] == ["concurrent"]:
        child_concurrent(argv[1], argv[2], int(argv[3]), argv[4] if len(argv) > 4 else None)
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
