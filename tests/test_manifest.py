"""The npe2 manifest is valid and is the one npe2 finds for the installed package."""
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_npe2_validate_passes_on_the_installed_plugin():
    out = subprocess.run(
        [sys.executable, "-m", "npe2", "validate", "napari-polyp", "--imports"],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_packaged_manifest_is_the_root_manifest():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution("napari-polyp")
    root = yaml.safe_load((ROOT / "napari.yaml").read_text())
    assert manifest.name == root["name"]
    assert {c.id for c in manifest.contributions.commands} == {c["id"] for c in root["contributions"]["commands"]}


def test_wheel_carries_the_manifest_samples_and_checkpoints(tmp_path):
    import zipfile

    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr
    (wheel,) = tmp_path.glob("napari_polyp-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        assert zf.read("napari_polyp/napari.yaml") == (ROOT / "napari.yaml").read_bytes()
    assert any(n.startswith("napari_polyp/io/sample_data/") and n.endswith(".jpg") for n in names)
    shipped = {p.name for p in (ROOT / "models" / "checkpoints").glob("*.pt")}
    assert {f"models/checkpoints/{name}" for name in shipped} <= names
    # checkpoints over 20 MB stay in the repository (setup.cfg's exclude_package_data)
    assert not any(n.startswith("models/checkpoints/large/") for n in names)
