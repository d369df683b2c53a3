"""Which predictor serves a network: the one choice the app, the widgets and the tests share.

Its own module because :mod:`.torch_predictor` (torch) builds on :mod:`.prediction` (numpy and ONNX
Runtime): the choice between them imports each only when it is made, so importing this (the app
starting) imports neither.
"""
from __future__ import annotations

from typing import Optional


def default_predictor_factory(model_name: str, checkpoint, device: str = "auto", engine: Optional[str] = None,
                              threads: Optional[int] = None):
    """The network straight from the ONNX graph an earlier run exported, where it runs on the
    CPU (no torch import: the UI does not stall for seconds while one loads), else built."""
    from .prediction import served_if_on_cpu

    served = served_if_on_cpu(model_name, checkpoint, device, engine, threads)
    if served is not None:
        return served
    from .torch_predictor import Predictor

    return Predictor(model_name, checkpoint=checkpoint, device=device, engine=engine, threads=threads)
