"""tools/gpu_session.py: every run it launches is a command line the project's parser accepts."""
import importlib.util
from pathlib import Path

import pytest

from napari_polyp.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]


def _session():
    spec = importlib.util.spec_from_file_location("gpu_session", ROOT / "tools" / "gpu_session.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", list(_session().RUNS))
def test_each_run_is_a_valid_command(name):
    session = _session()
    argv = session.command(name, minutes=7.5)[3:]  # after "python -m napari_polyp.cli"
    args = build_parser(only=argv[0]).parse_args(argv)
    assert args.command == argv[0]
    assert "7.5" in argv  # the time budget reaches every run
