"""The shipped sample images: real, small, cited, with their ground truth."""
import numpy as np

from napari_polyp.io import samples


def test_samples_are_few_small_and_cited():
    images = sorted(samples.SAMPLE_DIR.glob("*.jpg"))
    assert 1 <= len(images) <= 5
    citation = samples.CITATION.read_text()
    assert "Jha" in citation and "MMM 2020" in citation
    assert "Mendonça" in citation and "EMBC 2013" in citation
    for image in images:
        assert image.stem in citation
        assert image.with_suffix(".png").is_file()


def test_sample_commands_return_image_and_hidden_ground_truth():
    for command in (samples.colonoscopy_sample, samples.dermoscopy_sample):
        (image, image_meta, image_kind), (mask, mask_meta, mask_kind) = command()
        assert image_kind == "image" and image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] == 3
        assert max(image.shape[:2]) <= 384 and image.std() > 10
        assert mask_kind == "labels" and mask.shape == image.shape[:2] and set(np.unique(mask)) == {0, 1}
        assert mask_meta["visible"] is False
        assert "citation" in image_meta["metadata"]


def test_samples_open_from_napari_menu(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-polyp", "colonoscopy")
    viewer.open_sample("napari-polyp", "dermoscopy")
    assert len(viewer.layers) == 4
