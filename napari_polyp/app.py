"""napari with the Segment widget docked, a sample image and the default model: what
``napari-polyp app`` opens (:func:`launch`; its arguments: :mod:`napari_polyp.commands.app`).

Cold start: the network is built (ONNX graph loaded, one warm-up run) in a background
thread started before napari is imported, so both start together; the app presses Run
once the window is up (not with ``segment=False``), and the mask appears when the network is
ready. From the second start on, the network runs straight from the ONNX graph the first
start exported, and torch is not imported at all (``napari_polyp.inference.prediction``).
``benchmarks/cold_start.py`` measures command -> first mask.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

from .conventions import PRE_ANNOTATION, ROLE

MODEL_TAB = 1  # the Workspace's tab that holds the Segment widget
SAMPLES = {"colonoscopy": "colonoscopy", "dermoscopy": "dermoscopy"}  # task -> napari.yaml sample key


def _layer_data(path):
    from .errors import InputFileError
    from .io.readers import get_reader

    if not Path(path).exists():
        raise InputFileError(path, "does not exist")
    reader = get_reader(str(path))
    if reader is None:
        raise InputFileError(path, "is not an image (png/jpg/bmp/tif), a folder of images or a video (mp4/avi/mov/mkv)")
    return reader(str(path))


def open_app(viewer, image=None, model: Optional[str] = None, device: str = "auto", layer_data=None,
             task: str = "colonoscopy"):
    """Load the image (or the task's sample) into ``viewer``, dock the Workspace on its Model
    tab, select ``model`` (default: ``models.default_model(task)``).

    ``layer_data``: the image already read (else ``image`` is read here). Returns the Workspace's
    SegmentWidget (the Model tab).
    """
    import models
    from napari.layers import Layer

    model = model or models.default_model(task)
    models.check_model_name(model)
    if image is None and layer_data is None:
        viewer.open_sample("napari-polyp", SAMPLES[task])
    else:
        for data in layer_data if layer_data is not None else _layer_data(image):
            viewer.add_layer(Layer.create(*data))
    dock, workspace = viewer.window.add_plugin_dock_widget("napari-polyp", "Workspace")
    fit_window(viewer, dock)  # inside the screen's available area, the canvas keeps its share
    workspace.tabs.setCurrentIndex(MODEL_TAB)  # the opened image and its mask, before any folder is chosen
    widget = workspace.segment
    widget.task_combo.setCurrentText(task)
    widget.model_combo.setCurrentText(model)
    widget.device_combo.setCurrentText(device)
    if widget.image_combo.count():  # the combo lists the images the widget can segment, in layer order
        widget.image_combo.setCurrentIndex(0)
    return widget


PLUGIN = "napari-polyp"


def reader_patterns() -> list:
    """The file name patterns the plugin's reader takes (from its napari.yaml)."""
    from npe2 import PluginManifest

    manifest = PluginManifest.from_file(Path(__file__).with_name("napari.yaml"))
    return [pattern for reader in manifest.contributions.readers or () for pattern in reader.filename_patterns]


def prefer_plugin_reader(settings=None, patterns=None) -> list:
    """Make the plugin's reader the one napari uses for its file types (napari's preferred-reader
    setting, Preferences ▸ Plugins), so File ▸ Open does not ask "Choose reader" with napari's
    builtins preselected (they read a whole video into memory). A type the user gave another
    reader keeps it. Returns the patterns set now."""
    if settings is None:
        from napari.settings import get_settings

        settings = get_settings()
    current = dict(settings.plugins.extension2reader)
    added = [pattern for pattern in (patterns if patterns is not None else reader_patterns())
             if pattern not in current]
    if added:
        settings.plugins.extension2reader = {**current, **{pattern: PLUGIN for pattern in added}}
    return added


WINDOW = (1400, 900)  # the window's size where the screen has room for it
NARROW_SCREEN = 1280  # below this width the side panels are made narrower for the canvas's sake


def window_plan(available_width: int, available_height: int, frame=(0, 0)) -> dict:
    """Sizes for a screen whose available area (without task bars) is the given one: the
    window inside it (``frame``: the window manager's border and title bar, added outside the
    window's own size), napari's layer panel and the Workspace dock, leaving the rest to the
    canvas. Pure arithmetic, so the rule is testable without a screen."""
    width = min(WINDOW[0], available_width - frame[0])
    height = min(WINDOW[1], available_height - frame[1])
    narrow = available_width < NARROW_SCREEN
    # napari's layer panel is ~340 px at its narrowest: on a narrow screen it becomes tabs beside
    # the Workspace (Window menu or a drag brings it back), so the canvas keeps half the width
    return {"window": (width, height), "layers_beside_workspace": narrow, "workspace": 360 if narrow else 420}


def fit_window(viewer, workspace_dock=None, available=None) -> dict:
    """Size napari's window to fit the screen's available geometry (``available``: a QRect,
    default the screen's) and share its width between the layer panel, the canvas and the
    Workspace. Returns the plan used."""
    from qtpy.QtCore import Qt, QTimer
    from qtpy.QtWidgets import QApplication

    window = viewer.window._qt_window
    QApplication.processEvents()  # a shown window gets its frame from the window manager
    if available is None:
        screen = window.screen() if hasattr(window, "screen") else None
        available = (screen or QApplication.primaryScreen()).availableGeometry()
    frame = (window.frameGeometry().width() - window.width(), window.frameGeometry().height() - window.height())
    plan = window_plan(available.width(), available.height(), frame)
    window.showNormal()
    window.resize(*plan["window"])
    window.move(available.topLeft())
    if plan["window"] != WINDOW:  # a small screen: maximized, the window manager fits its frame in too
        window.setWindowState(window.windowState() | Qt.WindowMaximized)
    if workspace_dock is None:
        return plan
    if plan["layers_beside_workspace"]:
        qt_viewer = viewer.window._qt_viewer
        for dock in (qt_viewer.dockLayerControls, qt_viewer.dockLayerList):
            window.addDockWidget(Qt.RightDockWidgetArea, dock)
            window.tabifyDockWidget(workspace_dock, dock)
        QTimer.singleShot(0, workspace_dock.raise_)  # once the tabs exist: the Workspace in front
    window.resizeDocks([workspace_dock], [plan["workspace"]], Qt.Horizontal)
    QTimer.singleShot(0, viewer.reset_view)  # once the canvas has its new size
    return plan


def wait_until(condition, timeout: float = 300.0) -> None:
    """Keep Qt responsive until ``condition()`` holds: for scripts that drive the real window (the
    screenshot tools, the Review benchmarks). TimeoutError after ``timeout`` seconds."""
    from qtpy.QtWidgets import QApplication

    end = time.perf_counter() + timeout
    while not condition():
        QApplication.processEvents()
        time.sleep(0.005)
        if time.perf_counter() > end:
            raise TimeoutError("the window did not get there in time")


def run_once_and_screenshot(viewer, widget, path, timeout: float = 600.0, press_run: bool = True) -> Path:
    """Press Run (unless a run is under way already, or not ``press_run``), wait for the mask
    (keeping Qt responsive), save a window screenshot."""
    from qtpy.QtWidgets import QApplication

    from .errors import UserError

    if press_run and not widget.busy:
        widget.run()
    deadline = time.monotonic() + timeout
    while widget.busy:
        QApplication.processEvents()
        if time.monotonic() > deadline:
            widget.cancel()
            raise UserError(f"the prediction took longer than {timeout:.0f} s")
        time.sleep(0.01)
    QApplication.processEvents()
    if widget.last_error:
        raise UserError(widget.last_error)
    viewer.reset_view()
    QApplication.processEvents()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(path=str(path), canvas_only=False, flash=False)
    return path


def shown_coverage(data, current_step) -> float:
    """The share of object pixels in the plane on screen: a video's mask is read one frame, not
    every frame (a minute of 4K is 13 GB)."""
    import numpy as np

    leading = max(0, len(getattr(data, "shape", ())) - 2)
    plane = data[tuple(int(i) for i in current_step[:leading])] if leading else data
    return float((np.asarray(plane) > 0).mean())


def _quiet_pyqt5_notice() -> None:
    # napari toasts "PyQt5 support is deprecated" over the canvas; this project pins PyQt5 on
    # purpose (constraints.txt), so the toast only hides the image. Private flag: best effort.
    try:
        import napari._qt.qt_main_window as main_window

        main_window.SHOW_QT_WARNING = False
    except (ImportError, AttributeError):  # pragma: no cover
        pass


def _start_building(model: Optional[str], task: str, device: str):
    """Build the app's first network in a background thread (importing torch, loading the
    checkpoint and the ONNX graph, one warm-up run) while the main thread starts napari.

    Returns a future of ``(model, checkpoint, predictor)``; ``checkpoint`` as the Segment
    widget names it (the default checkpoint's path, or False for random weights)."""
    from concurrent.futures import Future
    import threading

    from .inference.engine import default_engine, physical_cores

    future: Future = Future()
    options = {"engine": default_engine(), "threads": physical_cores()}

    def build():
        try:
            import models
            from .inference.predictors import default_predictor_factory

            name = model or models.default_model(task)
            path = models.default_checkpoint(name)
            checkpoint = str(path) if path else False
            predictor = default_predictor_factory(name, checkpoint, device, **options)  # served if it can be
            predictor.warm_up()
            future.set_result((name, checkpoint, predictor))
        except BaseException as err:  # noqa: BLE001 -- Run builds it again and reports the error
            future.set_exception(err)

    threading.Thread(target=build, name="napari-polyp-first-network", daemon=True).start()
    return future, options


def _use_prebuilt(widget, future, options: dict, device: str) -> None:
    """Let the widget take the network being built in the background when it asks for that one."""
    from .inference.predictors import default_predictor_factory

    def factory(model_name, checkpoint, device_name, engine=None, threads=None):
        wanted = (device_name, {"engine": engine, "threads": threads})
        if wanted == (device, options) and not future.exception():
            name, built_checkpoint, predictor = future.result()  # waits (in a worker thread) until built
            if (name, built_checkpoint) == (model_name, checkpoint):
                return predictor
        return default_predictor_factory(model_name, checkpoint, device_name, engine=engine, threads=threads)

    widget.predictor_factory = factory


def _seconds_since_start() -> tuple:
    """Seconds since this process started (the command), from the OS's record of it, and the
    CPU seconds it has used since (what the start-up costs on a machine with cores to spare)."""
    import psutil

    process = psutil.Process()
    cpu = process.cpu_times()
    return time.time() - process.create_time(), cpu.user + cpu.system


def launch(image, *, model: Optional[str], task: str, device: str, screenshot=None, timeout: float,
           segment: bool) -> int:
    """Open napari on ``image`` (or the task's sample) with the Workspace docked and ``model``
    (default: the task's) built in the background; with ``segment``, Run is pressed once the
    window is up. With ``screenshot`` (a PNG path): wait for the mask (``timeout`` seconds at
    most), save a screenshot of the window, print what it took and close; else napari runs
    until the window is closed. Returns the exit status."""
    # A bad file gives one clean error line before any window opens.
    layer_data = _layer_data(image) if image is not None else None
    future, options = _start_building(model, task, device)
    import napari
    from napari.layers import Labels

    _quiet_pyqt5_notice()
    prefer_plugin_reader()
    viewer = napari.Viewer(title="napari-polyp")
    try:
        widget = open_app(viewer, image, model, device, layer_data=layer_data, task=task)
        _use_prebuilt(widget, future, options, device)
        widget.preload_on_change = True  # later choices are built in the background too
        # a pre-annotated video (a mask store) comes with its masks: nothing to run
        pre_annotated = any(data[1].get("metadata", {}).get(ROLE) == PRE_ANNOTATION
                            for data in layer_data or ())
        if segment and not pre_annotated:
            widget.run()
        if screenshot:
            path = run_once_and_screenshot(viewer, widget, screenshot, timeout, press_run=not pre_annotated)
            if pre_annotated:  # nothing waited for the network built in the background: a thread left
                future.exception()  # in the middle of building it when Python exits aborts the process
            since_start, cpu_seconds = _seconds_since_start()
            mask = widget.mask_layer() if not pre_annotated else next(
                layer for layer in viewer.layers if isinstance(layer, Labels)
                and layer.metadata.get(ROLE) == PRE_ANNOTATION)
            share = f"; mask covers {100 * shown_coverage(mask.data, viewer.dims.current_step):.1f}% of the image" \
                if mask is not None else ""
            made = f"{mask.name} (stored)" if pre_annotated else \
                f"{widget.model_combo.currentText()}: first mask after {widget.last_latency_s:.2f} s"
            print(f"{made} ({since_start:.2f} s after the command, {cpu_seconds:.1f} s of CPU){share}; screenshot {path}",
                  flush=True)
            viewer.close()
            return 0
    except BaseException:
        viewer.close()
        raise
    napari.run()
    return 0
