"""Fixtures of the `predict` archive tests (helpers in archive_tools.py)."""
import json

import pytest


@pytest.fixture(scope="module")
def onnx_home(tmp_path_factory):
    """One NAPARI_POLYP_HOME for a module: the shipped network's graph is exported once."""
    return tmp_path_factory.mktemp("napari-polyp-home")


@pytest.fixture
def shared_home(onnx_home, monkeypatch):
    monkeypatch.setenv("NAPARI_POLYP_HOME", str(onnx_home))
    monkeypatch.setenv("NAPARI_POLYP_ENGINE", "auto")  # ONNX Runtime on this CPU, as users run it
    return onnx_home


@pytest.fixture
def run_predict(capsys):
    """run_predict(*args) -> (exit status, the --json summary or None, stderr)."""
    from napari_polyp.cli import main

    def run(*args):
        capsys.readouterr()
        status = main(["predict", "--model", "microaunet", "--quiet", "--json", *map(str, args)])
        captured = capsys.readouterr()
        lines = captured.out.strip().splitlines()
        summary = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else None
        return status, summary, captured.err

    return run
