"""The review keys, registered as napari actions (Preferences ▸ Shortcuts ▸ Viewer key
bindings lists them, and a remapping there is kept in napari's settings).

Each action calls the Review widget (standalone or inside the workspace) of the viewer
the key was pressed in. The default keys avoid those napari's Labels layer uses (1-7,
E, P, F, L, Z, M, X, B, [, ], -, =), so they work while the mask is being painted.

They work whatever has focus in the viewer's window: napari only hears a key when its
canvas has focus (a dock widget passes on the keys its own widgets leave alone, but the
item table, a drop-down or the layer list take letters and PageUp/PageDown for themselves).
:class:`KeyRouter`, an application event filter, sends our keys to the Review widget
first when the focus is anywhere else in the window, except where a key is text: a line
edit, a spin box, an editable drop-down (:func:`routes`).
"""
from __future__ import annotations

import weakref
from typing import Callable, Dict, Iterable, List, Optional, Tuple

PREFIX = "napari_polyp:"

# name -> (what it does, default keys, what it calls on the Review widget)
ACTIONS: Dict[str, Tuple[str, Tuple[str, ...], Callable]] = {
    "accept": ("Accept the mask (saved as corrected if edited), go to the next item", ("A",),
               lambda w: w.save("accepted")),
    "corrected": ("Save the edited mask as corrected, go to the next item", ("C",), lambda w: w.save("corrected")),
    "reject": ("Reject the item (unusable image), go to the next item", ("Shift-R",), lambda w: w.save("rejected")),
    "next": ("Next item", ("N", "PageDown"), lambda w: w.next()),
    "previous": ("Previous item", ("Shift-N", "PageUp"), lambda w: w.previous()),
    "toggle_mask": ("Show / hide the mask", ("H",), lambda w: w.toggle_mask()),
    "toggle_reference": ("Show / hide the reference comparison (TP/FP/FN)", ("G",), lambda w: w.toggle_reference()),
    "run": ("Run the network on this item", ("R",), lambda w: w.predict_current()),
}

_TARGETS: "weakref.WeakSet" = weakref.WeakSet()


def _real(viewer):
    # Plugin docks get a proxy of the viewer; a key press hands the viewer itself.
    return getattr(viewer, "__wrapped__", viewer)


def _dispatch(name: str) -> Callable:
    call = ACTIONS[name][2]

    def command(viewer):
        for widget in list(_TARGETS):
            try:
                if _real(widget.viewer) is _real(viewer):
                    call(widget)
                    return
            except RuntimeError:  # its Qt side is gone
                _TARGETS.discard(widget)
    command.__name__ = f"polyp_{name}"
    command.__doc__ = ACTIONS[name][0]
    return command


def register(widget) -> None:
    """Make the keys act on ``widget`` (a ReviewWidget) when pressed in its viewer, whatever has focus."""
    _register_actions()
    _TARGETS.add(widget)
    KeyRouter.install()


# -- keys whatever has focus -------------------------------------------------------------
CANVAS, TEXT, OTHER = "canvas", "text", "other"  # where the focus is, for routes()
REPEATABLE = ("next", "previous")  # held down, these walk on; a held A must not save item after item


def action_for(key: str, bindings: Dict[str, Iterable[str]]) -> Optional[str]:
    """The action whose keys (``bindings``: name -> key strings, napari's "Shift-R" or Qt's
    "Shift+R" spelling) include ``key``; None when it is not one of ours."""
    from app_model.types import KeyBinding

    try:
        wanted = KeyBinding.from_str(key)
    except Exception:  # noqa: BLE001 -- a key app_model cannot spell is none of ours
        return None
    for name, keys in bindings.items():
        for bound in keys:
            try:
                if KeyBinding.from_str(str(bound)) == wanted:
                    return name
            except Exception:  # noqa: BLE001
                continue
    return None


def routes(focus: str, action: Optional[str], repeated: bool = False) -> bool:
    """Whether a key press goes to the Review widget's ``action`` here: not on the canvas (napari's
    own key handling calls the action there, after the layer's keys), never into text, and a
    held key repeats only next / previous."""
    return action is not None and focus == OTHER and (not repeated or action in REPEATABLE)


def bindings() -> Dict[str, List[str]]:
    """Our actions' keys now (after any remapping in Preferences)."""
    return {name: shortcuts(name) for name in ACTIONS}


