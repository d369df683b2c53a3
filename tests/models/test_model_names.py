"""A network name a user types is checked once, in models, before anything heavy loads."""
import subprocess
import sys

import pytest

import models


def test_an_unknown_name_is_one_line_naming_the_segmenters():
    with pytest.raises(models.UnknownModelError) as caught:
        models.check_model_name("unet")
    assert str(caught.value) == f"unknown model 'unet'; available: {', '.join(models.list_models())}"
    assert "click-refiner" not in str(caught.value)  # not a network a --model can name
    with pytest.raises(models.UnknownModelError):
        models.check_model_name("click-refiner")
    models.check_model_name("click-refiner", kind=models.CLICK_REFINER)
    models.check_model_name("microaunet")


def test_the_card_is_found_where_it_always_was_without_torch():
    code = ("import sys, models, models.cards, models._registry\n"
            "assert models.ModelCard is models.cards.ModelCard is models._registry.ModelCard\n"
            "assert models.cards.MICROAUNET.kind == models.SEGMENTER\n"
            "print('torch' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"
