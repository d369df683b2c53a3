"""Opening a PNG must not pay for torch: the readers, masks and the corrections store import without it."""
import subprocess
import sys

import pytest

TORCH_FREE = ("napari_polyp.io", "napari_polyp.io.readers", "napari_polyp.io.writers", "napari_polyp.io.samples",
              "napari_polyp.io.atomic", "napari_polyp.io.skipped",
              "napari_polyp.corrections", "napari_polyp.corrections.review", "napari_polyp.layers",
              "napari_polyp.inference", "napari_polyp.inference.resample", "napari_polyp.inference.prediction",
              "napari_polyp.inference.predictors", "napari_polyp.inference.live")


@pytest.mark.parametrize("module", TORCH_FREE)
def test_importing_leaves_torch_out(module):
    code = (f"import sys, {module}; "
            "heavy = [m for m in ('torch', 'torchvision', 'timm', 'models') if m in sys.modules]; "
            "print(','.join(heavy))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "", f"importing {module} imported {done.stdout.strip()}"


def test_reading_an_image_and_a_dataset_leaves_torch_out(tmp_path):
    code = (
        "import sys, numpy as np\n"
        "from napari_polyp.io.readers import read_paths\n"
        "from napari_polyp.corrections import CorrectionsDataset\n"
        "from napari_polyp.inference.resample import resize_map\n"
        f"ds = CorrectionsDataset({str(tmp_path / 'ds')!r})\n"
        "ds.save(np.zeros((8, 8, 3), np.uint16), np.eye(8), stem='a', status='accepted')\n"
        "read_paths(str(ds.image_path(ds.get('a'))))\n"
        "ds.load('a'); resize_map(np.zeros((4, 4)), (8, 8))\n"
        "print('torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "False"
