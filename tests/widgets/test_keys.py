"""The review keys (widgets/keys.py): the defaults are README's table and clear of napari's Labels
keys, a key reaches the Review widget of its own viewer, and a Qt key press is read the same
under PyQt5 and PyQt6 (whose keys and modifiers are enum members, not ints)."""
from pathlib import Path

import pytest

from napari_polyp.widgets import keys
from napari_polyp.widgets.click_mode import MODE_KEYS

README = Path(__file__).resolve().parents[2] / "README.md"
# the keys napari's Labels layer takes (the module docstring): ours must leave them alone
LABELS_KEYS = set("1234567EPFLZMXB[]-=")


def _readme_keys() -> set:
    """Every key in README's key table ("| **A** | accept | **H** | ..."), in napari's spelling."""
    lines = README.read_text(encoding="utf-8").splitlines()
    start = lines.index("| key | action | key | action |")
    found = set()
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        for cell in line.split("|")[1::2]:  # the key columns
            found.update(k.strip(" *") for k in cell.split("/") if k.strip())
    return found


def test_readmes_key_table_lists_every_default_key():
    defaults = {key for _what, keys_, _call in keys.ACTIONS.values() for key in keys_}
    assert _readme_keys() == defaults | set(MODE_KEYS) | {"Ctrl+Z"}


def test_no_default_key_is_a_labels_layer_key():
    defaults = [key for _what, keys_, _call in keys.ACTIONS.values() for key in keys_]
    assert not [key for key in defaults if key.upper() in LABELS_KEYS]
    assert len(defaults) == len(set(defaults))  # one action per key


class _Review:
    def __init__(self, viewer):
        self.viewer = viewer
        self.calls = []

    def save(self, status):
        self.calls.append(("save", status))

    def next(self):
        self.calls.append(("next",))


def test_an_action_calls_the_review_widget_of_the_viewer_it_was_pressed_in():
    first, second = object(), object()
    mine, other = _Review(first), _Review(second)
    keys._TARGETS.update((mine, other))
    try:
        keys._dispatch("reject")(first)
        keys._dispatch("next")(second)
    finally:
        keys._TARGETS.discard(mine)
        keys._TARGETS.discard(other)
    assert mine.calls == [("save", "rejected")] and other.calls == [("next",)]


@pytest.mark.parametrize("key, modifiers, spelled", [
    ("Key_A", (), "A"),
    ("Key_R", ("ShiftModifier",), "Shift+R"),
    ("Key_PageDown", (), "PageDown"),
    ("Key_PageDown", ("KeypadModifier",), "PageDown"),  # the keypad's PageDown is PageDown
])
def test_a_qt_key_press_is_read_in_app_models_spelling(qapp, key, modifiers, spelled):
    from qtpy.QtCore import QEvent, Qt
    from qtpy.QtGui import QKeyEvent

    flags = Qt.KeyboardModifier.NoModifier
    for name in modifiers:
        flags |= getattr(Qt.KeyboardModifier, name)
    event = QKeyEvent(QEvent.Type.KeyPress, getattr(Qt.Key, key), flags)
    assert keys._event_key(event) == spelled
    assert keys.action_for(keys._event_key(event), {"next": ["PageDown"], "reject": ["Shift-R"]}) == \
        {"PageDown": "next", "Shift+R": "reject"}.get(spelled)