def _focus_kind(widget, viewer) -> str:
    from qtpy.QtWidgets import QAbstractSpinBox, QComboBox, QKeySequenceEdit, QLineEdit, QPlainTextEdit, QTextEdit

    if isinstance(widget, (QLineEdit, QTextEdit, QPlainTextEdit, QAbstractSpinBox, QKeySequenceEdit)) or (
            isinstance(widget, QComboBox) and widget.isEditable()):
        return TEXT
    qt_viewer = getattr(viewer.window, "_qt_viewer", None)
    if qt_viewer is not None and _inside(widget, qt_viewer):
        return CANVAS
    return OTHER


def _inside(widget, ancestor) -> bool:
    while widget is not None:
        if widget is ancestor:
            return True
        widget = widget.parentWidget()
    return False


def _as_int(flag) -> int:
    """A Qt key or modifier as an int: PyQt6's are enum members (``int()`` refuses them), PyQt5's ints."""
    return int(getattr(flag, "value", flag))


def _event_key(event) -> str:
    """A Qt key press in app_model's spelling ("Shift+R", "PageDown")."""
    from app_model.backends.qt import qkeysequence2modelkeybinding
    from qtpy.QtCore import Qt
    from qtpy.QtGui import QKeySequence

    keypad = _as_int(Qt.KeyboardModifier.KeypadModifier)  # the keypad flag is no part of the key
    modifiers = _as_int(event.modifiers()) & ~keypad
    try:
        return str(qkeysequence2modelkeybinding(QKeySequence(modifiers | _as_int(event.key()))))
    except Exception:  # noqa: BLE001 -- a lone modifier, or a key app_model has no name for
        return ""


def _receiver_for(focus):
    """The Review widget of the napari window ``focus`` is in (None when it is in none, or in a dialog)."""
    from qtpy.QtWidgets import QApplication, QDockWidget

    if focus is None or QApplication.activeModalWidget() is not None:
        return None
    top = focus.window()
    for widget in list(_TARGETS):
        try:
            window = _real(widget.viewer).window._qt_window
            if top is window or (isinstance(top, QDockWidget) and _inside(top, window)):
                return widget
        except (RuntimeError, AttributeError):  # its Qt side (or its viewer) is gone
            _TARGETS.discard(widget)
    return None


def _make_router():
    from qtpy.QtCore import QEvent, QObject

    class _Router(QObject):
        def eventFilter(self, obj, event):  # noqa: N802 (Qt)
            if event.type() != QEvent.KeyPress:
                return False
            from qtpy.QtWidgets import QApplication

            from qtpy.QtWidgets import QWidget

            focus = QApplication.focusWidget()
            if focus is None and isinstance(obj, QWidget):
                focus = obj  # a press sent to a widget of an inactive window (scripts, tests)
            if obj is not focus:  # each press is offered to the focus widget once, not again to its parents
                return False
            widget = _receiver_for(focus)
            if widget is None:
                return False
            name = action_for(_event_key(event), bindings())
            if not routes(_focus_kind(focus, _real(widget.viewer)), name, event.isAutoRepeat()):
                return False
            ACTIONS[name][2](widget)
            return True  # handled: the table's letter search, a drop-down or a list never sees it

    return _Router()


class KeyRouter:
    """Installs one application event filter (see the module's docstring) for all viewers."""

    _filter = None

    @classmethod
    def install(cls) -> None:
        install_app_filter(cls, _make_router)


def install_app_filter(holder, make) -> None:
    """Install ``make()`` as an application event filter once, kept on ``holder._filter``."""
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None or holder._filter is not None:
        return
    holder._filter = make()
    holder._filter.setParent(app)  # lives as long as the application
    app.installEventFilter(holder._filter)


def _register_actions() -> None:
    from napari.components import ViewerModel
    from napari.settings import get_settings
    from napari.utils.action_manager import action_manager

    remapped = get_settings().shortcuts.shortcuts
    for name, (description, keys, _call) in ACTIONS.items():
        full = PREFIX + name
        if full in action_manager._actions:
            continue
        action_manager.register_action(full, _dispatch(name), description, ViewerModel)
        for key in remapped.get(full, keys):  # the user's keys when they remapped it
            action_manager.bind_shortcut(full, key)


def shortcuts(name: str) -> List[str]:
    """The keys bound to an action now (after any remapping)."""
    from napari.utils.action_manager import action_manager

    return [str(key) for key in action_manager._shortcuts.get(PREFIX + name, [])]


def help_text() -> str:
    """One line per action for the dock: "A  accept", ..."""
    lines = []
    for name, (description, _keys, _call) in ACTIONS.items():
        keys = " / ".join(shortcuts(name)) or "—"
        lines.append(f"{keys}: {description.split(',')[0].lower()}")
    return "\n".join(lines)
