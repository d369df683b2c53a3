"""The workspace's rules that need no window (issue 24, items 4 and 7): which layer clean-up
acts on, and which key presses go to the Review widget whatever has focus."""
import pytest

from napari_polyp.layers import is_mask_role
from napari_polyp.widgets.keys import CANVAS, OTHER, TEXT, action_for, routes


@pytest.mark.parametrize("role, is_mask", [("mask", True), (None, True), ("reference", False),
                                           ("strokes", False), ("disagreement", False), ("live", False)])
def test_clean_up_acts_on_masks_never_on_overlays(role, is_mask):
    assert is_mask_role(role) is is_mask


BINDINGS = {"accept": ["A"], "reject": ["Shift-R"], "next": ["N", "PageDown"], "previous": ["Shift-N", "PageUp"],
            "run": ["R"]}


@pytest.mark.parametrize("key, action", [("A", "accept"), ("Shift+R", "reject"), ("R", "run"),
                                         ("PageDown", "next"), ("Shift+N", "previous"), ("B", None),
                                         ("Ctrl+A", None), ("", None)])
def test_a_key_names_its_action_in_either_spelling(key, action):
    assert action_for(key, BINDINGS) == action


def test_a_remapped_key_is_the_one_that_counts():
    assert action_for("J", {**BINDINGS, "accept": ["J"]}) == "accept"
    assert action_for("A", {**BINDINGS, "accept": ["J"]}) is None


def test_keys_go_to_review_from_a_table_or_drop_down_never_from_text():
    assert routes(OTHER, "accept")  # the item table, a drop-down, a button, the layer list
    assert not routes(TEXT, "accept")  # the note, a spin box: the letter is text
    assert not routes(CANVAS, "accept")  # napari's own handling calls the action there
    assert not routes(OTHER, None)  # not one of ours: left to the widget


def test_a_held_key_walks_but_never_saves_twice():
    assert routes(OTHER, "next", repeated=True)
    assert not routes(OTHER, "accept", repeated=True)
