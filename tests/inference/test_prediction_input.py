"""A predictor converts each image to 8-bit RGB once, at the door (``PredictorBase``), whichever
method a caller enters by; the engines (``_predict_rgb``) get BxHxWx3 uint8 only."""
import numpy as np
import pytest

from napari_polyp.inference import prediction
from napari_polyp.inference.prediction import Prediction, PredictorBase


class Recording(PredictorBase):
    """An engine that records what it was given and answers an empty mask per image."""

    def __init__(self):
        self.given = []

    def _predict_rgb(self, images, attention):
        self.given.append(images)
        return [Prediction(np.zeros(image.shape[:2], np.float32)) for image in images]


@pytest.fixture
def conversions(monkeypatch):
    calls = []

    def counted(image, *args, **kwargs):
        calls.append(np.shape(image))
        return convert(image, *args, **kwargs)

    convert = prediction.as_rgb_uint8
    monkeypatch.setattr(prediction, "as_rgb_uint8", counted)
    return calls


def test_one_grey_float_image_is_converted_once(conversions):
    predictor = Recording()
    predictor.predict(np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4))
    (images,) = predictor.given
    assert images.shape == (1, 3, 4, 3) and images.dtype == np.uint8
    assert conversions == [(3, 4)]


def test_a_batch_is_converted_once_per_image(conversions):
    predictor = Recording()
    out = predictor.predict_batch([np.zeros((5, 6), np.uint16), np.ones((5, 6, 4), np.uint8)])
    (images,) = predictor.given
    assert images.shape == (2, 5, 6, 3) and images.dtype == np.uint8 and len(out) == 2
    assert conversions == [(5, 6), (5, 6, 4)]


def test_a_3d_array_is_refused_by_predict_batch_not_misread():
    with pytest.raises(ValueError, match="BxHxWxC"):
        Recording().predict_batch(np.zeros((5, 6, 3), np.uint8))
