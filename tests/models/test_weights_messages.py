"""Files refused as weights are named in napari-polyp's words (issue 25): never torch's advice to
load with weights_only=False, and a text file is called a text file, not 'Python objects'."""
import pickle

import pytest

from models.checkpoint import CheckpointError, read_checkpoint


class Payload:  # any class: a file holding it would run code if loaded unsafely
    pass


@pytest.fixture
def object_file(tmp_path):
    path = tmp_path / "objects.pt"
    path.write_bytes(pickle.dumps({"x": Payload()}))
    return path


def test_a_text_file_given_as_a_checkpoint_is_called_a_text_file(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("these are my notes, not weights\n")
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(path)
    assert "is a text file" in str(caught.value) and "Python objects" not in str(caught.value)


def test_a_file_of_python_objects_is_refused_without_torchs_advice(object_file):
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(object_file)
    message = str(caught.value)
    assert "Python objects" in message and "weights_only" not in message and "\n" not in message


def test_resume_from_a_state_file_of_objects_is_refused_in_our_words(tmp_path, object_file):
    from napari_polyp.training import trainer

    (tmp_path / trainer.STATE_FILE).write_bytes(object_file.read_bytes())
    (tmp_path / "last.pt").write_bytes(b"")
    with pytest.raises(CheckpointError) as caught:
        trainer._load_state(tmp_path)
    message = str(caught.value)
    assert "cannot be read to resume" in message and "Python objects" in message and "weights_only" not in message


def test_backbone_weights_of_objects_are_refused_without_torchs_advice(tmp_path, object_file):
    from models._backbones import BackboneWeightsError, create_backbone

    weights = tmp_path / "efficientnet_b0.pth"
    weights.write_bytes(object_file.read_bytes())
    with pytest.raises(BackboneWeightsError) as caught:
        create_backbone("efficientnet_b0", True, weights)
    assert "weights_only" not in str(caught.value) and "Python objects" in str(caught.value)
