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


# -- item 8: the window fits the screen ---------------------------------------------------------
from napari_polyp.app import WINDOW, window_plan  # noqa: E402


@pytest.mark.parametrize("screen", [(1366, 768), (1024, 768), (1280, 720), (1920, 1080)])
def test_the_window_fits_the_available_screen(screen):
    plan = window_plan(*screen, frame=(0, 32))
    width, height = plan["window"]
    assert width <= screen[0] and height + 32 <= screen[1]
    assert (width, height) == (min(WINDOW[0], screen[0]), min(WINDOW[1], screen[1] - 32))


def test_a_narrow_screen_puts_napari_layer_panel_beside_the_workspace():
    assert window_plan(1024, 768)["layers_beside_workspace"]
    assert not window_plan(1366, 768)["layers_beside_workspace"]


# -- item 9: the fine-tune data line is read again -----------------------------------------------
def test_the_data_line_follows_the_folder_as_it_fills(tmp_path):
    import numpy as np

    from napari_polyp.corrections import CorrectionsDataset
    from napari_polyp.widgets.finetune import describe_data

    folder = tmp_path / "corrections"
    assert describe_data(folder).startswith("⚠") and str(folder) in describe_data(folder)
    mask = np.zeros((16, 16), np.uint8)
    mask[4:9, 4:9] = 1
    CorrectionsDataset(folder).save(np.full((16, 16, 3), 90, np.uint8), mask, stem="a", status="accepted")
    assert describe_data(folder) == "1 accepted/corrected items"
    assert describe_data("") == ""


# -- item 12: the plugin's reader is napari's preferred one for its types -------------------------
def test_the_plugin_reader_becomes_the_preferred_one_unless_the_user_chose(monkeypatch):
    from types import SimpleNamespace

    from napari_polyp.app import prefer_plugin_reader, reader_patterns

    patterns = reader_patterns()
    assert {"*.mp4", "*.jpg", "*.png"} <= set(patterns)
    settings = SimpleNamespace(plugins=SimpleNamespace(extension2reader={"*.png": "napari"}))
    added = prefer_plugin_reader(settings, patterns)
    assert "*.png" not in added and settings.plugins.extension2reader["*.png"] == "napari"  # the user's choice
    assert settings.plugins.extension2reader["*.mp4"] == "napari-polyp"
    assert prefer_plugin_reader(settings, patterns) == []  # once

    from napari.plugins import utils as plugin_utils

    monkeypatch.setattr(plugin_utils, "get_settings", lambda: settings)
    assert plugin_utils.get_preferred_reader("clip.mp4") == "napari-polyp"  # what napari's File ▸ Open asks


# -- item 10: what an image from disk shows is asked once per folder -----------------------------
def test_a_task_is_asked_once_per_folder(tmp_path, monkeypatch):
    from napari_polyp.widgets import _common

    monkeypatch.setattr(_common, "_TASK_ANSWERS", {})
    first, second = tmp_path / "skin" / "a.jpg", tmp_path / "skin" / "b.png"
    assert _common.known_task({"task": "polyp"}) == "polyp"  # a sample says what it shows
    assert _common.known_task({"source_path": str(first)}) is None  # nobody knows: ask
    metadata = {"source_path": str(first)}
    _common.remember_task(metadata, "skin")
    assert metadata["task"] == "skin" and _common.known_task({"source_path": str(second)}) == "skin"
    assert _common.known_task({"source_path": str(tmp_path / "gut" / "c.jpg")}) is None  # another folder
    assert _common.task_key(tmp_path / "clip.mp4") == str(tmp_path / "clip.mp4")  # a video is its own


# -- item 11: Figure… is a titled grid with colour bars ---------------------------------------------
def test_the_figure_is_a_titled_grid_with_a_colour_bar_per_map():
    import numpy as np

    from napari_polyp.display import figure_grid

    image = np.full((40, 60, 3), 120, np.uint8)
    mask = np.zeros((40, 60), np.uint8)
    mask[10:30, 20:40] = 1
    maps = [(f"network: map {i}", np.random.default_rng(i).random((40, 60)), "inferno") for i in range(4)]
    figure = figure_grid(image, mask, maps, mask_title="mask: MicroAUNet")
    cell_h, cell_w = 40 + 22, 60 + 51
    assert figure.shape == (2 * cell_h + 8, 3 * cell_w + 2 * 8, 3)  # 6 panels, 3 a row: not one long row
    title = figure[:22, :cell_w]
    assert (title < 128).any()  # written
    bar = figure[22:22 + 40, 60:60 + 14]  # the first map's colour bar is in the third cell, not the first
    assert (bar == 255).all()
    third = figure[22:22 + 40, 2 * (cell_w + 8) + 60:2 * (cell_w + 8) + 74]
    assert not (third == 255).all() and third[0].mean() > third[-1].mean()  # bright at the top
