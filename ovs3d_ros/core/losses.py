"""Loss terms as plain functions (tensors in, scalar tensor out); weights live in the config.

Geometry/appearance: ``rgb_loss``, ``depth_loss``. Semantics (3D-OVS, notes §5.2): the feature and
selection distillation ``feature_distillation_loss``; RDA and FDA live beside them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def rgb_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE over (N, 3) colours in [0, 1]."""
    return F.mse_loss(pred, target)


def depth_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean absolute error (metres) over rays with a valid depth measurement; 0 when there are none.

    L1 rather than L2: depth sensors have heavy-tailed errors at edges.
    """
    if not bool(valid.any()):
        return pred.new_zeros(())
    return (pred[valid] - target[valid]).abs().mean()


def free_space_loss(weights: torch.Tensor, t_mid: torch.Tensor, depth: torch.Tensor, margin: float,
                    valid: torch.Tensor) -> torch.Tensor:
    """Mean over rays with depth of the compositing weight in front of ``depth - margin`` (N, S inputs).

    Depth says that space is empty: weight there is a floater, invisible in training views (the expected
    depth barely moves) but ruinous in novel views. 0 when no ray has depth.
    """
    if not bool(valid.any()):
        return weights.new_zeros(())
    in_front = t_mid < (depth - margin)[:, None]
    return (weights * in_front)[valid].sum(dim=-1).mean()


def scale_mix_weights(selection: torch.Tensor, targets: torch.Tensor, fine_agreement: float,
                      finest: int, coarsest: int) -> torch.Tensor:
    """(N, S) weights of the patch scales in a ray's distillation target: the rendered selection,
    except on rays where the finest scale's target disagrees with the coarsest one's (cosine below
    ``fine_agreement``); there the finest scale alone.

    Why: a coarse patch over a small object is mostly the surface around it, so where the scales
    disagree the coarse target says "table" on the mug; only the finest patch saw the mug. Where they
    agree the selection mixes them as before (the coarse scales are the less noisy ones on large
    surfaces). ``fine_agreement <= -1`` switches the rule off. ``targets`` (N, S, D) are unit vectors;
    ``finest`` and ``coarsest`` index their scales (``semantic_targets.scale_extremes``).
    """
    if fine_agreement <= -1.0:
        return selection
    agree = (targets[:, coarsest].float() * targets[:, finest].float()).sum(-1)
    fine = torch.zeros_like(selection)
    fine[:, finest] = 1.0
    return torch.where((agree < fine_agreement)[:, None], fine, selection)


def surround_subtracted_weights(weights: torch.Tensor, coarsest: int, surround: float) -> torch.Tensor:
    """(N, S) scale weights of a ray's distillation target minus ``surround`` on the coarsest scale:
    the target becomes ``sum_k w_k f_k - surround * f_coarsest`` (the cosine normalises it).

    Why: a teacher feature is an average of patch embeddings, so over a small object even the finest
    scale's target is mostly the surface around it (desk seed 1, training views: at the apple's pixels
    the finest target's cosine is 0.34 with "apple", 0.87 with "table"); the coarsest patch is almost
    only that surround. Subtracting a share of it (an unsharp mask across scales) removes the part the
    pixel shares with its surroundings: on a uniform surface all scales agree and the target's direction
    is unchanged, on a small object the object's share dominates. ``surround`` in [0, 1); 0 = off.
    """
    if surround <= 0.0:
        return weights
    if surround >= 1.0:
        raise ValueError(f"semantic.target_surround_weight must be below 1 (1 cancels a uniform surface's "
                         f"target), got {surround}")
    out = weights.clone()
    out[:, coarsest] = out[:, coarsest] - surround
    return out


def feature_distillation_loss(rendered: torch.Tensor, selection: torch.Tensor,
                              targets: torch.Tensor) -> torch.Tensor:
    """Negative cosine between the rendered feature and the selection-weighted multi-scale target.

    Args:
        rendered: (N, D) composited CLIP-space feature (not necessarily normalised).
        selection: (N, S) per-ray softmax over the S patch scales.
        targets: (N, S, D) unit CLIP features of the ray's pixel at each scale.
    Gradient flows into both the feature and the selection (as in the original).
    """
    # the selection mix as one (1 x S) @ (S x D) product per ray: a broadcast multiply and sum over
    # (N, S, D) made three full-size temporaries forward and back. The cosine normalises the mix itself.
    mixed = torch.bmm(selection.unsqueeze(1).to(targets.dtype), targets).squeeze(1)
    return -F.cosine_similarity(rendered, mixed.float(), dim=-1).mean()


def residual_feature_loss(rendered: torch.Tensor, weights: torch.Tensor,
                          targets: torch.Tensor) -> torch.Tensor:
    """Negative cosine between the rendered feature and the target, both as residuals from the batch's
    mean target (``semantic.feature_residual_weight``).

    A ray over a 5 cm object has a target that is mostly the surface around it (~85 % table): the
    object's share is a small angle for ``feature_distillation_loss``, which the field then fits only in
    part. Less the mean target of the batch (mostly that surface) the object's share is a larger part of
    what is left, so the same share is a larger angle. Unit rendered feature (its norm belongs to RDA);
    the mean is a constant of the step (detached). Args as ``feature_distillation_loss`` with
    ``weights`` (N, S) the target's scale weights.
    """
    mixed = torch.bmm(weights.unsqueeze(1).to(targets.dtype), targets).squeeze(1).float()
    mixed = F.normalize(mixed, dim=-1)
    mean = mixed.mean(dim=0, keepdim=True).detach()
    return -F.cosine_similarity(F.normalize(rendered.float(), dim=-1) - mean, mixed - mean, dim=-1).mean()


# ----------------------------------------------------------------------------------------------
# Class-distribution alignment (RDA, FDA): Jensen-Shannon divergences between softmaxes over classes


def js_divergence(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon divergence (nats, in [0, ln 2]) between distributions given as log-probabilities.

    Reduces the last dimension; computed in log space so saturated softmaxes stay finite.
    """
    log_m = torch.logaddexp(log_p, log_q) - torch.log(torch.tensor(2.0, dtype=log_p.dtype,
                                                                   device=log_p.device))
    kl_pm = (log_p.exp() * (log_p - log_m)).sum(-1)
    kl_qm = (log_q.exp() * (log_q - log_m)).sum(-1)
    return 0.5 * (kl_pm + kl_qm)


