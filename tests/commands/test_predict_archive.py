"""`napari-polyp predict` over an archive in one process: mask stores, the run manifest
(resume, kill -9, another run's manifest), --parts, bad input. The Ray side is
test_predict_ray.py."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from napari_polyp.io.mask_store import MaskStore
from napari_polyp.preannotate.manifest import RunManifest

from . import archive_tools as tools

REPO = Path(__file__).resolve().parents[2]


def _chunk_files(store: Path) -> dict:
    return {str(p): p.stat().st_mtime_ns for p in (store / "mask").glob("c.*")}


def test_videos_become_mask_stores_and_images_pngs(tmp_path, shared_home, run_predict):
    archive = tools.make_archive(tmp_path / "archive")
    out = tmp_path / "out"
    status, summary, err = run_predict(archive, "--out", out, "--chunk-frames", 4, "--probability", "--threshold", 0.4)
    assert status == 0, err
    assert summary["engine"] == "onnxruntime" and summary["done_now"] == summary["chunks"] == 5 + 3 + 3
    assert summary["frames"] == 18 + 10 + 3 and not summary["failed"] and not summary["unreadable"]
    assert sorted(p.name for p in (out / "stills").iterdir()) == \
        ["s0.png", "s0_prob.png", "s1.png", "s1_prob.png", "s2.png", "s2_prob.png"]
    store = MaskStore.open(out / "exam1" / "clip.zarr")  # the folder's layout is kept under --out
    attrs = store.attrs
    assert store.shape == (18, 48, 64) and store.written() == list(range(18)) and store.has_probabilities
    assert attrs["model"] == "microaunet" and attrs["engine"] == "onnxruntime" and attrs["threshold"] == 0.4
    assert attrs["tta"] is False and len(attrs["checkpoint_sha256"]) == 64
    assert attrs["source"] == os.path.abspath(archive / "exam1" / "clip.mp4") and attrs["frames"] == 18
    # the store holds what the app's own predictor says of each frame
    from napari_polyp.io.mask_store import probability_to_uint8
    from napari_polyp.io.video import VideoFrames
    from napari_polyp.inference.prediction import served_predictor

    predictor = served_predictor("microaunet")
    assert predictor is not None and predictor.checkpoint_sha256 == attrs["checkpoint_sha256"]
    frames = VideoFrames(archive / "exam1" / "clip.mp4")
    for index in (0, 7, 17):
        prediction = predictor.predict(frames[index], attention=False)
        assert np.array_equal(store.read(index), prediction.mask(0.4))
        assert np.array_equal(np.asarray(store._probability[index]), probability_to_uint8(prediction.probability))
    assert any(store.read(i).any() for i in range(18))  # the network finds the blob somewhere


def test_a_second_run_recomputes_nothing(tmp_path, shared_home, run_predict):
    archive = tools.make_archive(tmp_path / "archive")
    out = tmp_path / "out"
    assert run_predict(archive, "--out", out, "--chunk-frames", 4)[0] == 0
    before = _chunk_files(out / "clip2.zarr")
    png = (out / "stills" / "s1.png").stat().st_mtime_ns
    status, summary, _ = run_predict(archive, "--out", out, "--chunk-frames", 4)
    assert status == 0 and summary["done_now"] == 0 and summary["done_before"] == summary["chunks"] == 11
    assert _chunk_files(out / "clip2.zarr") == before and (out / "stills" / "s1.png").stat().st_mtime_ns == png


def test_an_unreadable_video_is_skipped_reported_and_retried_alone(tmp_path, shared_home, run_predict):
    archive = tools.make_archive(tmp_path / "archive")
    broken = archive / "exam1" / "broken.mp4"
    broken.write_text("not a video")
    out = tmp_path / "out"
    status, summary, err = run_predict(archive, "--out", out, "--chunk-frames", 4)
    assert status == 1
    assert [u["file"] for u in summary["unreadable"]] == [str(broken)] and summary["done_now"] == 11
    assert "broken.mp4" in err and "skipped 1 file(s)" in err and "Traceback" not in err
    assert not (out / "exam1" / "broken.zarr").exists()
    tools.make_video(broken, 6)  # fixed: the next run does that video and nothing else
    status, summary, err = run_predict(archive, "--out", out, "--chunk-frames", 4)
    assert status == 0, err
    assert summary["done_now"] == 2 and summary["done_before"] == 11
    assert MaskStore.open(out / "exam1" / "broken.zarr").written() == list(range(6))


def test_another_runs_manifest_is_refused_unless_overwrite(tmp_path, shared_home, run_predict):
    archive = tools.make_archive(tmp_path / "archive", videos=((Path("clip.mp4"), 6),))
    out = tmp_path / "out"
    assert run_predict(archive, "--out", out)[0] == 0
    status, summary, err = run_predict(archive, "--out", out, "--threshold", 0.3)
    assert status == 2 and summary is None
    assert "holds the manifest of another run" in err and "threshold 0.5 there, 0.3 now" in err
    assert len(err.strip().splitlines()) == 1 and "--overwrite" in err
    other = tools.make_archive(tmp_path / "other", videos=((Path("other.mp4"), 4),))
    status, _, err = run_predict(other, "--out", out)
    assert status == 2 and "other inputs" in err
    status, summary, _ = run_predict(archive, "--out", out, "--threshold", 0.3, "--overwrite")
    assert status == 0 and summary["done_now"] == summary["chunks"] == 4 and summary["done_before"] == 0
    assert MaskStore.open(out / "clip.zarr").attrs["threshold"] == 0.3


def test_parts_cover_every_input_exactly_once(tmp_path, shared_home, run_predict):
    archive = tools.make_archive(tmp_path / "archive", videos=((Path("a.mp4"), 5), (Path("b/b.mp4"), 4),
                                                               (Path("c.mp4"), 3)))
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert run_predict(archive, "--out", whole, "--chunk-frames", 2)[0] == 0
    seen = []
    for part in range(3):
        status, summary, _ = run_predict(archive, "--out", split, "--chunk-frames", 2, "--parts", 3, "--part", part)
        assert status == 0 and summary["part"] == [part, 3]
        seen += sorted({r["chunk"].split("#")[0] for r in tools.manifest_records(split, f"predict-run.part{part}of3.jsonl")})
    assert sorted(seen) == sorted(set(seen)) and len(seen) == 6  # 3 videos + 3 images, each in one part
    tools.assert_same_outputs(tools.read_outputs(whole), tools.read_outputs(split))
    status, _, err = run_predict(archive, "--out", split, "--parts", 3, "--part", 3)
    assert status == 2 and "--part must be from 0 to 2" in err


def test_kill_9_of_the_driver_then_a_second_run_recomputes_nothing_done(tmp_path, shared_home, run_predict):
    video = tools.make_video(tmp_path / "in" / "long.mp4", 80)
    out, reference = tmp_path / "out", tmp_path / "reference"
    assert run_predict(video, "--out", reference, "--chunk-frames", 2)[0] == 0  # also exports the graph once
    command = [sys.executable, "-m", "napari_polyp.cli", "predict", "--model", "microaunet", str(video),
               "--out", str(out), "--chunk-frames", "2", "--quiet", "--json"]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env=dict(os.environ))
    manifest = out / "predict-run.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if manifest.is_file() and manifest.read_text().count('"status": "done"') >= 3:
            break
        time.sleep(0.005)
    assert process.poll() is None, "the run ended before it could be killed: " + process.stderr.read().decode()[-500:]
    os.kill(process.pid, signal.SIGKILL)
    process.wait(30)
    done = [r["chunk"] for r in tools.manifest_records(out) if r["status"] == "done"]
    assert 3 <= len(done) < 40
    kept = _chunk_files(out / "long.zarr")
    status, summary, err = run_predict(video, "--out", out, "--chunk-frames", 2)
    assert status == 0, err
    assert summary["done_before"] == len(done) and summary["done_now"] == 40 - len(done)
    after, store = _chunk_files(out / "long.zarr"), MaskStore.open(out / "long.zarr")
    for chunk in done:  # frames of chunks recorded done were not written again
        start, stop = (int(v) for v in chunk.split("#")[1].split("-"))
        for frame in range(start, stop):
            key = str(store.frame_file(frame))
            assert after[key] == kept[key]
    tools.assert_same_outputs(tools.read_outputs(out), tools.read_outputs(reference))  # and nothing is lost


def test_without_cluster_ray_is_never_imported(tmp_path, shared_home):
    tools.make_archive(tmp_path / "archive", videos=((Path("clip.mp4"), 3),))
    code = ("import sys; from napari_polyp.cli import main; "
            f"status = main(['predict', '--model', 'microaunet', {str(tmp_path / 'archive')!r}, '--out', "
            f"{str(tmp_path / 'out')!r}, '--quiet', '--json']); "
            "print('RAY' if 'ray' in sys.modules else 'NO-RAY'); sys.exit(status)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "NO-RAY"


@pytest.mark.parametrize("args, words", [
    (["--workers", "2"], "--workers needs --cluster"),
    (["--parts", "2"], "--parts N and --part K go together"),
    (["--chunk-frames", "0"], "--chunk-frames must be 1 or more"),
])
def test_bad_run_arguments_are_one_line(tmp_path, run_predict, args, words):
    tools.make_archive(tmp_path / "archive", videos=())
    status, _, err = run_predict(tmp_path / "archive", "--out", tmp_path / "out", *args)
    assert status == 2 and words in err and len(err.strip().splitlines()) == 1


def test_the_manifest_drops_a_torn_last_line_and_keeps_the_last_record(tmp_path):
    path = tmp_path / "predict-run.jsonl"
    with RunManifest.start(path, {"model": "m"}) as manifest:
        manifest.record({"chunk": "a", "status": "failed", "error": "x"})
        manifest.record({"chunk": "a", "status": "done"})
        manifest.record({"chunk": "b", "status": "done"})
    with open(path, "ab") as fh:
        fh.write(b'{"chunk": "c", "stat')  # a kill -9 in the middle of a line
    with RunManifest.start(path, {"model": "m"}) as manifest:
        assert manifest.resumed and manifest.done("a") and manifest.done("b") and not manifest.done("c")
        manifest.record({"chunk": "c", "status": "done"})
    lines = path.read_text().splitlines()
    assert all(json.loads(line) for line in lines) and len(lines) == 5


def test_progress_lines_when_not_a_terminal():
    import io

    from napari_polyp.preannotate.progress import Progress

    stream = io.StringIO()
    progress = Progress(90_000, stream=stream, every_s=0.0, terminal=False)
    progress.update(1250)
    progress.close()
    first, last = stream.getvalue().splitlines()
    assert first.startswith("predict: 1,250 / 90,000 frames (1.4%), ") and "frames/s, about " in first
    assert first.endswith(" left") and last.startswith("predict: 1,250 / 90,000 frames") and " in " in last
    quiet = io.StringIO()
    Progress(10, quiet=True, stream=quiet, every_s=0.0).update(5)
    assert quiet.getvalue() == ""
