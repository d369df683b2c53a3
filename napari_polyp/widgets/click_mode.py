"""Click mode: correct the mask with clicks, the click refiner behind
:class:`napari_polyp.corrections.clicks.ClickSession` (the headless core; this module is
the thin layer between it and the canvas).

In Click mode the mask layer is the active layer, in napari's pan/zoom tool with dragging
taken over (the wheel still zooms):

- a left click is a positive click (lesion here), a right click or Alt+click a negative one
  (background here); a press that moves less than :data:`DRAG_PX` screen pixels is a click;
- a left drag draws a box around a lesion the mask missed (:meth:`ClickSession.drag_box`);
- each click runs the refiner in a worker (the status says so meanwhile) and writes the new
  mask into the Labels layer as ONE step of its own undo history;
- **Ctrl+Z** undoes the last click, whatever has focus in the window (an application event
  filter, like the review keys'): the session goes back one click and the mask layer's own
  history step is taken back;
- the clicks are drawn as green (positive) and red (negative) points in a Points layer
  "<mask> clicks" that is never edited;
- **K** (a napari action, remappable in Preferences ▸ Shortcuts) or the button enters and
  leaves the mode; choosing another layer, or another tool of the mask, leaves it.

The session starts from the mask on screen: the network's probability where it agrees with
the mask (the workspace's hidden probability layer), the mask's own pixels where it does not
(a hand edit, another threshold), an empty mask when there is none. A new image or item (the
Review tab's Next / Previous, a new prediction) starts a new session and clears the points.
The mask changed by something else between two clicks (a brush stroke, a clean-up) is where
the next click goes on from; the mask layer's own undo of a click is noticed and followed.

The clicks of the open item are saved with its correction (the record's ``clicks`` field):
:meth:`ClickMode.click_log` is what the Review tab saves.
"""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Callable, List, Optional, Tuple

import numpy as np
from qtpy.QtCore import QObject, Qt, Signal
from qtpy.QtWidgets import QGroupBox, QHBoxLayout, QPushButton, QVBoxLayout

from .. import layers as L
from ..errors import UserError
from . import click_keys, keys
from ._common import error_text, start_worker, text_label
from .click_keys import MODE_ACTION, MODE_KEYS, UNDO_KEY  # noqa: F401 -- MODE_KEYS: named here too

DRAG_PX = 4  # a press that moves more than this (screen pixels) is a drag, not a click
POSITIVE_COLOR, NEGATIVE_COLOR = "#00e000", "#ff2020"
BOX_COLOR = "yellow"
CLICKS_SUFFIX, BOX_SUFFIX = " clicks", " click box"
ROLE_CLICKS, ROLE_BOX = "clicks", "click box"

_LOAD_LOCK = threading.Lock()
_WARMED: set = set()  # ids of refiner runners that ran once (imports, graph set-up: seconds the first time)


def shipped_refiner():
    """The shipped click refiner's runner, loaded and run once on a tiny image the first time
    (thread-safe: the warm-up started on entering Click mode and a first click share it)."""
    from ..corrections.clicks import ClickSession, refiner_runner

    with _LOAD_LOCK:
        runner = refiner_runner()
        if id(runner) not in _WARMED:
            ClickSession(np.zeros((16, 16, 3), np.uint8), runner=runner).click(8, 8)
            _WARMED.add(id(runner))
    return runner


class _ShippedRefiner:
    """Stands for :func:`shipped_refiner` until a click needs it (then in the worker)."""

    def __call__(self, x):
        return shipped_refiner()(x)

    def __getattr__(self, name):  # input_size, run (when the runner has it)
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(shipped_refiner(), name)


def clicks_layer_name(mask_name: str) -> str:
    return mask_name + CLICKS_SUFFIX


