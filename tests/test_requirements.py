"""The package installs into a user's napari as it is (issue 30): its requirements name no Qt
binding (napari's guidance: a plugin leaves the binding to the user) and put no upper bound on
napari. The app's own install pins both (constraints.txt, tools/setup.sh)."""
import configparser
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
QT_BINDINGS = {"pyqt5", "pyqt6", "pyside2", "pyside6"}


def _install_requires():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    lines = config["options"]["install_requires"].splitlines()
    return [Requirement(line) for line in lines if line.strip() and not line.strip().startswith("#")]


def test_the_requirements_name_no_qt_binding():
    names = {req.name.lower() for req in _install_requires()}
    assert "napari" in names and "qtpy" in names
    assert not names & QT_BINDINGS


def test_napari_has_no_upper_bound():
    (napari,) = [req for req in _install_requires() if req.name.lower() == "napari"]
    assert not [spec for spec in napari.specifier if spec.operator in ("<", "<=", "==", "~=", "===")]


def test_the_apps_own_install_pins_pyqt5_and_napari_below_0_10():
    pins = {Requirement(line).name.lower(): Requirement(line).specifier
            for line in (ROOT / "constraints.txt").read_text().splitlines() if line and not line.startswith("#")}
    assert "0.10" not in pins["napari"] and pins["napari"].contains("0.9.2")
    assert "pyqt5" in pins
    assert "PyQt5" in (ROOT / "tools" / "setup.sh").read_text()
