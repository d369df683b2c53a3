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
