"""The rules of an honest fine-tune (docs/training.md, "Fine-tuning honestly"): when to refuse,
which items validate and how (a hold-out split or cross-validation folds of whole scenes),
when a before/after claim stands, the anchor set that shows forgetting, the replay images, and
whether the result becomes the default. Each rule is one function; :mod:`.finetune` runs them.
"""
from __future__ import annotations

import math
import random
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

MIN_ITEMS = 4  # fewer accepted/corrected items: refuse to train
MIN_VAL_ITEMS = 5  # fewer scored items (hold-out, or out-of-fold): train, but claim no before/after
ANCHOR_LIMIT = 24  # anchor items scored before/after (at the training size), to keep it quick
FORGET_TOLERANCE = 0.02  # anchor Dice may fall this much before the old default is kept
FOLDS = 5  # cross-validation folds (fewer when there are fewer items)
SCENE_JUMP = 3.0  # a step between neighbouring items this many times their median step starts a new scene
LOOK_SIZE = 24  # px of the thumbnails that tell scenes apart
HOLDOUT_MIN_ITEMS = 20  # validation="auto": a hold-out split at least this large replaces cross-validation
REPLAY_POOL = 128  # replay images held in memory at most (a seeded sample of the start's training images)
SCHEMES = ("auto", "cv", "holdout")


def item_kinds(data) -> Dict[str, str]:
    """stem -> "corrected" or "accepted" for every item training may use. A folder
    without a manifest holds reference masks (made by people, not by the network):
    they count as corrected."""
    from napari_polyp.corrections.dataset import CorrectionsDataset

    from . import data as data_mod

    pairs = data_mod.find_pairs(data)
    if not data_mod.is_corrections_dataset(data):
        return {p.stem: "corrected" for p in pairs}
    latest = CorrectionsDataset(data).latest()
    return {p.stem: latest[p.stem].status for p in pairs if p.stem in latest}


def _empty_stems(data, stems: Sequence[str]) -> List[str]:
    from napari_polyp.io import read_mask

    from . import data as data_mod

    return [p.stem for p in data_mod.select(data_mod.find_pairs(data), stems) if not read_mask(p.mask).any()]


def refusal(kinds: Dict[str, str], empty: Sequence[str], force: bool = False) -> str:
    """Why fine-tuning must not start ("" when it may)."""
    if len(kinds) < MIN_ITEMS:
        return (f"fine-tuning needs at least {MIN_ITEMS} accepted or corrected items, the dataset has "
                f"{len(kinds)}: review more items first")
    if len(empty) == len(kinds):
        return f"every one of the {len(kinds)} masks is empty: there is nothing to learn"
    if "corrected" not in kinds.values() and not force:
        return (f"all {len(kinds)} items are accepted predictions: validation would score the network "
                "against its own output. Correct some items first (or use --force / \"prefer the result\" "
                "to train without a before/after claim)")
    return ""


def choose_validation(kinds: Dict[str, str], val_fraction: float, seed: int) -> List[str]:
    """Seeded hold-out validation stems, stratified by status: corrected items always, accepted
    ones only beside them (in their share of the dataset); never all training items."""
    corrected = sorted(s for s, k in kinds.items() if k == "corrected")
    accepted = sorted(s for s, k in kinds.items() if k != "corrected")
    if not corrected:
        return []
    rng = random.Random(seed)
    rng.shuffle(corrected)
    rng.shuffle(accepted)
    n_val = min(max(1, round(val_fraction * len(kinds))), len(kinds) - 1)
    n_corrected = min(len(corrected), max(1, round(n_val * len(corrected) / len(kinds))))
    n_accepted = min(len(accepted), n_val - n_corrected)
    return sorted(corrected[:n_corrected] + accepted[:n_accepted])


def choose_scheme(kinds: Dict[str, str], val_fraction: float, validation: str = "auto") -> str:
    """"cv" or "holdout": auto cross-validates unless the hold-out split would hold at least
    HOLDOUT_MIN_ITEMS items (then k+1 fine-tunes cost more than a split is worth)."""
    if validation not in SCHEMES:
        from napari_polyp.errors import UserError

        raise UserError(f"unknown validation scheme {validation!r}; choose one of {', '.join(SCHEMES)}")
    if validation != "auto":
        return validation
    return "holdout" if round(val_fraction * len(kinds)) >= HOLDOUT_MIN_ITEMS else "cv"


