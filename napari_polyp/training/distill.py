"""MicroAUNet's two-stage distillation from a frozen teacher (MODELS.md §2), in the
sound forms MODELS.md recommends where the official code's losses are degenerate:

Stage 1 (epoch < T = max(⌊0.8·E⌋, 8), E = planned epochs) [C]:
    L = L_seg + 0.5·L_mimic + 0.5·L_KL
    L_mimic = Σ_l mean (A_l(S_l) − T_l)² / mean T_l²  over the skips t1..t5, with 1×1
              adapters A_l when widths differ [B]; divided by the teacher map's mean
              square [B] so that teachers of any feature scale weigh alike (the student
              map is resized to the teacher's when sizes differ).
    L_KL    = binary KL(p_teacher ‖ p_student) on sigmoid probabilities, per pixel [B]
              (the code's channel-softmax KL is 0 with one output channel).
Stage 2 [C]:
    L = L_seg + InfoNCE(τ = 0.1) on L2-normalised decoder features [B]: up to 256
        foreground and 512 background pixels per image; for each sampled pixel the
        student embedding must pick the teacher embedding of the same pixel among all
        sampled pixels of that image. The code's 0.3·Σ‖θ‖₂ term is left to AdamW's
        weight decay [B].

Teachers are trained with ``napari-polyp train --model microaunet --train-teacher KIND``
(KIND: malunet | efficientnet_lite0) and saved as architecture ``microaunet-teacher``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Dict, Iterator, List

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from models.checkpoint import CheckpointError, load_into, read_checkpoint

TEACHER_ARCHITECTURE = "microaunet-teacher"
MIMIC_WEIGHT = 0.5
KL_WEIGHT = 0.5
TAU = 0.1
MAX_FG, MAX_BG = 256, 512


def build_teacher_model(kind: str, checkpoint=None, pretrained_backbone: bool = False, backbone_weights=None):
    from models.microaunet import build_teacher

    model = build_teacher(kind, pretrained_backbone=pretrained_backbone and checkpoint is None,
                          backbone_weights=backbone_weights if checkpoint is None else None)
    model.variant = {"kind": kind}
    if checkpoint is not None:
        header, state = read_checkpoint(checkpoint, expected_architecture=TEACHER_ARCHITECTURE)
        load_into(model, state, checkpoint, TEACHER_ARCHITECTURE)
        model.checkpoint_header = header
    return model


def load_teacher(path) -> nn.Module:
    header, _ = read_checkpoint(path)
    if header.get("architecture") != TEACHER_ARCHITECTURE:
        raise CheckpointError(
            f"{path} is a '{header.get('architecture')}' checkpoint, not a MicroAUNet teacher; train one with "
            "`napari-polyp train --model microaunet --train-teacher efficientnet_lite0 ...`"
        )
    kind = header.get("variant", {}).get("kind", "malunet")
    return build_teacher_model(kind, path)


def _freeze_for_features(teacher: nn.Module) -> nn.Module:
    """Training mode (the teachers return features only then) but frozen: no grads,
    BatchNorm on its running statistics."""
    teacher.train()
    for module in teacher.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def binary_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Mean over pixels of KL(Bernoulli(p_t) ‖ Bernoulli(p_s)), computed from logits."""
    p_t = torch.sigmoid(teacher_logits.float())
    log_ps, log_1mps = F.logsigmoid(student_logits.float()), F.logsigmoid(-student_logits.float())
    log_pt, log_1mpt = F.logsigmoid(teacher_logits.float()), F.logsigmoid(-teacher_logits.float())
    return (p_t * (log_pt - log_ps) + (1 - p_t) * (log_1mpt - log_1mps)).mean()


def pixel_info_nce(student: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor,
                   tau: float = TAU, generator=None) -> torch.Tensor:
    """InfoNCE between per-pixel student and teacher embeddings [B,C,h,w] (same C),
    L2-normalised; positives are the same pixel, negatives the other sampled pixels."""
    student = F.normalize(student.float(), dim=1)
    teacher = F.normalize(teacher.float(), dim=1)
    mask = F.interpolate(target.float(), size=student.shape[-2:], mode="area")[:, 0] >= 0.5
    losses = []
    for b in range(student.shape[0]):
        fg = torch.nonzero(mask[b].flatten()).flatten()
        bg = torch.nonzero(~mask[b].flatten()).flatten()
        fg = fg[torch.randperm(len(fg), generator=generator)[:MAX_FG]]
        bg = bg[torch.randperm(len(bg), generator=generator)[:MAX_BG]]
        idx = torch.cat([fg, bg]).to(student.device)
        if len(idx) < 2:
            continue
        s = student[b].flatten(1)[:, idx].t()  # [n, C]
        t = teacher[b].flatten(1)[:, idx].t()
        logits = s @ t.t() / tau
        losses.append(F.cross_entropy(logits, torch.arange(len(idx), device=logits.device)))
    return torch.stack(losses).mean() if losses else student.sum() * 0


