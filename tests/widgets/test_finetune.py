"""The Fine-tune dock widget in a real napari viewer (pytest-xvfb): one short
fine-tuning run at 64 px on a 6-image corrections dataset, and Cancel."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import models
from models.checkpoint import list_checkpoints, read_checkpoint, save_checkpoint, user_checkpoint_dir
from napari_polyp.corrections.dataset import CorrectionsDataset
from napari_polyp.widgets.finetune import BROWSE, FinetuneWidget
from napari_polyp.widgets.segment import SegmentWidget

WAIT_MS = 240_000  # 2 shared CPU cores


@pytest.fixture
def corrections(shared_data, tmp_path) -> Path:
    """6 real Kvasir-SEG items, downsized, saved through the corrections dataset (corrected/accepted)."""
    src = shared_data / "kvasir-seg"
    dataset = CorrectionsDataset(tmp_path / "corrections")
    for i, image_path in enumerate(sorted((src / "images").iterdir())[:6]):
        with Image.open(image_path) as im:
            image = np.asarray(im.convert("RGB").resize((96, 80)))
        with Image.open(src / "masks" / f"{image_path.stem}.png") as m:
            mask = np.asarray(m.convert("L").resize((96, 80), Image.NEAREST)) > 127
        dataset.save(image, mask.astype(np.uint8) * 255, stem=image_path.stem, model="microaunet",
                     threshold=0.5, status="corrected" if i % 2 else "accepted", reviewer="test")
    return dataset.root


@pytest.fixture
def start_checkpoint(tmp_path) -> Path:
    """A freshly saved random MicroAUNet checkpoint."""
    model = models.create_model("microaunet", checkpoint=False)
    path = tmp_path / "start" / "microaunet-random.pt"
    save_checkpoint(model, path, architecture="microaunet", variant=getattr(model, "variant", {}))
    return path


def _finetune_widget(viewer, data, start, epochs):
    widget = FinetuneWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Fine-tune")
    widget.set_data(data)
    widget.model_combo.setCurrentText("microaunet")
    widget.add_checkpoint_path(start)
    widget.epochs_radio.setChecked(True)
    widget.epochs_spin.setValue(epochs)
    widget.size_spin.setValue(64)
    widget.device_combo.setCurrentText("cpu")
    return widget


def _loads(path) -> None:
    header, _ = read_checkpoint(path, expected_architecture="microaunet")
    models.create_model("microaunet", checkpoint=path)
    assert header["training"]["init_checkpoint"]


def test_one_epoch_registers_checkpoint_for_segment(make_napari_viewer, qtbot, corrections, start_checkpoint):
    viewer = make_napari_viewer()
    segment = SegmentWidget(viewer)
    viewer.window.add_dock_widget(segment, name="Segment")
    segment.model_combo.setCurrentText("microaunet")
    assert not [p for p in list_checkpoints("microaunet") if Path(p).parent == user_checkpoint_dir()]

    widget = _finetune_widget(viewer, corrections, start_checkpoint, epochs=1)
    widget.force_check.setChecked(True)  # a random start may get worse: forced, it is the default either way
    assert widget.data_label.text().startswith("6 ")
    assert widget.checkpoint() == str(start_checkpoint)
    with qtbot.waitSignal(widget.finetuned, timeout=WAIT_MS) as signal:
        widget.start()
        assert widget.busy and not widget.start_button.isEnabled() and widget.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: not widget.busy, timeout=WAIT_MS)

    result = signal.args[0]
    assert widget.last_error is None and result is widget.last_result
    new = Path(result["checkpoint"])
    assert new.is_file() and new.parent == user_checkpoint_dir()
    _loads(new)
    # the plot got the loss of every step; the 6 items are cross-validated (5 folds, each item scored
    # by a fine-tune that never saw it), so before/after is claimed on all 6: the start network's
    # Dice is the baseline and each fold adds a point
    assert widget.plot.loss_points and len(widget.plot.dice_points) == 5 and widget.plot.baseline is not None
    widget.plot.grab()  # paints without error
    assert result["claim"] and result["validation"]["scheme"] == "cv"
    assert result["before"]["n"] == result["after"]["n"] == 6
    assert widget.dice_label.text().startswith("validation Dice: before") and "on 6 validation images" in \
        widget.dice_label.text()
    assert "95% interval, the items resampled" in widget.dice_label.text()  # how sure the claim is
    assert result["reason"] in widget.status_label.text()
    assert widget.progress.value() == widget.progress.maximum()
    assert result["preferred"]
    assert "now the default" in widget.status_label.text()
    # the Segment widget now offers it (first, as the default, when it was preferred)
    offered = [segment.checkpoint_combo.itemData(i) for i in range(segment.checkpoint_combo.count())]
    assert str(new) in offered
    if result["preferred"]:
        assert Path(segment.checkpoint()) == new
        assert "(default)" in segment.checkpoint_combo.currentText()
    # and the widget itself offers it as a start checkpoint
    starts = [widget.checkpoint_combo.itemData(i) for i in range(widget.checkpoint_combo.count())]
    assert str(new) in starts and starts[-1] == BROWSE
    assert widget.checkpoint() == str(start_checkpoint) and widget.size_spin.value() == 64  # choices kept
    assert widget.start_button.isEnabled()
    assert not widget.cancel_button.isEnabled()


def test_cancel_stops_early_and_leaves_a_loadable_checkpoint_or_none(make_napari_viewer, qtbot, corrections,
                                                                     start_checkpoint):
    viewer = make_napari_viewer()
    widget = _finetune_widget(viewer, corrections, start_checkpoint, epochs=200)
    widget.start()
    qtbot.waitUntil(lambda: bool(widget.plot.loss_points), timeout=WAIT_MS)
    widget.cancel_button.click()
    assert "cancelling" in widget.status_label.text()
    qtbot.waitUntil(lambda: not widget.busy, timeout=WAIT_MS)

    result = widget.last_result
    assert widget.last_error is None and result is not None
    assert result["stopped_early"] is True
    assert "cancelled" in widget.status_label.text()
    assert len(widget.plot.loss_points) < 200  # two steps per epoch here: far from the 400 asked for
    written = sorted(user_checkpoint_dir().glob("*.pt"))
    if result["checkpoint"]:
        assert written == [Path(result["checkpoint"])]
        _loads(result["checkpoint"])
    else:
        assert written == []
    for leftover in user_checkpoint_dir().rglob("*"):  # no half-written files anywhere
        assert ".tmp" not in leftover.name
    assert widget.start_button.isEnabled() and not widget.cancel_button.isEnabled()


def test_start_without_data_or_checkpoint_explains(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    widget = FinetuneWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Fine-tune")
    widget.start()
    assert not widget.busy and "corrections dataset" in widget.last_error
    widget.set_data("/nonexistent/folder")
    assert "⚠" in widget.data_label.text()
    widget.checkpoint_combo.setCurrentText(BROWSE)
    widget.start()
    assert not widget.busy and "checkpoint" in widget.last_error


def test_new_default_reaches_plugin_docked_lists(make_napari_viewer, start_checkpoint):
    """Docked through napari's plugin path each widget gets its own viewer proxy: the
    refresh must not depend on which viewer object a widget holds."""
    from models.checkpoint import set_preferred

    from napari_polyp.widgets.finetune import announce_checkpoints

    viewer = make_napari_viewer()
    _, segment = viewer.window.add_plugin_dock_widget("napari-polyp", "Segment")
    _, review = viewer.window.add_plugin_dock_widget("napari-polyp", "Review")
    assert segment.viewer is not viewer  # the proxy the old allWidgets() scan tripped over
    segment.model_combo.setCurrentText("microaunet")
    review.model_combo.setCurrentText("microaunet")
    review.add_checkpoint_path(start_checkpoint)  # a browsed file stays chosen
    new = user_checkpoint_dir() / "microaunet-finetuned-x.pt"
    save_checkpoint(models.create_model("microaunet", checkpoint=False), new, architecture="microaunet")
    set_preferred("microaunet", new)

    announce_checkpoints("microaunet")
    assert Path(segment.checkpoint()) == new.resolve() and "(default)" in segment.checkpoint_combo.currentText()
    assert new.name in segment.card_label.text() or "finetuned" in segment.checkpoint_combo.currentText()
    assert review.checkpoint() == str(start_checkpoint)
    assert str(new.resolve()) in [review.checkpoint_combo.itemData(i) for i in range(review.checkpoint_combo.count())]
    announce_checkpoints("eam-net")  # another network's news changes nothing here
    assert Path(segment.checkpoint()) == new.resolve()

def test_the_data_line_names_an_item_left_out(corrections):
    """A mask file gone from the folder: the item is left out of training, and the data line says
    which and why (it said "5 accepted/corrected items" and nothing more)."""
    from napari_polyp.widgets.finetune import describe_data

    assert describe_data(str(corrections)) == "6 accepted/corrected items"
    gone = sorted((corrections / "masks").iterdir())[0]
    gone.unlink()
    line = describe_data(str(corrections))
    assert line.startswith("5 accepted/corrected items; ⚠ ") and gone.stem in line and "missing" in line
