"""Measuring one network: params, GFLOPs, latency, fps and peak memory (the core of
``napari-polyp bench``; ``checkpoint_profile`` measures what a model card states).

Batch of random input at the network's native size (or ``size``), inference mode, after
warm-up, median over ``runs`` (at least 20). On CPU the thread count is stated and peak
memory is the process's peak RSS; on CUDA it is ``torch.cuda.max_memory_allocated``.

``engine`` picks what runs the network (see :mod:`napari_polyp.inference.engine`): torch
eagerly, or ONNX Runtime on a graph exported (into a temporary folder, not the
cache: bench uses random weights) before the clock starts. The result names the
engine that ran and, for ONNX Runtime, the export time.
"""
from __future__ import annotations

import resource
import statistics
import time
from pathlib import Path


def benchmark(model_name: str, size=None, device: str = "cpu", batch: int = 1, runs: int = 20,
              warmup: int = 3, threads=None, amp: bool = False, channels_last: bool = False,
              variant=None, engine: str = "auto") -> dict:
    import tempfile

    import torch

    import models
    from models import count_flops, count_params
    from napari_polyp.inference.engine import physical_cores

    if threads:
        torch.set_num_threads(threads)
    runs = max(runs, 20)
    card = models.get_card(model_name)
    size = size or card.input_size
    # the network a user gets: the default checkpoint's variant unless one is named
    kwargs = {"variant": variant} if variant else dict(card.checkpoint_variant)
    model = models.create_model(model_name, pretrained_backbone=False, checkpoint=False, **kwargs).eval()
    params = count_params(model)
    flops = count_flops(model, size)  # per image, on CPU before moving: counting is device-free
    dev = torch.device(device)
    model = model.to(dev)
    x = torch.randn(batch, 3, size, size, device=dev)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.to(memory_format=torch.channels_last)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    run_network = model
    export_s = None
    with tempfile.TemporaryDirectory() as scratch:
        if engine != "torch" and dev.type == "cpu" and not amp and not channels_last:
            from napari_polyp.inference.engine import make_runner

            start = time.perf_counter()
            run_network = make_runner(model, model_name, size, engine, dev, threads, directory=Path(scratch))
            export_s = round(time.perf_counter() - start, 2) if run_network.engine == "onnxruntime" else None
        median_s = median_seconds(run_network, x, dev, warmup, runs, amp)
        ran = getattr(run_network, "engine", "torch")

    if dev.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
        memory_kind = "cuda_max_allocated"
        device_name = torch.cuda.get_device_name(dev)
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        memory_kind = "process_peak_rss"
        device_name = "cpu"
    return {
        "model": model_name,
        "variant": kwargs.get("variant") or kwargs or card.default_variant or None,
        "size": size,
        "batch": batch,
        "device": device_name,
        "engine": ran,
        "export_s": export_s,
        "threads": (threads or physical_cores() if ran == "onnxruntime" else torch.get_num_threads())
        if dev.type == "cpu" else None,
        "amp_fp16": amp,
        "channels_last": channels_last,
        "params": params,
        "gflops": round(flops / 1e9, 3),
        "median_ms": round(median_s * 1e3, 2),
        "fps": round(batch / median_s, 2),
        "runs": runs,
        "peak_memory_mb": round(peak_mb, 1),
        "memory_kind": memory_kind,
        "torch": torch.__version__,
    }


def median_seconds(run_network, x, dev, warmup: int, runs: int, amp: bool) -> float:
    """Median wall time of ``run_network(x)`` over ``runs`` calls after ``warmup`` ones."""
    import torch

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    times = []
    with torch.inference_mode(), torch.autocast(dev.type, dtype=torch.float16, enabled=amp):
        for i in range(warmup + runs):
            sync()
            start = time.perf_counter()
            run_network(x)
            sync()
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return statistics.median(times)


def checkpoint_profile(model, size: int, runs: int = 20) -> dict:
    """What a model card states of a network, measured on ``model`` itself (its checkpoint's
    variant, adapters included): params, GFLOPs and the median torch latency at ``size``, batch 1,
    on the torch threads set by the caller (one, for the cards: see ``ModelCard.cpu_ms``).
    ``benchmarks/ship_checkpoint.py`` stores it in the shipped file's header."""
    import torch

    from models import count_flops, count_params

    model = model.eval()
    x = torch.randn(1, getattr(model, "in_channels", 3), size, size)
    profile = {
        "params": count_params(model),
        "gflops": round(count_flops(model, size) / 1e9, 3),
        "cpu_ms": round(median_seconds(model, x, torch.device("cpu"), 3, runs, False) * 1e3, 1),
        "threads": torch.get_num_threads(),
        "size": size,
    }
    if getattr(model, "backbone_name", None):
        profile["backbone"] = model.backbone_name
    return profile