def relevancy_target_logits(relevancy: torch.Tensor, selection: torch.Tensor) -> torch.Tensor:
    """RDA target logits ``sum_k s_k R_k,c`` from (N, S, C) min-max relevancies and (N, S) selection."""
    return (selection.unsqueeze(-1) * relevancy.float()).sum(dim=1)


def rda_loss(rendered: torch.Tensor, text: torch.Tensor, relevancy: torch.Tensor,
             selection: torch.Tensor) -> torch.Tensor:
    """Relevancy-distribution alignment: mean JS(softmax_c(F.t_c) || softmax_c(sum_k s_k R_k,c)).

    Args:
        rendered: (N, D) rendered CLIP-space feature, deliberately NOT normalised (as the original):
            its norm acts as an inverse temperature the field can learn.
        text: (C, D) unit text features.
        relevancy: (N, S, C) per-image, per-scale, per-class min-max relevancy of the ray's pixel.
        selection: (N, S) per-ray softmax over scales.
    Neither side is detached: the selection also learns from this term (notes §5.2).
    """
    log_p = torch.log_softmax(rendered @ text.t(), dim=-1)
    log_q = torch.log_softmax(relevancy_target_logits(relevancy, selection), dim=-1)
    return js_divergence(log_p, log_q).mean()


def sample_pairs(num_tokens: int, max_pairs: int, generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (i, j) of the token pairs of one window: all T*T ordered pairs (diagonal included, as
    the original) when that is at most ``max_pairs``, else ``max_pairs`` pairs drawn uniformly with
    replacement, so the FDA cost is bounded for any window size."""
    if num_tokens <= 0:
        raise ValueError(f"sample_pairs: num_tokens must be positive, got {num_tokens}")
    if max_pairs <= 0:
        raise ValueError(f"sample_pairs: max_pairs must be positive, got {max_pairs}")
    if num_tokens * num_tokens <= max_pairs:
        idx = torch.arange(num_tokens, device=device)
        i, j = torch.meshgrid(idx, idx, indexing="ij")
        return i.reshape(-1), j.reshape(-1)
    flat = torch.randint(0, num_tokens * num_tokens, (max_pairs,), generator=generator,
                         device=generator.device if generator is not None else device).to(device)
    return flat // num_tokens, flat % num_tokens


def fda_colour_affinity(colour: torch.Tensor, i: torch.Tensor, j: torch.Tensor, sigma: float) -> torch.Tensor:
    """(B, K) bilateral weight ``exp(-|c_i - c_j|^2 / (2 sigma^2))`` of token pairs (i, j) from (B, T, 3)
    ray colours.

    Why: a DINO token is a patch (15 px at 160x120, 40 px at 640x480): on a small object every token is a
    mixture that looks like the surface around it, so DINO alone pairs the rays hitting the mug with the
    table's and FDA pulls the mug into the table (bench/small_objects.py: desk seed 1, held-out mIoU
    46.8 without FDA, 36.0 with it). The colour of the pixel the ray actually passes through tells the
    white mug from the brown table at that ray; pairs across a colour edge then attract little.
    """
    diff = colour.float()[:, i] - colour.float()[:, j]
    return torch.exp(-(diff * diff).sum(-1) / (2.0 * sigma * sigma))


def fda_loss(rendered: torch.Tensor, text: torch.Tensor, dino: torch.Tensor, *,
             temperature: float, dino_shift: float, pos_weight: float, neg_weight: float,
             max_pairs: int, generator: torch.Generator | None = None,
             pair_colour: torch.Tensor | None = None, colour_sigma: float = 0.0) -> dict[str, torch.Tensor]:
    """Feature-distribution alignment (the original's CorrelationLoss) over B windows of T tokens.

    Args:
        rendered: (B, T, D) rendered CLIP-space features at the token centres.
        text: (C, D) unit text features.
        dino: (B, T, Cd) DINO tokens of the same windows (no gradient is taken through them).
        pair_colour: (B, T, 3) colour in [0, 1] of the pixel each token's ray passes through; with
            ``colour_sigma`` > 0 a DINO-similar pair's attraction is scaled by
            ``exp(-|c_i - c_j|^2 / (2 colour_sigma^2))`` (``fda_colour_affinity``).
    Returns ``{'fda': pos_weight*L_pos + neg_weight*L_neg, 'fda_pos': L_pos, 'fda_neg': L_neg}`` with
    ``L_pos = sum max(D,0) J / #{D>0}`` and ``L_neg = sum min(D,0) J / #{D<0}`` over all windows
    together, ``D = cos(d_i, d_j) - dino_shift`` and ``J`` the pairwise JS of
    ``softmax_c(cos(F, t_c) / temperature)``.
    """
    if rendered.ndim != 3 or dino.ndim != 3 or rendered.shape[:2] != dino.shape[:2]:
        raise ValueError(f"fda_loss: rendered (B,T,D) and dino (B,T,Cd) must share B and T, got "
                         f"{tuple(rendered.shape)} and {tuple(dino.shape)}")
    num_tokens = rendered.shape[1]
    log_p = torch.log_softmax(F.normalize(rendered, dim=-1) @ text.t() / temperature, dim=-1)
    dino_unit = F.normalize(dino.detach().float(), dim=-1)
    i, j = sample_pairs(num_tokens, max_pairs, generator, rendered.device)
    pair_js = js_divergence(log_p[:, i], log_p[:, j])                        # (B, K)
    corr = (dino_unit[:, i] * dino_unit[:, j]).sum(-1) - dino_shift         # (B, K)
    pos, neg = corr.clamp(min=0), corr.clamp(max=0)
    if pair_colour is not None and colour_sigma > 0:
        pos = pos * fda_colour_affinity(pair_colour, i, j, colour_sigma)
    n_pos = (corr > 0).sum().clamp(min=1)
    n_neg = (corr < 0).sum().clamp(min=1)
    loss_pos = (pos * pair_js).sum() / n_pos
    loss_neg = (neg * pair_js).sum() / n_neg
    return {"fda": pos_weight * loss_pos + neg_weight * loss_neg, "fda_pos": loss_pos,
            "fda_neg": loss_neg}
