"""Each run of the suite uses the Qt binding it asked for.

``.ci/run`` runs the Qt tests a second time with ``QT_API=pyqt6`` (napari 0.9's PyQt6 stack);
a second run that silently fell back to PyQt5 would prove nothing, and pytest-qt on one
binding with napari on the other would start two Qt libraries in one process.
"""
import sys

import pytest

qtpy = pytest.importorskip("qtpy")


def test_qtpy_uses_the_binding_qt_api_asks_for():
    # what QT_API named when qtpy was first imported (unset: "pyqt5", the app's binding); not
    # os.environ: qtpy rewrites QT_API to the binding it took, e.g. one pytest-qt loaded first
    asked = qtpy.initial_api
    assert qtpy.API_NAME.lower() == asked, f"QT_API asked for {asked}, qtpy runs {qtpy.API_NAME}"


def test_one_qt_binding_is_loaded():
    assert len({"PyQt5", "PyQt6", "PySide2", "PySide6"} & set(sys.modules)) == 1


def test_pytest_qt_drives_the_binding_napari_uses():
    from pytestqt.qt_compat import qt_api

    assert qt_api.pytest_qt_api == qtpy.API_NAME.lower()


def test_the_viewer_runs_on_that_binding(make_napari_viewer):
    from qtpy.QtWidgets import QApplication, QMainWindow

    viewer = make_napari_viewer()
    assert isinstance(viewer.window._qt_window, QMainWindow)  # a window of the other binding is not
    assert type(QApplication.instance()).__module__.split(".")[0] == qtpy.API_NAME
