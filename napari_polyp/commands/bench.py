"""`napari-polyp bench`: params, GFLOPs, latency, fps and peak memory of one network, measured
as :mod:`napari_polyp.bench` says; one JSON line with ``--json``."""
from __future__ import annotations

import json

from ..bench import benchmark
from ..inference.engine import ENGINES


def add_arguments(parser):
    parser.add_argument("--model", required=True, help="network name (see `napari-polyp models`)")
    parser.add_argument("--size", type=int, default=None, help="square input side (default: the card's)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "mps"])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--amp", action="store_true", help="fp16 autocast (CUDA)")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--variant", default=None, help="variant keyword for networks that have one")
    parser.add_argument("--engine", choices=ENGINES, default="auto",
                        help="auto (default): ONNX Runtime on the CPU, torch on a GPU")
    parser.add_argument("--json", action="store_true", help="print one JSON line")


def run(args) -> int:
    result = benchmark(args.model, args.size, args.device, args.batch, args.runs, args.warmup,
                       args.threads, args.amp, args.channels_last, args.variant, args.engine)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:15s} {value}")
    return 0