class ClickMode(QObject):
    """Click mode of one viewer's mask (see the module docstring).

    ``review`` / ``segment``: the workspace's Review and Segment widgets; the mask corrected is
    the open Review item's, else the Segment image's. ``runner_factory()``: the refiner's
    runner for a new session (None: the shipped refiner, :func:`shipped_refiner`, loaded in the
    background when the mode is entered). ``changed`` is emitted when the mode, the busy state
    or the message changes."""

    changed = Signal()

    def __init__(self, viewer, review=None, segment=None, runner_factory: Optional[Callable] = None,
                 parent=None):
        super().__init__(parent)
        self.viewer = keys._real(viewer)  # layers themselves, not a plugin dock's proxies
        self.review, self.segment = review, segment
        self.runner_factory = runner_factory
        self.active = False
        self.session = None
        self.message = ""
        self.last_error: Optional[str] = None
        self.last_seconds: Optional[float] = None
        self._image_name: Optional[str] = None  # the image and mask the session belongs to
        self._labels_name: Optional[str] = None
        self._image_data_id: Optional[int] = None
        self._earlier: List[dict] = []  # clicks of earlier sessions on this image (before a hand edit)
        self._before: List[np.ndarray] = []  # the mask before each click of the session
        self._items: List[object] = []  # the mask layer's history item of each click (or None)
        self._saved_mode: Optional[str] = None
        self._adjusting = False
        self._worker = None
        self._pending_log: Optional[List[dict]] = None  # the log before the click being refined
        self._watched_image = None
        self._refined_once = False
        self._preload = None
        click_keys.register(self)
        if segment is not None:
            segment.threshold_applied.connect(self._on_threshold_applied)
        self.viewer.layers.selection.events.active.connect(self._on_active_changed)
        self.viewer.layers.events.removed.connect(self._on_layer_removed)

    # -- which image and mask ---------------------------------------------------------------
    def _layer(self, name: Optional[str]):
        return self.viewer.layers[name] if name and name in self.viewer.layers else None

    def target(self) -> Tuple[object, object]:
        """(image layer, mask layer or None) Click mode works on: the open Review item's, else
        the Segment tab's image and its mask; (None, None) when no image is open."""
        review, segment = self.review, self.segment
        if review is not None and review.current is not None and review.image_layer() is not None:
            image = self._layer(review.image_layer().name)
            labels = review.labels_layer()
            return image, (self._layer(labels.name) if labels is not None else None)
        if segment is not None and segment.image_layer() is not None:
            image = self._layer(segment.image_layer().name)
            labels = self._layer(L.layer_names(image.name)["mask"]) if image is not None else None
            return image, (labels if labels is not None and L.is_editable_mask(labels) else None)
        return None, None

    def _layers(self, create_mask: bool = False):
        """The target's layers, checked: (image, mask) or a UserError saying what is missing."""
        if self.active:
            image, labels = self._layer(self._image_name), self._layer(self._labels_name)
        else:
            image, labels = self.target()
        if image is None:
            raise UserError("open an image before clicking: there is no image to correct "
                            "(open an item in Review, or an image in the Model tab)")
        frames = L.frame_count(image)
        if frames is not None or len(L.spatial_shape(image)) != 2:
            raise UserError(f"'{image.name}' is a video or a stack ({frames or '?'} frames): Click mode corrects "
                            "one image; review its frames in the Review tab")
        if labels is None and create_mask:
            labels = self._make_mask(image)
        if labels is not None and tuple(np.shape(labels.data)) != tuple(L.spatial_shape(image)):
            raise UserError(f"the mask '{labels.name}' is {np.shape(labels.data)}, the image "
                            f"{L.spatial_shape(image)}: run the network again first")
        return image, labels

    def _make_mask(self, image):
        """An empty mask for an image that has none yet (Click mode from nothing)."""
        from .. import display

        zeros = np.zeros(L.spatial_shape(image), np.uint8)
        with self._adjust():
            if self.review is not None and self.review.current is not None:
                self.review.layers.show_saved_mask(zeros, image, {})  # the Review item's mask layer
                labels = self._layer(self.review.labels_layer().name)
            else:
                labels = self.viewer.add_labels(zeros, name=L.layer_names(image.name)["mask"], opacity=0.5,
                                                metadata={L.ROLE: "mask", "image_layer": image.name})
                labels.scale, labels.translate = image.scale, image.translate
            display.style_mask(labels)
        return labels

    # -- entering and leaving -----------------------------------------------------------------
    def toggle(self) -> bool:
        """Enter the mode, or leave it; returns whether it is on."""
        if self.active:
            self.leave("Click mode off")
            return False
        return self.enter()

    def enter(self) -> bool:
        if self.active:
            return True
        try:
            image, labels = self._layers(create_mask=True)
        except UserError as err:
            self._error(str(err))
            return False
        self.active = True
        self._image_name, self._labels_name = image.name, labels.name
        with self._adjust():
            self.viewer.layers.selection.active = labels
            self._saved_mode = labels.mode
            labels.mode = "pan_zoom"
            labels.mouse_pan = False  # a drag draws a box; the wheel still zooms
            labels.cursor = "cross"
            if self._on_drag not in labels.mouse_drag_callbacks:
                labels.mouse_drag_callbacks.append(self._on_drag)
            labels.bind_key(UNDO_KEY, self._undo_key, overwrite=True)  # before the Labels layer's own undo
            labels.events.mode.connect(self._on_mode_changed)
        self._check_session(image, labels)
        self._points(create=True)
        if self.runner_factory is None and not _WARMED and self._preload is None:
            # the first click would wait seconds for imports and the network's set-up: start now
            self._preload = start_worker(shipped_refiner, on_error=lambda text: self._error(
                f"the click refiner cannot be loaded: {text}"), on_finished=self._on_preloaded)
        self._say(f"Click mode on '{labels.name}': left click adds lesion, right click (or Alt+click) "
                  f"removes, drag a box around a missed lesion; Ctrl+Z undoes a click; "
                  f"{'/'.join(keys.shortcuts(MODE_ACTION)) or 'K'} leaves")
        return True

    def _on_preloaded(self) -> None:
        self._preload = None

    def leave(self, why: str = "Click mode off", restore_tool: bool = True) -> None:
        if not self.active:
            return
        self.active = False
        labels = self._layer(self._labels_name)
        if labels is not None:
            with self._adjust():
                if self._on_drag in labels.mouse_drag_callbacks:
                    labels.mouse_drag_callbacks.remove(self._on_drag)
                try:
                    labels.bind_key(UNDO_KEY, None)  # the Labels layer's own Ctrl+Z again
                except (KeyError, TypeError, ValueError):
                    pass
                labels.events.mode.disconnect(self._on_mode_changed)
                if restore_tool and labels.mode == "pan_zoom":
                    labels.mode = self._saved_mode if self._saved_mode not in (None, "pan_zoom") else "pan_zoom"
                labels.mouse_pan = labels.mode == "pan_zoom"
                labels.cursor = "standard" if labels.mode == "pan_zoom" else labels.cursor
        self._hide_box()
        self._say(why)

    def _on_active_changed(self, *_):
        if self.active and not self._adjusting:
            active = self.viewer.layers.selection.active
            if active is None or active.name != self._labels_name:
                self.leave("Click mode off: another layer was chosen")

    def _on_mode_changed(self, *_):
        labels = self._layer(self._labels_name)
        if self.active and not self._adjusting and labels is not None and labels.mode != "pan_zoom":
            self.leave(f"Click mode off: the mask's {labels.mode} tool was chosen", restore_tool=False)

    def _on_layer_removed(self, event):
        name = getattr(event.value, "name", None)
        if name in (self._image_name, self._labels_name):
            if self.active:  # the mask, when it is still there, gets its own tools back
                self.leave("Click mode off: its image or mask was closed")
            self._drop_session()

    @contextmanager
    def _adjust(self):
        """Our own layer changes (selection, tool): not the user leaving the mode."""
        before, self._adjusting = self._adjusting, True
        try:
            yield
        finally:
            self._adjusting = before

    # -- the session --------------------------------------------------------------------------
    def _check_session(self, image, labels):
        """The session of what is on screen: the same one, followed after the mask layer's own
        undo of clicks, or a new one (new image; the mask changed by something else)."""
        from ..corrections.clicks import ClickSession

        on_screen = np.asarray(labels.data) > 0
        same_image = (self.session is not None and image.name == self._image_name
                      and labels.name == self._labels_name and id(image.data) == self._image_data_id
                      and self.session.mask.shape == on_screen.shape)
        if same_image:
            if np.array_equal(on_screen, self.session.mask):
                return self.session
            for at in range(len(self._before) - 1, -1, -1):  # the mask layer's Ctrl+Z took clicks back
                if np.array_equal(on_screen, self._before[at]):
                    while len(self._before) > at:
                        self.session.undo()
                        self._before.pop()
                        self._items.pop()
                    self._sync_points()
                    return self.session
            self._earlier += self.session.click_log()  # edited by other means: go on from the mask as it is
        else:
            self._drop_session()
        runner = self.runner_factory() if self.runner_factory is not None else _ShippedRefiner()
        self.session = ClickSession(L.image_frame(image), prior=self._prior(image, labels, on_screen), runner=runner)
        self._image_name, self._labels_name, self._image_data_id = image.name, labels.name, id(image.data)
        self._before, self._items = [], []
        self._watch(image)
        self._sync_points()
        return self.session

    def _prior(self, image, labels, on_screen: np.ndarray) -> np.ndarray:
        """The network's probability where it agrees with the mask on screen, else the mask."""
        probability = None
        state = L.prediction_state(labels)
        if state is not None:
            try:
                probability = state.probability_frame(None)
            except Exception:  # noqa: BLE001 -- no usable probability: the mask alone
                probability = None
        if probability is None:
            layer = self._layer(L.layer_names(image.name)["probability"])
            if layer is not None and layer.metadata.get(L.ROLE) == "probability":
                probability = np.asarray(layer.data, np.float32)
        mask = on_screen.astype(np.float32)
        if probability is None or probability.shape != on_screen.shape:
            return mask
        probability = np.clip(np.nan_to_num(probability.astype(np.float32)), 0.0, 1.0)
        return np.where((probability > 0.5) == on_screen, probability, mask).astype(np.float32)

    def _watch(self, image) -> None:
        """A new picture in the image layer (the next Review item) ends the session."""
        self._unwatch()
        image.events.data.connect(self._on_image_data)
        self._watched_image = image

    def _unwatch(self) -> None:
        if self._watched_image is not None:
            try:
                self._watched_image.events.data.disconnect(self._on_image_data)
            except (RuntimeError, TypeError, ValueError):
                pass
            self._watched_image = None

    def _on_image_data(self, *_):
        self._drop_session()
        if self.active:
            self._say("a new image: its clicks start afresh")

    def _on_threshold_applied(self, _value: float, outcome: str) -> None:
        """A threshold move that discarded the edits (the mask is the network's own again) took
        the clicks' work with it: their points go, and they are not saved with the item."""
        labels = self._layer(self._labels_name)
        if outcome != "updated" or self.session is None or labels is None \
                or L.prediction_state(labels) is None or L.has_manual_edits(labels):
            return
        self._drop_session()
        self._say("the edits were discarded: the clicks start afresh")

    def _drop_session(self) -> None:
        self._unwatch()
        self.session = None
        self._image_data_id = None
        self._earlier, self._before, self._items = [], [], []
        layer = self._points()
        if layer is not None and len(layer.data):
            layer.data = np.zeros((0, 2))

    def click_log(self) -> Optional[List[dict]]:
        """The clicks made on the open Review item's mask, in order (None when there are none):
        what its correction is saved with."""
        if self.session is None or self.review is None or self.review.image_layer() is None:
            return None
        image = self._layer(self.review.image_layer().name)
        if image is None or image.name != self._image_name or id(image.data) != self._image_data_id:
            return None
        log = self._pending_log if self._pending_log is not None else self._earlier + self.session.click_log()
        return list(log) or None

    @property
    def busy(self) -> bool:
        return self._worker is not None

    @property
    def loading(self) -> bool:
        """The shipped refiner is being loaded in the background (entering the mode starts it)."""
        return self._preload is not None

    # -- clicks ---------------------------------------------------------------------------------
    def click(self, row: int, col: int, positive: bool = True) -> bool:
        """A click at (row, col) of the image (data pixels); False with a message when refused.
        The refiner runs in a worker: the mask changes when it is done (see ``busy``)."""
        return self._start("click", (int(row), int(col), bool(positive)))

    def drag_box(self, top: int, left: int, bottom: int, right: int) -> bool:
        """A box around a lesion (data pixels, bottom/right exclusive)."""
        return self._start("box", (int(top), int(left), int(bottom), int(right)))

    def click_at(self, position, positive: bool = True) -> bool:
        """A click at a world position (what the canvas gives)."""
        image = self._layer(self._image_name) if self.active else self.target()[0]
        if image is None:
            return self.click(-1, -1, positive)  # says there is no image
        row, col = self._pixel(image, position)
        return self.click(row, col, positive)

    def box_at(self, start, end) -> bool:
        image = self._layer(self._image_name) if self.active else self.target()[0]
        if image is None:
            return self.click(-1, -1)
        (r0, c0), (r1, c1) = self._pixel(image, start), self._pixel(image, end)
        return self.drag_box(min(r0, r1), min(c0, c1), max(r0, r1) + 1, max(c0, c1) + 1)

    @staticmethod
    def _pixel(image, position) -> Tuple[int, int]:
        data = np.asarray(image.world_to_data(tuple(position)), float)[-2:]
        return int(np.floor(data[0] + 0.5)), int(np.floor(data[1] + 0.5))

    def _start(self, kind: str, args: tuple) -> bool:
        if self.busy:
            self._error("still refining the last click: wait a moment")
            return False
        try:
            image, labels = self._layers(create_mask=True)
            session = self._check_session(image, labels)
        except UserError as err:
            self._error(str(err))
            return False
        h, w = session.mask.shape
        if kind == "click" and not (0 <= args[0] < h and 0 <= args[1] < w):
            self._error(f"the click at row {args[0]}, column {args[1]} is outside the image ({h}×{w} px); "
                        "the mask is unchanged")
            return False
        self._pending_log = self._earlier + session.click_log()
        before = session.mask.copy()
        if kind == "click":
            self._sync_points(extra={"row": args[0], "col": args[1], "positive": args[2]})
        self._say("refining…" if self._refined_once or _WARMED or self.runner_factory is not None
                  else "refining… (the first click loads the click refiner)")
        from qtpy.QtWidgets import QApplication

        QApplication.setOverrideCursor(Qt.BusyCursor)
        self._worker = start_worker(self._job, session, kind, args, before,
                                    on_return=self._on_refined, on_error=self._on_failed,
                                    on_finished=self._on_finished)
        self.changed.emit()
        return True

    @staticmethod
    def _job(session, kind, args, before):  # worker thread: the network only, no layers
        start = time.perf_counter()
        mask = session.click(*args) if kind == "click" else session.drag_box(*args)
        return session, kind, args, before, mask, time.perf_counter() - start

    def _on_refined(self, result) -> None:
        session, kind, args, before, mask, seconds = result
        self._pending_log = None
        labels = self._layer(self._labels_name)
        if session is not self.session or labels is None:
            return  # the image changed meanwhile: this click belonged to the one before
        self._before.append(before)
        changed, item = self._write(labels, mask)
        self._items.append(item)
        self._sync_points()
        self.last_seconds = seconds
        self.last_error = None
        self._refined_once = True
        what = ("box" if kind == "box" else "lesion click" if args[2] else "background click")
        self._say(f"{what} {len(session.clicks)}: {changed} pixels changed ({seconds * 1000:.0f} ms); "
                  "Ctrl+Z undoes it")

    def _on_failed(self, text: str) -> None:
        self._pending_log = None
        self._sync_points()
        self._error(f"{text}" if text.startswith(("the ", "open ")) else f"the click failed: {text}")

    def _on_finished(self) -> None:
        from qtpy.QtWidgets import QApplication

        self._worker = None
        self._pending_log = None
        QApplication.restoreOverrideCursor()
        self.changed.emit()

    def _write(self, labels, mask: np.ndarray):
        """The new mask into the layer as one step of its undo history; (pixels changed, that step)."""
        from .cleanup import apply_to_labels

        changed = apply_to_labels(labels, lambda plane: mask.astype(plane.dtype))
        history = getattr(L.unwrap(labels), "_undo_history", None)
        return changed, (history[-1] if changed and history else None)

    # -- undo -----------------------------------------------------------------------------------
    def _undo_key(self, *_):
        self.undo()

    def undo(self) -> bool:
        """Take the last click back (the mask as it was before it); a message when there is none."""
        if self.busy:
            self._error("still refining the last click: wait a moment")
            return False
        try:
            image, labels = self._layers()
        except UserError as err:
            self._error(str(err))
            return False
        if labels is None or self.session is None:
            self._error("nothing to undo: no click has been made on this image")
            return False
        session = self._check_session(image, labels)
        if not session.can_undo:
            self._error("nothing to undo: no click has been made on this image"
                        + (" since the mask was last changed by other means" if self._earlier else ""))
            return False
        before = session.undo()
        self._before.pop()
        item = self._items.pop()
        real = L.unwrap(labels)
        history = getattr(real, "_undo_history", None)
        if item is not None and history and history[-1] is item:
            real.undo()  # the layer's own step: its history stays in step with the clicks
        if not np.array_equal(np.asarray(labels.data) > 0, before):
            self._write(labels, before)
        self._sync_points()
        self.last_error = None
        self._say(f"click undone ({len(session.clicks)} left)")
        return True

    # -- points and box -------------------------------------------------------------------------
    def _points(self, create: bool = False):
        name = clicks_layer_name(self._labels_name) if self._labels_name else None
        layer = self._layer(name)
        if layer is not None or not create or name is None:
            return layer
        image = self._layer(self._image_name)
        with self._adjust():
            active = self.viewer.layers.selection.active
            layer = self.viewer.add_points(np.zeros((0, 2)), name=name, ndim=2, face_color=POSITIVE_COLOR,
                                           border_color="white", border_width=0.15,
                                           metadata={L.ROLE: ROLE_CLICKS})
            layer.editable = False
            if image is not None:
                layer.scale, layer.translate = image.scale[-2:], image.translate[-2:]
            self.viewer.layers.selection.active = active
        return layer

    def _sync_points(self, extra: Optional[dict] = None) -> None:
        """The points show the clicks of this image (and the one being refined)."""
        log = (self._earlier + self.session.click_log()) if self.session is not None else []
        log = log + ([extra] if extra else [])
        layer = self._points(create=bool(log))
        if layer is None:
            return
        data = np.array([[c["row"], c["col"]] for c in log], float).reshape(-1, 2)
        layer.data = data
        if len(log):
            layer.face_color = [POSITIVE_COLOR if c["positive"] else NEGATIVE_COLOR for c in log]
            h, w = self.session.mask.shape if self.session is not None else (100, 100)
            layer.size = max(6.0, 0.022 * max(h, w))

    def _box_layer(self, create: bool = False):
        name = self._labels_name + BOX_SUFFIX if self._labels_name else None
        layer = self._layer(name)
        if layer is not None or not create or name is None:
            return layer
        image = self._layer(self._image_name)
        with self._adjust():
            active = self.viewer.layers.selection.active
            layer = self.viewer.add_shapes(ndim=2, name=name, edge_color=BOX_COLOR, face_color="transparent",
                                           edge_width=2, metadata={L.ROLE: ROLE_BOX})
            layer.editable = False
            if image is not None:
                layer.scale, layer.translate = image.scale[-2:], image.translate[-2:]
            self.viewer.layers.selection.active = active
        return layer

    def _show_box(self, start, end) -> None:
        image = self._layer(self._image_name)
        layer = self._box_layer(create=True)
        if image is None or layer is None:
            return
        (r0, c0), (r1, c1) = self._pixel(image, start), self._pixel(image, end)
        layer.data = [np.array([[r0, c0], [r0, c1], [r1, c1], [r1, c0]], float)]
        layer.shape_type = ["rectangle"]
        layer.edge_color = BOX_COLOR
        layer.face_color = "transparent"
        layer.visible = True

    def _hide_box(self) -> None:
        layer = self._box_layer()
        if layer is not None:
            layer.visible = False

    # -- the canvas -------------------------------------------------------------------------------
    def _on_drag(self, layer, event):
        """The mask layer's drag callback in Click mode: a click, or a box (see the module docstring)."""
        if event.type != "mouse_press" or not self.active or layer.name != self._labels_name:
            return
        button = event.button
        if button not in (1, 2):
            return
        modifiers = {str(getattr(m, "name", m)) for m in (event.modifiers or ())}
        positive = button == 1 and "Alt" not in modifiers
        start_pos, start = np.asarray(event.pos, float), tuple(event.position)
        dragged = False
        yield
        while event.type == "mouse_move":
            if not dragged and np.hypot(*(np.asarray(event.pos, float) - start_pos)[:2]) > DRAG_PX:
                dragged = True
            if dragged and button == 1:
                self._show_box(start, tuple(event.position))
            yield
        if dragged:  # a left drag is a box; a right drag does nothing
            self._hide_box()
            if button == 1:
                self.box_at(start, tuple(event.position))
            return
        self.click_at(start, positive)

    # -- messages -----------------------------------------------------------------------------------
    def _say(self, text: str) -> None:
        self.message = text
        self.changed.emit()

    def _error(self, text: str) -> None:
        from napari.utils.notifications import show_warning

        self.last_error = text
        self.message = f"⚠ {text}"
        show_warning(text)
        self.changed.emit()

    def close(self) -> None:
        self.leave("Click mode off")
        self._unwatch()
        _MODES.discard(self)
        for signal, slot in ((self.viewer.layers.selection.events.active, self._on_active_changed),
                             (self.viewer.layers.events.removed, self._on_layer_removed)):
            try:
                signal.disconnect(slot)
            except (RuntimeError, TypeError, ValueError):
                pass


