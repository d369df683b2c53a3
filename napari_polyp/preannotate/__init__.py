"""Pre-annotating an archive: what ``napari-polyp predict`` runs, on one process or on Ray.

    plan.py       inputs (files, folders walked recursively) -> outputs and (video, frame range) chunks
    manifest.py   the run manifest: a journal of chunks done or failed, which makes a run resumable
    worker.py     ChunkPredictor: one network per process, runs a chunk, writes its outputs
    on_ray.py     the same ChunkPredictor as a Ray Data actor pool (imported only with --cluster)
    progress.py   a progress bar with rate and ETA (plain lines when stderr is not a terminal)

Outputs: per image ``<out>/<relative path>/<stem>.png`` (0/255; ``_prob.png`` with
probabilities), per video ``<out>/<relative path>/<stem>.zarr``
(:class:`napari_polyp.io.mask_store.MaskStore`: masks 0/1, optionally probabilities, one
compressed file per frame, the provenance in its attributes).
"""