class Distiller(nn.Module):
    """Holds the frozen teacher and the trainable 1×1 adapters; ``loss(...)`` adds the
    stage's distillation terms to the segmentation loss."""

    def __init__(self, teacher: nn.Module, student: nn.Module, device):
        super().__init__()
        self.teacher = _freeze_for_features(teacher.to(device))
        self.adapters = nn.ModuleList()
        self.decoder_adapter = nn.Identity()
        self._built = False
        self.device = device
        self._probe(student)

    @classmethod
    def from_checkpoint(cls, path, student: nn.Module, device) -> "Distiller":
        return cls(load_teacher(path), student, device)

    @torch.no_grad()
    def _teacher_out(self, x: torch.Tensor) -> dict:
        return self.teacher(x)

    def _probe(self, student: nn.Module) -> None:
        """Build the adapters from one dummy forward of both networks."""
        was = student.training
        student.train()
        x = torch.rand(2, 3, 64, 64, device=self.device)
        with torch.no_grad():
            s_out, t_out = student(x), self._teacher_out(x)
        student.train(was)
        for s, t in zip(s_out["features"], t_out["features"]):
            self.adapters.append(self._adapter(s.shape[1], t.shape[1]))
        self.decoder_adapter = self._adapter(s_out["decoder_features"].shape[1], t_out["decoder_features"].shape[1])
        self.to(self.device)

    @staticmethod
    def _adapter(c_in: int, c_out: int) -> nn.Module:
        return nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, 1, bias=False)

    def parameters(self, recurse: bool = True):  # only the adapters train
        return [p for p in super().parameters(recurse) if p.requires_grad]

    def train(self, mode: bool = True):
        super().train(mode)
        _freeze_for_features(self.teacher)
        return self

    @staticmethod
    def stage_boundary(planned_epochs: int) -> int:
        return max(int(0.8 * planned_epochs), 8)

    def loss(self, out: dict, x: torch.Tensor, target: torch.Tensor, epoch: int, planned_epochs: int) -> torch.Tensor:
        t_out = self._teacher_out(x)
        if epoch < self.stage_boundary(planned_epochs):
            return MIMIC_WEIGHT * self.mimic(out["features"], t_out["features"]) + \
                KL_WEIGHT * binary_kl(out["logits"], t_out["logits"])
        s_dec = self.decoder_adapter(out["decoder_features"])
        t_dec = t_out["decoder_features"]
        if s_dec.shape[-2:] != t_dec.shape[-2:]:
            s_dec = F.interpolate(s_dec, size=t_dec.shape[-2:], mode="bilinear", align_corners=False)
        return pixel_info_nce(s_dec, t_dec, target)

    def mimic(self, student_feats: List[torch.Tensor], teacher_feats: List[torch.Tensor]) -> torch.Tensor:
        total = 0.0
        for adapter, s, t in zip(self.adapters, student_feats, teacher_feats):
            s = adapter(s)
            if s.shape[-2:] != t.shape[-2:]:
                s = F.interpolate(s, size=t.shape[-2:], mode="bilinear", align_corners=False)
            t = t.float()
            # [B] relative MSE: the teachers' feature scales differ (EfficientNet maps are
            # far larger than MicroAUNet's), so divide by the teacher map's mean square
            total = total + F.mse_loss(s.float(), t) / t.pow(2).mean().clamp_min(1e-6)
        return total

    def state_dict(self, *args, **kwargs) -> Dict[str, torch.Tensor]:  # adapters only (teacher is its file)
        return {k: v for k, v in super().state_dict(*args, **kwargs).items() if not k.startswith("teacher.")}

    def load_state_dict(self, state, strict: bool = True):
        return super().load_state_dict(state, strict=False)


# -- distillation from precomputed teacher maps --------------------------------------------
#
# [B] The cheap form of the paper's stage-1 soft-label term: any trained network of the
# task (on CPU, DINO-keys: 20× MicroAUNet's accuracy gap, 2000× its FLOPs) predicts every
# training image once, at its own input size; the student trains on
#     L = L_seg(mask) + L_seg_soft(teacher probability)
# with the teacher's map warped by the very augmentation of the image (augment.Augmenter).