class ClickModePanel(QGroupBox):
    """The Correct tab's Click mode box: the toggle, Undo click, what to do, the last message."""

    def __init__(self, mode: ClickMode, parent=None):
        super().__init__("Click mode (the default tool)", parent)
        self.mode = mode
        layout = QVBoxLayout(self)
        keys_text = "/".join(keys.shortcuts(MODE_ACTION)) or "K"
        # short lines: a wrapped label's height is not always re-laid out in the scrolled tab
        self.help_label = text_label(
            "Left click: lesion the mask missed\n"
            "Right click (or Alt+click): background it took\n"
            "Drag: a box around a lesion it missed\n"
            f"Ctrl+Z: undo a click · {keys_text}: mode on / off")
        self.help_label.setToolTip("Each click re-segments the mask around it (the click refiner, from the "
                                   "network's probability and all clicks so far); one undo step per click")
        layout.addWidget(self.help_label)
        row = QHBoxLayout()
        self.toggle_button = QPushButton(f"Click mode ({keys_text})")
        self.toggle_button.setCheckable(True)
        self.toggle_button.setToolTip("Correct the mask with clicks (the open Review item's, else the Model tab's "
                                      f"image); {keys_text} or this button enters and leaves")
        self.toggle_button.clicked.connect(self._on_button)
        self.undo_button = QPushButton("Undo click")
        self.undo_button.setToolTip("Take the last click back (Ctrl+Z in Click mode)")
        self.undo_button.clicked.connect(self.mode.undo)
        row.addWidget(self.toggle_button)
        row.addWidget(self.undo_button)
        layout.addLayout(row)
        self.status_label = text_label("", selectable=True)
        layout.addWidget(self.status_label)
        mode.changed.connect(self.refresh)
        self.refresh()

    def _on_button(self, checked: bool) -> None:
        if checked != self.mode.active:
            self.mode.toggle()
        self.refresh()

    def refresh(self) -> None:
        self.toggle_button.setChecked(self.mode.active)
        self.undo_button.setEnabled(not self.mode.busy)
        self.status_label.setText(self.mode.message)
