"""Click mode's keys: **K** (a napari action, remappable in Preferences ▸ Shortcuts) enters and
leaves the mode, **Ctrl+Z** undoes the last click whatever has focus in the window (one
application event filter, like the review keys'). A mode registers itself here
(:func:`register`); the keys find the mode of the window they were pressed in."""
from __future__ import annotations

import weakref

from qtpy.QtCore import QObject, Qt

from . import keys

MODE_ACTION = "click_mode"  # the napari action's name (with keys.PREFIX)
MODE_KEYS = ("K",)  # no napari Labels / Points / Image key, none of the review keys
UNDO_KEY = "Control-Z"

_MODES: "weakref.WeakSet" = weakref.WeakSet()  # the ClickMode of each open window


def register(mode) -> None:
    """Give a :class:`~napari_polyp.widgets.click_mode.ClickMode` its keys."""
    _register_actions()
    _MODES.add(mode)
    ClickKeys.install()


def _mode_of(viewer):
    for mode in list(_MODES):
        try:
            if mode.viewer is keys._real(viewer):
                return mode
        except RuntimeError:  # its Qt side is gone
            _MODES.discard(mode)
    return None


def _toggle_command(viewer):
    """Enter or leave Click mode (correct the mask with clicks)"""
    mode = _mode_of(viewer)
    if mode is not None:
        mode.toggle()


def _register_actions() -> None:
    from napari.components import ViewerModel
    from napari.settings import get_settings
    from napari.utils.action_manager import action_manager

    remapped = get_settings().shortcuts.shortcuts
    full = keys.PREFIX + MODE_ACTION
    if full not in action_manager._actions:
        action_manager.register_action(full, _toggle_command, "Click mode on/off (correct the mask with clicks)",
                                       ViewerModel)
        for key in remapped.get(full, MODE_KEYS):
            action_manager.bind_shortcut(full, key)


def _mode_for_window(widget):
    from qtpy.QtWidgets import QDockWidget

    if widget is None:
        return None
    top = widget.window()
    for mode in list(_MODES):
        try:
            window = mode.viewer.window._qt_window
        except (RuntimeError, AttributeError):
            _MODES.discard(mode)
            continue
        if top is window or (isinstance(top, QDockWidget) and keys._inside(top, window)):
            return mode
    return None


def _is_undo(event) -> bool:
    from qtpy.QtGui import QKeySequence

    return event.matches(QKeySequence.Undo) or (
        event.key() == Qt.Key_Z and (event.modifiers() & ~Qt.KeypadModifier) == Qt.ControlModifier)


def _make_filter():
    from qtpy.QtCore import QEvent
    from qtpy.QtWidgets import QApplication, QWidget

    class _Filter(QObject):
        def eventFilter(self, obj, event):  # noqa: N802 (Qt)
            kind = event.type()
            if kind not in (QEvent.KeyPress, QEvent.ShortcutOverride) or not isinstance(obj, QWidget):
                return False
            if QApplication.activeModalWidget() is not None:
                return False
            mode = _mode_for_window(obj)
            if mode is None:
                return False
            focus = keys._focus_kind(obj, mode.viewer)
            if focus == keys.TEXT:
                return False  # Ctrl+Z and K are text there
            if mode.active and _is_undo(event):
                if kind == QEvent.ShortcutOverride:
                    event.accept()  # a menu's Ctrl+Z must not take it first
                    return True
                mode.undo()
                return True
            if kind == QEvent.KeyPress and focus == keys.OTHER and not event.isAutoRepeat():
                # on the canvas napari runs the action itself; elsewhere (a button, the item table) we do
                if keys.action_for(keys._event_key(event), {MODE_ACTION: keys.shortcuts(MODE_ACTION)}):
                    mode.toggle()
                    return True
            return False

    return _Filter()


class ClickKeys:
    """One application event filter: Ctrl+Z in Click mode and K whatever has focus in the window."""

    _filter = None

    @classmethod
    def install(cls) -> None:
        keys.install_app_filter(cls, _make_filter)
