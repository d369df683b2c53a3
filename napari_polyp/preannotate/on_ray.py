"""Chunks on Ray Data: a dataset of chunks, ``map_batches`` over an actor pool of
:class:`~napari_polyp.preannotate.worker.ChunkPredictor` (one network per actor, loaded once).

Imported only with ``--cluster``. Each chunk is its own block, so its record reaches the driver
as soon as its worker is done (the driver writes it into the manifest): a dead driver loses
only the chunks in flight. A worker process that dies is restarted by Ray and its chunk run
again (Ray Data's actors have ``max_restarts=-1`` and ``max_task_retries=-1``); a chunk that
fails inside the worker is a record, not a retry. Frames are written by the workers straight
into the shared output folder, so every node must see the inputs and ``--out`` at the same
paths (a shared file system), and have napari-polyp installed.
"""
from __future__ import annotations

import json
import logging
import os
import socket
from typing import Callable, List, Optional
from urllib.parse import urlparse

from ..errors import UserError
from .worker import ChunkPredictor, PredictorSpec

# Read when ray is imported: "0" makes a Ray started here listen on 127.0.0.1 instead of the
# machine's network address (Ray's name for it speaks of Windows and macOS, where it is the default).
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
WINDOW = 5000  # chunks per dataset execution: bounds the blocks Ray Data holds at once
CONNECT_TIMEOUT_S = 5.0


def ray_problem() -> str:
    """"" when Ray Data can be imported, else why not (one line)."""
    try:
        import ray  # noqa: F401
        import ray.data  # noqa: F401
    except Exception as err:  # noqa: BLE001 -- a broken install is as good as none
        return (f"Ray cannot be imported ({type(err).__name__}: {err}); "
                "install it with: pip install 'napari-polyp[ray]' (or pip install 'ray[data]')")
    return ""


def _address_answers(cluster: str) -> None:
    """For ``ray://HOST:PORT`` and ``HOST:PORT``: a TCP connection within a few seconds, else one
    line (Ray itself would retry for half a minute and then print pages)."""
    parsed = urlparse(cluster if "://" in cluster else f"tcp://{cluster}")
    host, port = parsed.hostname, parsed.port
    if not host or not port:
        raise UserError(f"--cluster {cluster}: not an address; give ray (a local Ray), auto (the running "
                        "cluster) or ray://HOST:PORT")
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise UserError(f"--cluster {cluster}: nothing answers at {host}:{port} ({reason}); "
                        "is the Ray head running there (ray start --head)?") from None


def connect(cluster: str, num_cpus: Optional[int] = None) -> dict:
    """Start a local Ray (``ray``) or join a cluster (``auto``, ``ray://HOST:PORT``, ``HOST:PORT``).
    A Ray this process has started already is used as it is. Returns {"cluster", "cpus", "gpus",
    "nodes", "started"} (started: whether this call started or joined it, so the caller shuts
    it down)."""
    if cluster == "ray":  # a private local Ray on the loopback address: nothing outside this machine reaches it
        os.environ.setdefault(LOOPBACK_ENV, "0")
    problem = ray_problem()
    if problem:
        raise UserError(problem)
    import ray

    started = False
    if not ray.is_initialized():
        if cluster not in ("ray", "auto"):
            _address_answers(cluster)
        options = dict(include_dashboard=False, logging_level=logging.WARNING, log_to_driver=True)
        try:
            if cluster == "ray":
                ray.init(num_cpus=num_cpus, **options)
            else:
                ray.init(address=cluster, **options)
        except ConnectionError as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise UserError(f"--cluster {cluster}: cannot join a Ray cluster ({first})") from None
        except Exception as err:  # noqa: BLE001 -- any failure to start or join is said in one line
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise UserError(f"--cluster {cluster}: Ray did not start ({type(err).__name__}: {first})") from None
        started = True
    _quiet_ray_data()
    resources = ray.cluster_resources()
    return {"cluster": cluster, "cpus": float(resources.get("CPU", 0)), "gpus": float(resources.get("GPU", 0)),
            "nodes": len([n for n in ray.nodes() if n.get("Alive")]), "started": started}


def _quiet_ray_data() -> None:
    """Our own progress bar and records; Ray Data's bars and per-dataset log lines off."""
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    for name in ("ray.data", "ray.data._internal.execution.streaming_executor"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "Progress bars disabled": ours


def shutdown() -> None:
    import ray

    ray.shutdown()


def run_chunks(chunks: List[dict], spec: PredictorSpec, on_record: Callable[[dict], None], *, threshold: float,
               probability: bool, workers: int, cpus_per_worker: float, gpus_per_worker: float = 0.0,
               threads: Optional[int] = None, window: Optional[int] = None) -> None:
    """Run ``chunks`` on ``workers`` actors; ``on_record(record)`` on the driver as each finishes
    (``window``: chunks per dataset execution, default :data:`WINDOW`)."""
    import ray
    import ray.data

    window = max(1, int(window or WINDOW))

    threads = threads or max(1, int(round(cpus_per_worker)))
    spec_ref = ray.put(spec)  # the graph travels once to each node's object store, not once per actor
    for begin in range(0, len(chunks), window):
        part = chunks[begin:begin + window]
        dataset = ray.data.from_items([{"chunk": json.dumps(chunk)} for chunk in part], override_num_blocks=len(part))
        remote = {"num_gpus": gpus_per_worker} if gpus_per_worker else {}
        dataset = dataset.map_batches(
            _RayChunkPredictor, batch_size=1, batch_format="numpy",
            fn_constructor_kwargs={"spec_ref": [spec_ref], "threshold": threshold, "probability": probability,
                                   "threads": threads},
            compute=ray.data.ActorPoolStrategy(size=max(1, min(workers, len(part))), max_tasks_in_flight_per_actor=2),
            num_cpus=cpus_per_worker, **remote)
        for row in dataset.iter_rows():
            on_record(json.loads(row["record"]))


class _RayChunkPredictor(ChunkPredictor):
    """:class:`ChunkPredictor` built from a spec in Ray's object store (a list hides the reference
    from Ray's argument resolution, so a restarted actor fetches it again)."""

    def __init__(self, spec_ref, threshold: float, probability: bool, threads: Optional[int]):
        import ray

        super().__init__(ray.get(spec_ref[0]), threshold=threshold, probability=probability, threads=threads)
