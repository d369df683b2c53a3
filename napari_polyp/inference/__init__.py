"""The prediction path: from an image, or a playing video, to a network's probability map and mask.

- :mod:`.prediction`: what a prediction is (:class:`Prediction`, ``binary_mask``), the network's
  input (``network_input``, ``tta_fits``) and a network served from its cached ONNX graph (no torch)
- :mod:`.torch_predictor`: :class:`Predictor`, the network built in torch from its checkpoint, and
  its pre-processing (``preprocess``, ``normalise``, ``resolve_device``)
- :mod:`.predictors`: which of the two serves a network (``default_predictor_factory``)
- :mod:`.engine`: what runs the network (ONNX Runtime or torch runners), the ONNX export and its cache
- :mod:`.resample`: numpy resizing that matches torch's ``F.interpolate`` (no torch)
- :mod:`.live`: Live playback of a video (``live_masks``, ``PlaybackClock``, the optical-flow carrier)
- :mod:`.flow`: a probability map carried from frame to frame by optical flow (``FlowWarp``), which
  Live and propagation (:mod:`napari_polyp.video`) share
- :mod:`.refiner`: the click refiner on arrays (its runner and input, ``Click``), behind the click
  session (:mod:`napari_polyp.corrections.clicks`) and propagation

The names below were this package's when it was one module; they are imported from their modules
when first asked for (PEP 562), so that ``from napari_polyp.inference import Predictor`` imports
torch while importing :mod:`.prediction`, :mod:`.resample` or :mod:`.live` does not (the app's
window comes up before torch is loaded, if it is loaded at all).
"""
from __future__ import annotations

_FROM_TORCH_PREDICTOR = ("Predictor", "normalise", "preprocess", "probability_with_flips", "resolve_device")
_FROM_PREDICTION = ("Prediction", "PredictorBase", "TTA_FLIPS")

__all__ = [*_FROM_TORCH_PREDICTOR, *_FROM_PREDICTION]


def __getattr__(name: str):
    # plain relative imports (not importlib with a name) so that import-linter sees these edges
    if name in _FROM_TORCH_PREDICTOR:
        from . import torch_predictor as home
    elif name in _FROM_PREDICTION:
        from . import prediction as home
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(home, name)


def __dir__():
    return sorted(set(globals()) | set(__all__))
