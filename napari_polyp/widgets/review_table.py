"""The Review tab's item table: one row per item (status, network, Dice, IoU, pixels changed,
uncertainty), sortable by any column, its rows in the order Next / Previous walk.

Only display: what a row says comes from :meth:`ReviewSession.table_row`, which item is
next from :meth:`ReviewSession.neighbour`.
"""
from __future__ import annotations

from typing import List, Optional

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem

STATUS_MARK = {"unreviewed": "·", "accepted": "✓", "corrected": "✎", "rejected": "✗", "unreadable": "⚠",
               # a video's frames
               "key": "◆", "propagated": "↝", "doubtful": "↝?", "predicted": "·"}


def status_text(status: str) -> str:
    """The status cell: its mark, then the words after the status word when there are some
    ("accepted from key 3" -> "✓ key 3": the column is narrow; the tooltip has the whole), else
    the status."""
    word, _, rest = status.partition(" ")
    mark = STATUS_MARK.get(word, "")
    rest = rest.replace("from key ", "key ")
    return f"{mark} {rest if rest and mark else status}".strip()
# (title, table_row key, width in px; 0 = takes the rest). Fixed widths: no sideways scrolling in a narrow
# dock. IoU is left to the scores line and the CSV: the item's name needs the room more.
COLUMNS = (("item", "item", 0), ("status", "status", 94), ("network", "network", 82), ("Dice", "dice", 46),
           ("Δ px", "pixels_changed", 50), ("uncert.", "uncertainty", 52))
NUMBERS = ("dice", "pixels_changed", "uncertainty")
# left out, in this order, when the dock is too narrow: the uncertainty ranks what to look at next (a
# video's carried frames by their doubt); the pixels a person changed are in the CSV
HIDE_FIRST = ("pixels_changed", "uncertainty")
LEAST_ITEM_WIDTH = 130  # px the item's name keeps before a column is left out: at 90 the 1366×768 dock
# showed Kvasir-SEG's 29-character names as 'cju0….jpg', every row alike; at 130 about 17 characters


class SortItem(QTableWidgetItem):
    """A cell that sorts by its value (unknown values last), shown as text."""

    def __init__(self, text: str, key):
        super().__init__(text)
        self.key = key

    def __lt__(self, other):  # noqa: D105
        mine, theirs = self.key, getattr(other, "key", None)
        if mine is None or theirs is None:
            return theirs is None and mine is not None
        return mine < theirs


def row_cells(index: int, row: dict) -> List[SortItem]:
    """The cells of one item's row (``row``: ``ReviewSession.table_row``); the first holds the item's index."""
    status, network = row["status"], row.get("network") or ""
    cells = [SortItem(row["item"], index), SortItem(status_text(status), status),
             SortItem(network.split(" ")[0], network or None)]  # the name; "+TTA" and the like in the tooltip
    for key in NUMBERS:
        value = row[key]
        text = "" if value is None else f"{value:d}" if isinstance(value, int) else f"{value:.3f}"
        cells.append(SortItem(text, value))
    cells[0].setData(Qt.UserRole, index)
    cells[0].setToolTip(row["item"])
    cells[1].setToolTip(status)
    cells[2].setToolTip(network or "not predicted with the chosen network yet")
    if row.get("iou") is not None:
        cells[3].setToolTip(f"Dice {row['dice']:.3f}, IoU {row['iou']:.3f} against the reference mask")
    return cells


class ItemTable(QTableWidget):
    """The items, one row each; ``indices()`` lists them top to bottom as shown (sorting included).

    Letters typed here are Review's keys (see :mod:`.keys`), not a search of the first column."""

    def __init__(self, parent=None):
        super().__init__(0, len(COLUMNS), parent)
        self.setHorizontalHeaderLabels([title for title, _, _ in COLUMNS])
        self.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.setSelectionMode(QAbstractItemView.SingleSelection)
        self.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.verticalHeader().setVisible(False)
        self.verticalHeader().setDefaultSectionSize(20)
        header = self.horizontalHeader()
        header.setMinimumSectionSize(30)
        for column, (_, _, width) in enumerate(COLUMNS):
            header.setSectionResizeMode(column, QHeaderView.Stretch if not width else QHeaderView.Interactive)
            if width:
                header.resizeSection(column, width)
        self.setTextElideMode(Qt.ElideMiddle)  # long stems keep their start and end
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.setSortingEnabled(True)
        self.setMinimumHeight(110)
        self.setToolTip("Click an item to open it; click a column title to sort by it. Dice/IoU: the "
                        "prediction against the reference mask (masks/ beside images/); network: the one "
                        "behind the item's mask; Δ px: pixels the annotator changed")

    def resizeEvent(self, event):  # noqa: N802 (Qt)
        super().resizeEvent(event)
        self.fit_columns()

    def fit_columns(self) -> None:
        """Leave out the least needed columns (pixels changed, then uncertainty: both in the CSV)
        while the item's name would get less than LEAST_ITEM_WIDTH px; never a sideways scroll."""
        keys = [key for _, key, _ in COLUMNS]
        room = self.viewport().width() - sum(width for _, key, width in COLUMNS if width and key not in HIDE_FIRST)
        for key in reversed(HIDE_FIRST):  # shown while there is room, the most needed first
            width = next(w for _, k, w in COLUMNS if k == key)
            show = room - width >= LEAST_ITEM_WIDTH
            self.setColumnHidden(keys.index(key), not show)
            room -= width if show else 0

    def keyboardSearch(self, search: str) -> None:  # noqa: N802 (Qt)
        """No type-to-search: the letters are the review keys (A accept, N next, ...)."""

    def fill(self, rows) -> None:
        """Replace the rows: ``rows`` is [(index, table_row dict)] in the order to show."""
        self.blockSignals(True)
        self.setSortingEnabled(False)
        self.horizontalHeader().setSortIndicator(-1, Qt.AscendingOrder)
        self.setRowCount(len(rows))
        for row, (index, values) in enumerate(rows):
            for column, cell in enumerate(row_cells(index, values)):
                self.setItem(row, column, cell)
        self.setSortingEnabled(True)
        self.blockSignals(False)

    def indices(self) -> List[int]:
        return [self.item(r, 0).data(Qt.UserRole) for r in range(self.rowCount())]

    def row_of(self, index: Optional[int]) -> int:
        for r in range(self.rowCount()):
            cell = self.item(r, 0)
            if cell is not None and cell.data(Qt.UserRole) == index:
                return r
        return -1

    def select(self, index: Optional[int]) -> None:
        """Highlight the row of ``index`` (none when it is not shown), without signals."""
        self.blockSignals(True)
        row = self.row_of(index)
        self.clearSelection()
        if row >= 0:
            self.selectRow(row)
            self.scrollToItem(self.item(row, 0))
        self.blockSignals(False)

    def update_row(self, index: int, values: dict) -> None:
        """New cells for one item, where it is (a changed cell must not move rows under the cursor)."""
        row = self.row_of(index)
        if row < 0:
            return
        sorting = self.isSortingEnabled()
        self.setSortingEnabled(False)
        self.blockSignals(True)
        for column, cell in enumerate(row_cells(index, values)):
            self.setItem(row, column, cell)
        self.blockSignals(False)
        self.setSortingEnabled(sorting)

    def selected_index(self) -> Optional[int]:
        rows = self.selectionModel().selectedRows()
        return self.item(rows[0].row(), 0).data(Qt.UserRole) if rows else None
