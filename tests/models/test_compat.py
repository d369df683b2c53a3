"""timm (and so torchvision) import and build models here through models._compat."""
import subprocess
import sys


def test_timm_builds_a_model_through_the_compat_module():
    code = (
        "import models._compat, timm, torch;"
        "m = timm.create_model('resnet18', pretrained=False, num_classes=2).eval();"
        "print(tuple(m(torch.randn(1, 3, 32, 32)).shape))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(1, 2)"


def test_compat_does_nothing_when_torchvision_is_fine():
    # Second call in a process where torchvision is already importable: no repair, no error.
    from models import _compat

    assert _compat.ensure_torchvision() is False
