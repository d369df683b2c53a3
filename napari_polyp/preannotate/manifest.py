"""The run manifest: which chunks of a run are done, which failed. It makes a run resumable.

``<out>/predict-run.jsonl`` (``predict-run.part<K>of<N>.jsonl`` for ``--parts N --part K``), one
JSON object a line: first the run's identity (network, checkpoint sha256, threshold, TTA,
probabilities, engine, chunk size, the inputs), then one record per chunk as it finishes
(``{"chunk": id, "status": "done" | "failed", ...}``; the last record of a chunk counts). Only
the driver writes it, appending a line and flushing it when a chunk's result arrives, so a
``kill -9`` of the driver loses at most the chunks in flight and at worst a torn last line,
which the next run drops. A lock beside it keeps two runs from writing one manifest at once.

A second run with the same identity skips the chunks recorded done (whose outputs are still
there) and runs the rest, failed ones included. A manifest of another identity is refused
unless ``--overwrite`` starts it over.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Dict, List, Optional

from ..errors import UserError

FORMAT = 1
NAME = "predict-run"
FSYNC_EVERY_S = 2.0


def manifest_path(out: Path, parts: Optional[int] = None, part: Optional[int] = None) -> Path:
    if parts is None:
        return Path(out) / f"{NAME}.jsonl"
    return Path(out) / f"{NAME}.part{part}of{parts}.jsonl"


def _differences(old: dict, new: dict) -> List[str]:
    """What differs between two identities, in words."""
    words = []
    for key in sorted(set(old) | set(new)):
        if key == "inputs" or old.get(key) == new.get(key):
            continue
        words.append(f"{key} {old.get(key)!r} there, {new.get(key)!r} now")
    before, now = set(old.get("inputs", [])), set(new.get("inputs", []))
    if before != now:
        parts = []
        if now - before:
            parts.append(f"{len(now - before)} input(s) it does not have (e.g. {sorted(now - before)[0]})")
        if before - now:
            parts.append(f"{len(before - now)} of its inputs not given now (e.g. {sorted(before - now)[0]})")
        words.append("other inputs: " + "; ".join(parts))
    return words


class RunManifest:
    """The journal of one run (see the module docstring). Use :meth:`start`."""

    def __init__(self, path: Path, identity: dict, records: Dict[str, dict], resumed: bool, lock):
        self.path = Path(path)
        self.identity = identity
        self.records = records  # chunk id -> its last record
        self.resumed = resumed  # an earlier run's records were read
        self._lock = lock
        self._file = None
        self._last_sync = time.monotonic()

    @classmethod
    def start(cls, path: Path, identity: dict, overwrite: bool = False) -> "RunManifest":
        """Open the manifest at ``path`` for a run of ``identity`` (plain JSON values): resume the
        one there when it is the same run, start a new one where there is none (or with
        ``overwrite``), refuse another run's."""
        from filelock import FileLock, Timeout

        path = Path(path)
        identity = json.loads(json.dumps(identity, sort_keys=True))
        lock = FileLock(str(path.with_name(f".{path.name}.lock")))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise UserError(f"{path} is being written by another predict run (its lock is held): "
                            "wait for it, or use another --out") from None
        try:
            header, records = cls._read(path)
            if header is not None and header.get("identity") != identity and not overwrite:
                raise UserError(
                    f"{path.parent} holds the manifest of another run ({'; '.join(_differences(header.get('identity') or {}, identity))}): "
                    "run it again with the same inputs and settings to resume it, choose another --out, "
                    "or pass --overwrite to start over")
            resumed = header is not None and header.get("identity") == identity
            manifest = cls(path, identity, records if resumed else {}, resumed, lock)
            manifest._open_for_append(fresh=not resumed)
            return manifest
        except BaseException:
            lock.release()
            raise

    @staticmethod
    def _read(path: Path):
        """(header or None, {chunk id: last record}); lines that do not parse (a torn last line
        after a kill) are dropped."""
        try:
            lines = path.read_bytes().split(b"\n")
        except FileNotFoundError:
            return None, {}
        except OSError as err:
            raise UserError(f"{path}: the run manifest cannot be read ({err.strerror or err})") from None
        header, records = None, {}
        for number, line in enumerate(lines):
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if not isinstance(entry, dict):
                continue
            if number == 0 and entry.get("manifest") == NAME:
                header = entry
            elif header is not None and isinstance(entry.get("chunk"), str):
                records[entry["chunk"]] = entry
        if header is None and any(line.strip() for line in lines):
            raise UserError(f"{path} is not a predict run manifest (its first line is not one): "
                            "move it away, or pass --overwrite to replace it")
        return header, records

    def _open_for_append(self, fresh: bool) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if fresh:
            header = {"manifest": NAME, "format": FORMAT, "identity": self.identity,
                      "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
            tmp.write_text(json.dumps(header, sort_keys=True) + "\n")
            os.replace(tmp, self.path)
        else:  # drop a torn last line: the next record starts on a line of its own
            data = self.path.read_bytes()
            end = data.rfind(b"\n") + 1
            if end < len(data):
                with open(self.path, "r+b") as fh:
                    fh.truncate(end)
        self._file = open(self.path, "ab")

    def done(self, chunk: str) -> bool:
        record = self.records.get(chunk)
        return record is not None and record.get("status") == "done"

    def record(self, entry: dict) -> None:
        """Append one chunk's record (``chunk``, ``status`` and anything else), flushed at once and
        fsynced every couple of seconds (a kill of the process loses nothing flushed)."""
        self.records[entry["chunk"]] = entry
        self._file.write(json.dumps(entry, sort_keys=True).encode() + b"\n")
        self._file.flush()
        if time.monotonic() - self._last_sync > FSYNC_EVERY_S:
            os.fsync(self._file.fileno())
            self._last_sync = time.monotonic()

    def close(self) -> None:
        if self._file is not None:
            try:
                self._file.flush()
                os.fsync(self._file.fileno())
            finally:
                self._file.close()
                self._file = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
