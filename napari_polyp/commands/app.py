"""`napari-polyp app`: napari with the Segment widget docked, a sample image and the default model
(:func:`napari_polyp.app.launch`).

    napari-polyp app                       # sample colonoscopy image, the best polyp network
    napari-polyp app --task dermoscopy     # sample dermoscopy image, the best skin network
    napari-polyp app my_image.png --model eam-net
    napari-polyp app --screenshot shot.png # run once, save a screenshot, exit (smoke test / README)
"""
from __future__ import annotations

# napari_polyp.app imports napari and Qt only when it opens the window: --help stays quick
from ..app import SAMPLES, launch


def add_arguments(parser) -> None:
    parser.add_argument("image", nargs="?", help="image, folder of images, video, or a video's mask store "
                        "(.zarr, from predict) to open (default: a Kvasir-SEG colonoscopy sample)")
    parser.add_argument("--task", default="colonoscopy", choices=tuple(SAMPLES),
                        help="what the images show: picks the sample and the network (default: colonoscopy)")
    parser.add_argument("--model", default=None, help="network to select (default: the task's best trained "
                        "network that answers within a second on a CPU); see `napari-polyp models`")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    parser.add_argument("--screenshot", metavar="PATH", help="instead of staying open: run the model once, "
                        "save a screenshot of the window to PATH (PNG) and exit")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="with --screenshot: seconds to wait for the prediction (default 600)")
    parser.add_argument("--no-run", action="store_true", help="open without segmenting the image")


def run(args) -> int:  # (cli.main has checked --model)
    return launch(args.image, model=args.model, task=args.task, device=args.device, screenshot=args.screenshot,
                  timeout=args.timeout, segment=not args.no_run)