def choose_folds(kinds: Dict[str, str], folds: int, looks: Optional[Dict] = None) -> List[List[str]]:
    """k cross-validation folds (k = min(folds, items)) of *neighbouring* items: the corrected
    items in natural stem order cut into k runs, the accepted ones likewise, run i of each
    in fold i; together they hold every item once. Frames of one video saved in order
    (``clip_000040``, ``clip_000041``) are near-duplicates: dealt at random, a frame's
    neighbour would train the network that scores it and flatter the claim.

    With ``looks`` (stem -> thumbnail, :func:`item_looks`) the corrected items are cut where the
    picture changes (:func:`scene_runs`) when they hold two scenes or more: each fold then holds
    whole scenes, so every item is scored by a network that never saw its lesion (k = the
    scenes, merged neighbour to neighbour down to ``folds``). None when no item is corrected
    (accepted items alone would score the network against its own output) or fewer than 2
    folds fit."""
    corrected = sorted((s for s, k in kinds.items() if k == "corrected"), key=natural_key)
    accepted = sorted((s for s, k in kinds.items() if k != "corrected"), key=natural_key)
    k = min(folds, len(kinds))
    if not corrected or k < 2:
        return []
    scenes = scene_runs(corrected, looks) if looks else [corrected]
    if len(scenes) >= 2:
        k = min(k, len(scenes))
        runs = _merge_runs(scenes, k)
    else:
        runs = _even_runs(corrected, k)
    out = [list(run) for run in runs]
    for i, run in enumerate(_even_runs(accepted, len(out)) if accepted else []):
        out[i] += run
    return [sorted(fold, key=natural_key) for fold in out]


