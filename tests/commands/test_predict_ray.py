"""`napari-polyp predict --cluster` on a real local Ray (2 CPUs, one per module): the same
outputs as one process, bit for bit; a worker killed mid-run; kill -9 of the driver, then a
second run; an address where nothing answers."""
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from . import archive_tools as tools

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # read at import: Ray on 127.0.0.1 only
ray = pytest.importorskip("ray", reason="Ray cannot be imported here: pip install 'ray[data]' (the test extras)")
pytest.importorskip("ray.data", reason="Ray Data cannot be imported here: pip install 'ray[data]'")

REPO = Path(__file__).resolve().parents[2]
WORKER = "MapWorker(MapBatches(_RayChunkPredictor))"


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def _workers() -> list:
    import psutil

    found = []
    for process in psutil.Process().children(recursive=True):
        try:
            if WORKER in " ".join(process.cmdline()):
                found.append(process)
        except psutil.Error:
            pass
    return found


def _wait_for_done(manifest: Path, count: int, alive=lambda: True, timeout: float = 120.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive():
        if manifest.is_file() and manifest.read_text().count('"status": "done"') >= count:
            return True
        time.sleep(0.005)
    return False


def test_ray_outputs_equal_one_process_bit_for_bit(tmp_path, shared_home, run_predict, local_ray, monkeypatch):
    from napari_polyp.preannotate import on_ray

    monkeypatch.setattr(on_ray, "WINDOW", 4)  # 11 chunks: three datasets, one after the other
    archive = tools.make_archive(tmp_path / "archive")
    one, on_ray = tmp_path / "one", tmp_path / "ray"
    assert run_predict(archive, "--out", one, "--chunk-frames", 4, "--probability")[0] == 0
    status, summary, err = run_predict(archive, "--out", on_ray, "--chunk-frames", 4, "--probability",
                                       "--cluster", "ray", "--workers", 2)
    assert status == 0, err
    assert summary["cluster"] == "ray" and summary["workers"] == 2 and summary["done_now"] == 11
    assert summary["engine"] == "onnxruntime" and summary["peak_rss_mb_per_worker"]
    assert all(0 < mb < 2000 for mb in summary["peak_rss_mb_per_worker"].values())
    assert {r["worker"] for r in tools.manifest_records(on_ray)}.isdisjoint({f"{socket.gethostname()}:{os.getpid()}"})
    tools.assert_same_outputs(tools.read_outputs(one), tools.read_outputs(on_ray))


def test_a_worker_killed_mid_run_is_restarted_and_the_run_completes(tmp_path, shared_home, run_predict, local_ray):
    video = tools.make_video(tmp_path / "in" / "clip.mp4", 60)
    reference, out = tmp_path / "reference", tmp_path / "out"
    assert run_predict(video, "--out", reference, "--chunk-frames", 2)[0] == 0
    killed = []

    def kill_one_worker():
        if _wait_for_done(out / "predict-run.jsonl", 1):
            workers = _workers()
            if workers:
                killed.append(workers[0].pid)
                os.kill(workers[0].pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_one_worker, daemon=True)
    killer.start()
    status, summary, err = run_predict(video, "--out", out, "--chunk-frames", 2, "--cluster", "ray", "--workers", 2)
    killer.join(5)
    assert killed, "no worker was running to be killed"
    assert status == 0, err
    assert summary["done_now"] == 30 and not summary["failed"]
    workers = {r["worker"].split(":")[1] for r in tools.manifest_records(out)}
    assert str(killed[0]) in workers or len(workers) >= 2  # the killed one had worked, or another took over
    tools.assert_same_outputs(tools.read_outputs(reference), tools.read_outputs(out))


def test_kill_9_of_the_driver_then_a_second_run(tmp_path, shared_home, run_predict, local_ray):
    video = tools.make_video(tmp_path / "in" / "clip.mp4", 60)
    reference, out = tmp_path / "reference", tmp_path / "out"
    assert run_predict(video, "--out", reference, "--chunk-frames", 2)[0] == 0
    command = [sys.executable, "-m", "napari_polyp.cli", "predict", "--model", "microaunet", str(video),
               "--out", str(out), "--chunk-frames", "2", "--quiet", "--json",
               "--cluster", local_ray, "--workers", "2"]  # joins this module's Ray, as a driver of its own
    driver = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              env=dict(os.environ))
    reached = _wait_for_done(out / "predict-run.jsonl", 2, alive=lambda: driver.poll() is None)
    assert reached and driver.poll() is None, "the driver ended first: " + driver.stderr.read().decode()[-800:]
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait(30)
    done = [r["chunk"] for r in tools.manifest_records(out) if r["status"] == "done"]
    assert 2 <= len(done) < 30
    from napari_polyp.io.mask_store import MaskStore

    store = MaskStore.open(out / "clip.zarr")
    frames = [f for chunk in done for f in range(*(int(v) for v in chunk.split("#")[1].split("-")))]
    kept = {f: store.frame_file(f).stat().st_mtime_ns for f in frames}
    status, summary, err = run_predict(video, "--out", out, "--chunk-frames", 2, "--cluster", "ray", "--workers", 2)
    assert status == 0, err
    assert summary["done_before"] == len(done) and summary["done_now"] == 30 - len(done)
    assert {f: store.frame_file(f).stat().st_mtime_ns for f in frames} == kept  # nothing done was recomputed
    tools.assert_same_outputs(tools.read_outputs(reference), tools.read_outputs(out))


def test_a_cluster_address_where_nothing_answers_is_one_line(tmp_path):
    tools.make_archive(tmp_path / "archive", videos=())
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]  # closed again: nothing listens there
    command = [sys.executable, "-m", "napari_polyp.cli", "predict", "--model", "microaunet", str(tmp_path / "archive"),
               "--out", str(tmp_path / "out"), "--cluster", f"ray://127.0.0.1:{port}"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    lines = [line for line in result.stderr.strip().splitlines() if "predict" in line]
    assert lines == [f"napari-polyp predict: error: --cluster ray://127.0.0.1:{port}: nothing answers at "
                     f"127.0.0.1:{port} (Connection refused); is the Ray head running there (ray start --head)?"]
    assert "Traceback" not in result.stderr


def test_the_second_opinion_travels_to_the_ray_workers(tmp_path, shared_home, run_predict, local_ray):
    """--second-opinion: each worker gets both networks' graphs from the spec; the same masks as one process."""
    import numpy as np
    from PIL import Image

    folder = tmp_path / "frames"
    folder.mkdir()
    for seed in range(2):
        image = np.random.default_rng(seed).integers(60, 140, (64, 80, 3), dtype=np.uint8)
        image[16:44, 20:56] = (205, 125, 115)
        Image.fromarray(image).save(folder / f"{seed}.png")
    one, on_ray = tmp_path / "one", tmp_path / "ray"
    assert run_predict(folder, "--out", one, "--second-opinion")[0] == 0
    status, summary, err = run_predict(folder, "--out", on_ray, "--second-opinion", "--cluster", "ray", "--workers", 1)
    assert status == 0, err
    assert summary["second_opinion"]["model"] == "dino-keys" and summary["done_now"] == 2
    tools.assert_same_outputs(tools.read_outputs(one), tools.read_outputs(on_ray))
