"""What a query's refine burst trains on: rays and DINO windows of the keyframes rendered once,
without gradient, from the frozen field (``collect_refine_data`` -> ``RefineData``). Each chunk is
rendered under a chunk guard (``Trainer.exclusive()`` by default, a query's ``FieldGuard``), so training
steps run between chunks."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ovs3d_ros.core.field_guard import exclusive
from ovs3d_ros.core.rendering import ChunkGuard, SamplingSettings, render_rays
from ovs3d_ros.core.request_budget import chunk_rays
from ovs3d_ros.core.semantic_targets import RelevancyCache, batch_relevancy, window_rays


@dataclass
class RefineData:
    """What a refine burst trains on, rendered once from the frozen field (no gradient)."""

    features: torch.Tensor    # (N, D) rendered features of keyframe rays
    relevancy: torch.Tensor   # (N, S, C) min-max relevancy of those rays' pixels
    selection: torch.Tensor   # (N, S) rendered selection of those rays
    window_features: torch.Tensor | None = None  # (B, T, D) rendered at DINO token centres
    window_dino: torch.Tensor | None = None      # (B, T, Cd)


@torch.no_grad()
def collect_refine_data(trainer, text: torch.Tensor, cfg, generator: torch.Generator,
                        chunk: int | None = None, chunk_guard: ChunkGuard | None = None):
    """Render, once and without gradient, the rays a refine burst trains on (None without CLIP):
    ``query.refine_rays`` keyframe rays with their relevancy and selection, and ``query.refine_windows``
    DINO windows (when the keyframes carry DINO). ``chunk_guard`` (a ``FieldGuard``) is entered around
    every chunk's render (default: the trainer's lock); ``chunk`` rays at a time (default: by
    ``request_budget.chunk_rays``)."""
    keyframes = [kf for kf in trainer.keyframes.snapshot() if kf.clip is not None]
    if not keyframes:
        return None
    guard = chunk_guard or (lambda: exclusive(trainer))
    device = trainer.device
    settings = SamplingSettings.for_rendering(cfg)
    if chunk is None:
        chunk = chunk_rays(cfg, settings.uniform_samples + settings.importance_samples, device,
                           trainer.render_chunk())
    occupancy = getattr(trainer, "occupancy", None)
    cache = RelevancyCache(text)
    q = cfg.query
    feats, sels, rels = [], [], []
    remaining = q.refine_rays
    while remaining > 0:
        n = min(chunk, remaining)
        batch = trainer.keyframes.sample(n, generator)
        rel = batch_relevancy(cache, keyframes, batch.keyframe_uids, batch.pixels, device)
        if rel is None:  # a keyframe without CLIP was drawn: keep only rays of keyframes with CLIP
            ok = torch.isin(batch.keyframe_uids, torch.tensor([kf.uid for kf in keyframes]))
            if not bool(ok.any()):
                remaining -= n
                continue
            batch = _subset(batch, ok)
            rel = batch_relevancy(cache, keyframes, batch.keyframe_uids, batch.pixels, device)
        with guard():
            out = render_rays(trainer.query_field, batch.origins, batch.directions, settings,
                              depth=batch.depth, occupancy=occupancy, semantic_rays=len(batch))
        feats.append(out.feature)
        sels.append(out.selection)
        rels.append(rel)
        remaining -= n
    if not feats:
        return None
    data = RefineData(torch.cat(feats), torch.cat(rels), torch.cat(sels))
    sem = cfg.semantic
    with_dino = [kf for kf in keyframes if kf.dino is not None]
    if with_dino and q.refine_windows > 0 and (sem.fda_pos_weight > 0 or sem.fda_neg_weight > 0):
        wf, wd = [], []
        for i in torch.randint(0, len(with_dino), (q.refine_windows,), generator=generator).tolist():
            origins, directions, depth, dino, _ = window_rays(with_dino[i], sem.fda_window, generator, device)
            with guard():
                out = render_rays(trainer.query_field, origins, directions, settings, depth=depth,
                                  occupancy=occupancy, semantic_rays=origins.shape[0])
            wf.append(out.feature)
            wd.append(dino.float())
        size = min(f.shape[0] for f in wf)
        data.window_features = torch.stack([f[:size] for f in wf])
        data.window_dino = torch.stack([d[:size] for d in wd])
    return data


def _subset(batch, keep: torch.Tensor):
    """The rays of ``batch`` where ``keep`` (the CLIP targets dropped: they are per-batch)."""
    fields = {}
    for f in dataclasses.fields(batch):
        value = getattr(batch, f.name)
        if f.name == "clip_targets":
            fields[f.name] = None
        elif torch.is_tensor(value) and value.shape[:1] == keep.shape:
            fields[f.name] = value[keep.to(value.device)]
        else:
            fields[f.name] = value
    return type(batch)(**fields)