def _even_runs(items: Sequence[str], k: int) -> List[List[str]]:
    """``items`` in k neighbouring runs of nearly equal size (some empty when fewer items)."""
    out: List[List[str]] = [[] for _ in range(k)]
    for i, stem in enumerate(items):
        out[i * k // len(items)].append(stem)
    return out


def _merge_runs(scenes: Sequence[Sequence[str]], k: int) -> List[List[str]]:
    """Whole scenes into at most k runs of neighbours: the two neighbouring runs smallest
    together merge until k are left (folds of similar size, no scene cut)."""
    out = [list(scene) for scene in scenes]
    while len(out) > k:
        i = min(range(len(out) - 1), key=lambda j: len(out[j]) + len(out[j + 1]))
        out[i:i + 2] = [out[i] + out[i + 1]]
    return out


def scene_runs(stems: Sequence[str], looks: Dict) -> List[List[str]]:
    """``stems`` (in order) cut where the step between neighbouring thumbnails (mean absolute
    difference) exceeds SCENE_JUMP times the median step: consecutive frames of one lesion
    differ little, the next lesion or patient much. Independent images all differ alike:
    one run (no cut stands out)."""
    import numpy as np

    if len(stems) < 3:
        return [list(stems)]
    steps = [float(np.abs(looks[a] - looks[b]).mean()) for a, b in zip(stems, stems[1:])]
    cut_above = SCENE_JUMP * float(np.median(steps))
    runs, current = [], [stems[0]]
    for stem, step in zip(stems[1:], steps):
        if step > cut_above:
            runs.append(current)
            current = []
        current.append(stem)
    return runs + [current]


def item_looks(stems: Sequence[str], images) -> Dict:
    """stem -> its image (HxWx3 uint8) as a LOOK_SIZE px thumbnail in [0, 1] (what
    :func:`scene_runs` compares)."""
    from skimage.transform import resize

    return {stem: resize(image, (LOOK_SIZE, LOOK_SIZE), anti_aliasing=True) for stem, image in zip(stems, images)}


def natural_key(stem: str) -> list:
    """"frame10" after "frame9": digit runs compare as numbers."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", stem) if part]


def claim_problem(val_stems: Sequence[str], kinds: Dict[str, str], empty: Sequence[str]) -> str:
    """Why the validation figures must not be claimed as before/after ("" when they may).
    ``val_stems``: the hold-out items, or every item scored out-of-fold."""
    if not any(kinds.get(s) == "corrected" for s in val_stems):
        return "no corrected item to validate on (the network would be scored against its own output)"
    if len(val_stems) < MIN_VAL_ITEMS:
        return (f"only {len(val_stems)} validation item{'s' if len(val_stems) != 1 else ''} (fewer than "
                f"{MIN_VAL_ITEMS}): too few to tell better from worse, no before/after claim")
    if set(val_stems) <= set(empty):
        return "every validation mask is empty: any network that predicts nothing scores 1, no before/after claim"
    return ""


def _origin(start_header: Dict) -> Tuple[Optional[str], List[str]]:
    """(data folder, validation stems) of the network's original training: a fine-tuned
    checkpoint carries its start's under training["origin"], so a chain of fine-tunes keeps
    the first anchor and replay set."""
    training = start_header.get("training", {}) if isinstance(start_header, dict) else {}
    origin = training.get("origin") if isinstance(training.get("origin"), dict) else training
    return origin.get("data"), list(origin.get("val_stems") or [])


def anchor_pairs(start_header: Dict, data, kinds: Dict[str, str], val_stems: Sequence[str],
                 limit: int = ANCHOR_LIMIT, start_data=None, cross_validated: bool = False) -> Tuple[list, str]:
    """The anchor set (pairs, where from): the start checkpoint's own validation split when
    its data folder (``start_data``, else where its header says) exists, else accepted items
    of ``data`` outside validation; at most ``limit`` (a seeded sample). Cross-validated, no item
    of ``data`` is outside validation, and the network written is trained on every one of them:
    none can show forgetting."""
    from . import data as data_mod

    if limit <= 0:
        return [], "none (anchor limit 0)"
    home, stems = _origin(start_header)
    home = start_data or home
    pairs, source = [], ""
    if home and stems and Path(home).is_dir():
        try:
            pairs = data_mod.select(data_mod.find_pairs(home), stems)
            source = f"the start checkpoint's validation split ({len(pairs)} items of {home})"
        except Exception:  # a moved or unreadable folder: fall back to the dataset's own items
            pairs = []
    if not pairs and cross_validated:
        return [], ("none: the start checkpoint's validation split is not on this machine, and cross-validation "
                    "scores and trains on every item here")
    if not pairs and data is not None:
        wanted = [s for s, k in kinds.items() if k == "accepted" and s not in set(val_stems)]
        pairs = data_mod.select(data_mod.find_pairs(data), wanted)
        source = f"accepted items outside validation ({len(pairs)})" if pairs else ""
    if len(pairs) > limit:
        pairs = sorted(random.Random(0).sample(list(pairs), limit), key=lambda p: p.stem)
        source += f", a seeded sample of {limit}"
    return pairs, source or "none: no start split on this machine and no accepted items"


def replay_pairs(start_header: Dict, limit: int = REPLAY_POOL, seed: int = 0, folder=None) -> Tuple[list, str]:
    """Images replayed against forgetting (pairs, where from): the start checkpoint's own
    training items (its data folder, or ``folder`` when given, minus its validation split,
    which the anchor scores) when that folder exists here; a seeded sample of at most ``limit``."""
    from . import data as data_mod

    home, val_stems = _origin(start_header)
    home = folder or home
    if limit <= 0 or not home or not Path(home).is_dir():
        return [], "none: the start checkpoint's training data is not on this machine" if limit > 0 else "none"
    try:
        held_out = set(val_stems)
        pairs = [p for p in data_mod.find_pairs(home) if p.stem not in held_out]
    except Exception:  # an unreadable folder: no replay rather than no fine-tune
        return [], f"none: {home} cannot be read"
    if len(pairs) > limit:
        pairs = sorted(random.Random(seed).sample(pairs, limit), key=lambda p: p.stem)
    return pairs, f"{len(pairs)} of the start checkpoint's training items ({home})" if pairs else "none"


def decide(before: Dict, after: Dict, anchor: Dict, problem: str, force: bool,
           gain=None) -> Tuple[bool, str]:
    """(make it the default?, why): the claim must stand, validation Dice must not fall, its gain
    (``gain``: the paired :class:`.intervals.Interval` of the scored items) must be shown, the
    interval's lower end above 0, and the anchor must not fall by more than FORGET_TOLERANCE;
    ``force`` overrides them all. A gain within the spread between items had been made the default
    beside the words "not shown to help"."""
    before_dice, after_dice = _dice(before), _dice(after)
    anchor_fall = _dice(anchor.get("before", {})) - _dice(anchor.get("after", {}))
    if problem:
        return force, (f"forced although {problem}" if force else f"kept the previous default: {problem}")
    if not math.isfinite(after_dice):
        return force, "no validation figure after fine-tuning"
    if math.isfinite(before_dice) and after_dice < before_dice:
        why = f"validation Dice fell ({before_dice:.4f} -> {after_dice:.4f})"
        return force, (f"forced although {why}" if force
                       else f"{why}; kept the previous default (use --force to prefer it anyway)")
    if gain is not None and not gain.low > 0:
        why = f"its gain is not shown (the interval {gain.format(signed=True)} reaches 0 or below)"
        return force, (f"forced although {why}" if force else f"{why}; kept the previous default (choose it in the "
                                                             "checkpoint list to use it, or --force to prefer it)")
    if math.isfinite(anchor_fall) and anchor_fall > FORGET_TOLERANCE:
        why = (f"the anchor set's Dice fell by {anchor_fall:.4f} (more than {FORGET_TOLERANCE}): "
               "it forgot what it knew")
        return force, (f"forced although {why}" if force
                       else f"{why}; kept the previous default (use --force to prefer it anyway)")
    return True, "validation Dice did not fall" + (" and the anchor held" if math.isfinite(anchor_fall) else "")


def _dice(metrics: Dict) -> float:
    value = metrics.get("dice", float("nan")) if metrics else float("nan")
    return float(value) if isinstance(value, (int, float)) else float("nan")
