"""A disk that fills up during fine-tuning (issue 25): one line, not a traceback, and no
temporary file left behind."""
import errno

import pytest


def test_a_full_disk_is_one_line(monkeypatch, capsys, tmp_path):
    from napari_polyp import cli
    from napari_polyp.commands import finetune as finetune_command

    def disk_full(args):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out" / "best.pt"))

    monkeypatch.setattr(finetune_command, "run", disk_full)
    code = cli.main(["finetune", "--data", str(tmp_path), "--model", "microaunet"])
    err = capsys.readouterr().err
    assert code == 2 and "the disk is full" in err and "best.pt" in err and "Traceback" not in err


def test_a_training_state_cut_short_by_a_full_disk_leaves_no_temporary(monkeypatch, tmp_path):
    import torch

    from napari_polyp.training import trainer

    def full(obj, path, *args, **kwargs):
        with open(path, "wb") as fh:
            fh.write(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(OSError):
        trainer._save_state(tmp_path, {"epoch": 1})
    assert list(tmp_path.iterdir()) == []
