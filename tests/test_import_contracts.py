"""The floor plan in .importlinter holds: the networks stand alone, io is low, only the widgets
and the app touch Qt, no two sibling modules import each other (import-linter checks it)."""
import configparser
import pkgutil
import sys
from pathlib import Path

from importlinter import cli as importlinter  # setup.cfg's test extra

import napari_polyp

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / ".importlinter"
GUI = {"napari_polyp.widgets", "napari_polyp.app"}


def test_every_import_contract_is_kept(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys, "path", list(sys.path))  # lint_imports puts the working folder first
    status = importlinter.lint_imports(str(CONFIG), no_cache=True, no_logo=True)
    assert status == importlinter.EXIT_STATUS_SUCCESS, capsys.readouterr().out


def test_the_qt_contract_covers_every_module_but_the_gui():
    # a module added to napari_polyp is held to "no Qt" from the start: it must be listed
    config = configparser.ConfigParser()
    config.read(CONFIG)
    listed = set(config["importlinter:contract:headless-without-qt"]["source_modules"].split())
    modules = {f"napari_polyp.{module.name}" for module in pkgutil.iter_modules(napari_polyp.__path__)}
    assert listed == (modules - GUI) | {"models"}