class TeacherMaps:
    """Teacher probability maps of training pairs at the training size, uint8 (p·255),
    cached in ``<folder>/teacher-<checkpoint sha256[:16]>-<size>px.npz`` for the same images.

    ``checkpoints``: one checkpoint, or several (a list, or one string with commas): an
    ensemble whose map is the mean of its members' probabilities (the file is then named
    by all their sha256s, joined with "+"). A member is any trained network of the task
    or a MicroAUNet teacher (architecture ``microaunet-teacher``).
    """

    def __init__(self, checkpoints, folder, size: int, device: str = "cpu", backbone_weights=None):
        from models import peek_header

        if isinstance(checkpoints, (str, Path)):
            checkpoints = [c for c in str(checkpoints).split(",") if c.strip()]
        self.checkpoints = [str(c).strip() for c in checkpoints]
        self.headers = [peek_header(c) for c in self.checkpoints]
        self.architecture = "+".join(h.get("architecture", "") for h in self.headers)
        self.sha256 = "+".join(h.get("sha256", "") for h in self.headers)
        self.size, self.device, self.backbone_weights = size, device, backbone_weights
        name = "+".join(h.get("sha256", "")[:16] for h in self.headers)
        self.path = Path(folder) / f"teacher-{name}-{size}px.npz"
        self.maps = None

    def _key(self, pairs) -> str:
        return json.dumps([self.sha256, self.size] + [[p.stem, str(p.image)] for p in pairs])

    def iter_build(self, pairs) -> Iterator[str]:
        """Load the cached maps, or predict them (yields a progress line every 50 images).
        A frozen-backbone teacher whose features of these images are cached in ``folder``
        (it was trained on them there) runs only its head on them: seconds, not minutes."""
        key = self._key(pairs)
        if self.path.is_file():
            with np.load(self.path, allow_pickle=False) as saved:
                if str(saved["key"]) == key:
                    self.maps = saved["maps"]
                    return
        from napari_polyp.io import read_image

        members = [self._member(checkpoint, pairs) for checkpoint in self.checkpoints]
        maps = np.zeros((len(pairs), self.size, self.size), np.uint8)
        for i, pair in enumerate(pairs):
            image = read_image(pair.image)  # once, for every member
            probability = torch.stack([predict(i, image) for predict in members]).mean(0)
            resized = F.interpolate(probability.float(), size=(self.size, self.size), mode="bilinear",
                                    align_corners=False, antialias=True)
            maps[i] = (resized[0, 0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
            if (i + 1) % 50 == 0 or i + 1 == len(pairs):
                yield f"teacher {self.architecture} maps: {i + 1}/{len(pairs)}"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp.npz")
        np.savez(tmp, key=np.array(key), maps=maps)
        tmp.replace(self.path)
        self.maps = maps

    def _member(self, checkpoint: str, pairs) -> Callable[[int, np.ndarray], torch.Tensor]:
        """``predict(row, image) -> probability [1,1,h,w]`` of one member: its head on the cached
        features of ``row`` when a frozen-backbone network has them in the folder, else the
        whole network on ``image``."""
        from napari_polyp.inference import preprocess

        from .data import resize_like_inference
        from .feature_cache import cache_of_model

        predictor = teacher_predictor(checkpoint, self.device, self.backbone_weights)
        model, card = predictor.model, predictor.card
        if hasattr(model, "forward_head") and hasattr(model, "backbone_sha256"):
            cache = cache_of_model(model, self.path.parent, "train", card.input_size, [p.stem for p in pairs],
                                   ("identity",))
            if cache.complete():
                def from_cache(row: int, image: np.ndarray) -> torch.Tensor:
                    x = preprocess(resize_like_inference(image, card.input_size), card)
                    with torch.no_grad():
                        return torch.sigmoid(model.forward_head(cache.get([row], ["identity"]), x))
                return from_cache
        return lambda row, image: torch.from_numpy(predictor.predict(image).probability)[None, None]


def teacher_predictor(checkpoint, device: str = "cpu", backbone_weights=None):
    """A torch :class:`~napari_polyp.inference.Predictor` for any teacher checkpoint: a trained
    network of the task, or a MicroAUNet teacher (which reads the student's input, so it runs
    with MicroAUNet's card: 256 px, min-max)."""
    from models import create_model, peek_header
    from napari_polyp.inference import Predictor

    architecture = peek_header(checkpoint).get("architecture", "")
    if architecture == TEACHER_ARCHITECTURE:
        return Predictor("microaunet", device=device, model=load_teacher(checkpoint), engine="torch")
    model = create_model(architecture, checkpoint=checkpoint, backbone_weights=backbone_weights)
    return Predictor(architecture, device=device, model=model, engine="torch")
