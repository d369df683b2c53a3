"""Which network the app starts with (models.default_model): the cards decide."""
import dataclasses

import pytest

import models
from models.checkpoint import set_preferred
from models import ModelCard


def _card(name, task="polyp", dice=None, cpu_ms=100.0, elsewhere=None):
    card = ModelCard(name=name, title=name, arxiv="x", task=task, input_size=64, cpu_ms=cpu_ms)
    if dice is None:
        return card
    metrics = {"dice": dice}
    if elsewhere is not None:
        metrics["other_centres"] = {f"centre{i}": {"n": 20, "dice": d} for i, d in enumerate(elsewhere)}
    return dataclasses.replace(card, checkpoint=f"{name}.pt", training={"metrics": metrics})


def test_dice_at_other_centres_weighs_as_much_as_validation():
    cards = [_card("fits-kvasir", dice=0.93, elsewhere=(0.50, 0.58)),  # mean 0.54 -> 0.735
             _card("generalises", dice=0.91, elsewhere=(0.62, 0.66)),  # mean 0.64 -> 0.775
             _card("unmeasured", dice=0.95)]  # no other-centre figures: ranks after the measured
    assert models.default_model("polyp", cards) == "generalises"
    assert cards[1].other_centre_dice == pytest.approx(0.64)
    assert "other centres centre0 0.620, centre1 0.660" in cards[1].summary()
    assert models.default_model("polyp", cards[2:]) == "unmeasured"


def test_odd_other_centre_figures_in_a_header_are_ignored():
    card = dataclasses.replace(_card("x", dice=0.9), training={"metrics": {
        "dice": 0.9, "other_centres": {"a": {"dice": "high"}, "b": "0.7", "c": {"dice": True}, "d": {"dice": 0.5}}}})
    assert card.other_centre_scores == {"d": 0.5}
    assert dataclasses.replace(card, training={"metrics": {"other_centres": [1]}}).other_centre_scores == {}


def test_the_most_accurate_trained_network_that_answers_within_a_second_wins():
    cards = [_card("fast", dice=0.60, cpu_ms=30), _card("accurate", dice=0.85, cpu_ms=600),
             _card("too-slow", dice=0.90, cpu_ms=1600), _card("untrained", cpu_ms=10),
             _card("skin-net", task="skin", dice=0.95, cpu_ms=500)]
    assert models.default_model("polyp", cards) == "accurate"
    assert models.default_model("colonoscopy", cards) == "accurate"  # the app's task names map to card tasks
    assert models.default_model("dermoscopy", cards) == "skin-net"
    assert models.default_model("polyp", cards, max_cpu_ms=2000) == "too-slow"


def test_with_nothing_trained_the_fastest_network_of_the_task():
    cards = [_card("slow", cpu_ms=900), _card("quick", cpu_ms=40), _card("skin", task="skin", cpu_ms=1)]
    assert models.default_model("polyp", cards) == "quick"
    with pytest.raises(KeyError, match="no network for task"):
        models.default_model("retina", cards)


def test_the_real_cards_pick_a_trained_network_per_task():
    for task in models.TASKS:
        card = models.get_card(models.default_model(task))
        assert card.task == models.TASKS[task] and card.trained


def test_live_plays_the_best_network_among_those_that_keep_up_with_a_video():
    fast_limit = models.MAX_LIVE_CPU_MS
    cards = [_card("tiny", dice=0.80, cpu_ms=15, elsewhere=(0.2, 0.4)),
             _card("keeps-up", dice=0.93, cpu_ms=fast_limit - 1, elsewhere=(0.55, 0.69)),
             _card("accurate-but-slow", dice=0.92, cpu_ms=fast_limit + 300, elsewhere=(0.65, 0.70))]
    assert models.default_model("polyp", cards) == "accurate-but-slow"
    assert models.live_model("polyp", cards) == "keeps-up"
    assert models.live_model("polyp", cards[:1] + cards[2:]) == "tiny"
    assert [models.keeps_up_live(c) for c in cards] == [True, True, False]
    assert not models.keeps_up_live(_card("unmeasured", cpu_ms=0.0))


def test_the_real_cards_pick_a_live_network_that_keeps_up():
    card = models.get_card(models.live_model("polyp"))
    assert card.task == "polyp" and card.trained and models.keeps_up_live(card)


def test_a_task_mismatch_names_both_tasks_and_the_network_that_fits():
    polyp_net, skin_net = models.default_model("polyp"), models.default_model("skin")
    message = models.task_mismatch(polyp_net, "dermoscopy", subject="--task names")
    assert message.startswith("--task names dermoscopy, but ") and "colonoscopy images" in message
    assert f"({skin_net} fits dermoscopy images)" in message
    assert models.task_mismatch(polyp_net, "skin")  # a card task works as well as a TASKS key
    assert models.task_mismatch(skin_net, "colonoscopy") and polyp_net in models.task_mismatch(skin_net, "polyp")
    assert models.task_mismatch(polyp_net, "colonoscopy") == "" and models.task_mismatch(polyp_net, None) == ""


def test_a_fine_tuned_default_checkpoint_changes_the_weights_not_the_network(tmp_path, monkeypatch):
    """The user made a fine-tune on a few corrections EA-DK's default: its header has no other-centre
    figures and a lower, cross-validated Dice. The app still starts with EA-DK (with those weights),
    and Live still plays it: the network choice compares the shipped checkpoints' figures."""
    monkeypatch.setenv("NAPARI_POLYP_HOME", str(tmp_path / "home"))
    polyp, live = models.default_model("polyp"), models.live_model("polyp")
    model = models.create_model(polyp, checkpoint=False)
    path = tmp_path / "fine-tuned.pt"
    models.save_checkpoint(model, path, architecture=polyp, training={"size": 160, "cpu_ms": 516.6},
                           metrics={"dice": 0.61})
    set_preferred(polyp, path)
    assert models.default_checkpoint(polyp) == path.resolve()
    assert models.get_card(polyp).validation_dice == 0.61  # the card of the weights the app runs
    assert models.default_model("polyp") == polyp and models.live_model("polyp") == live
    assert models.shipped_card(polyp).validation_dice > 0.9

