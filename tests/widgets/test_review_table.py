"""The Review table: fixed narrow columns, the least needed left out first in a narrow dock."""
from napari_polyp.widgets.review_table import COLUMNS, LEAST_ITEM_WIDTH, ItemTable, status_text

ROW = {"item": "frame_0007", "status": "doubtful from key 5", "network": "carried", "dice": None, "iou": None,
       "corrected_dice": None, "pixels_changed": 120, "uncertainty": 0.9, "note": ""}


def _hidden(table):
    return [key for column, (_, key, _) in enumerate(COLUMNS) if table.isColumnHidden(column)]


def test_a_narrow_dock_leaves_out_the_pixels_changed_before_the_uncertainty(qtbot):
    table = ItemTable()
    qtbot.addWidget(table)
    table.fill([(7, ROW)])
    table.resize(700, 300)
    table.show()
    qtbot.waitExposed(table)
    assert _hidden(table) == []
    fixed = sum(width for _, key, width in COLUMNS if width and key not in ("pixels_changed", "uncertainty"))
    table.resize(fixed + 52 + LEAST_ITEM_WIDTH + 10 + table.verticalScrollBar().sizeHint().width() + 8, 300)
    qtbot.waitUntil(lambda: _hidden(table) == ["pixels_changed"])
    table.resize(fixed + 60, 300)
    qtbot.waitUntil(lambda: set(_hidden(table)) == {"pixels_changed", "uncertainty"})


def test_status_cells_are_short_and_keep_the_whole_in_the_tooltip(qtbot):
    table = ItemTable()
    qtbot.addWidget(table)
    table.fill([(7, ROW)])
    assert status_text("doubtful from key 5") == "↝? key 5" and status_text("accepted from key 3") == "✓ key 3"
    assert table.item(0, 1).text() == "↝? key 5" and table.item(0, 1).toolTip() == "doubtful from key 5"
