"""The review keys, registered as napari actions (Preferences ▸ Shortcuts ▸ Viewer key
bindings lists them, and a remapping there is kept in napari's settings).

Each action calls the Review widget (standalone or inside the workspace) of the viewer
the key was pressed in. The default keys avoid those napari's Labels layer uses (1-7,
E, P, F, L, Z, M, X, B, [, ], -, =), so they work while the mask is being painted.
"""
from __future__ import annotations

import weakref
from typing import Callable, Dict, List, Tuple

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
    """Make the keys act on ``widget`` (a ReviewWidget) when pressed in its viewer."""
    _register_actions()
    _TARGETS.add(widget)


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
