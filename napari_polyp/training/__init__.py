"""Headless training, evaluation and fine-tuning (shared by the CLI, the widgets and tests). The
cores of the commands: ``trainer`` (``napari-polyp train``), ``finetune``, ``evaluate`` and
``click_trainer`` (``train-clicks``); no argparse here, each command's adapter is in
:mod:`napari_polyp.commands`.

    from napari_polyp.training import TrainConfig, iter_train, train
    from napari_polyp.training.finetune import finetune, iter_finetune
    from napari_polyp.training.evaluate import evaluate
    from napari_polyp.training.click_trainer import ClickTrainConfig, train_clicks

``iter_train`` yields :class:`TrainEvent` objects ("start", "baseline", "step",
"epoch", "done"); pass ``should_stop=callable`` to cancel cleanly (the last
validated checkpoint is kept).
"""
from .metrics import METRIC_NAMES, MeanScores, per_image_scores
from .trainer import TrainConfig, TrainEvent, iter_train, train

__all__ = ["METRIC_NAMES", "MeanScores", "TrainConfig", "TrainEvent", "iter_train", "per_image_scores", "train"]
