"""Colour-guided filtering of per-class score maps (He, Sun and Tang, "Guided Image Filtering", 2013).

Within every (2r+1)^2 window the output is an affine function of the guide's colour fitted to the
input by ridge regression; each pixel averages the fits of the windows that contain it. Where the
guide is flat (a table) the scores are averaged, so a small object's halo on the table fades into
the table's score; across a colour edge (the table meets an orange ball) the fit follows the edge, so
the ball keeps its own. Window means are torch's average pooling, one axis at a time.

``guided_filter`` is the fast path; ``guided_filter_reference`` solves every window explicitly and
exists for the tests.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def box_mean(x: torch.Tensor, radius: int) -> torch.Tensor:
    """(..., H, W) -> the mean over each pixel's (2r+1)^2 window clipped to the image: torch's average
    pooling along each axis in turn (a clipped window is the product of its clipped rows and columns,
    so ``count_include_pad=False`` per axis gives its mean). Every window is summed directly, so no
    precision is lost to running sums over a 640x480 image; O(r) per pixel, which the fast guided filter
    keeps small."""
    shape = x.shape
    y = x.reshape(-1, 1, *shape[-2:])
    y = F.avg_pool2d(y, (2 * radius + 1, 1), stride=1, padding=(radius, 0), count_include_pad=False)
    y = F.avg_pool2d(y, (1, 2 * radius + 1), stride=1, padding=(0, radius), count_include_pad=False)
    return y.reshape(shape)


def guided_filter(guide: torch.Tensor, src: torch.Tensor, radius: int, eps: float,
                  subsample: int = 1) -> torch.Tensor:
    """``src`` (C, H, W) filtered under the colour ``guide`` (3, H, W), window radius ``radius`` px,
    regulariser ``eps`` (in the guide's units squared: a colour step much larger than sqrt(eps) is an
    edge the output keeps). ``subsample`` > 1: the fast guided filter (He and Sun 2015): the windows'
    fits on both images area-averaged by that factor, the fits' means upsampled bilinearly and applied
    to the full-resolution guide."""
    if radius <= 0:
        return src
    height, width = src.shape[-2:]
    full_guide = guide = guide.double()
    x = src.double()
    if subsample > 1:
        size = (max(1, height // subsample), max(1, width // subsample))
        guide = F.interpolate(guide[None], size=size, mode="area")[0]
        x = F.interpolate(x[None], size=size, mode="area")[0]
        radius = max(1, round(radius / subsample))
    mean_i = box_mean(guide, radius)  # (3, h, w)
    mean_p = box_mean(x, radius)  # (C, h, w)
    cov_ip = box_mean(guide[None] * x[:, None], radius) - mean_i[None] * mean_p[:, None]  # (C, 3, h, w)
    var_i = box_mean(guide[:, None] * guide[None], radius) - mean_i[:, None] * mean_i[None]  # (3, 3, h, w)
    eye = torch.eye(3, dtype=var_i.dtype, device=var_i.device)
    inverse = torch.linalg.inv(var_i.permute(2, 3, 0, 1) + eps * eye)  # (h, w, 3, 3), once for all C
    a = torch.einsum("hwkl,clhw->ckhw", inverse, cov_ip)  # (C, 3, h, w)
    b = mean_p - (a * mean_i[None]).sum(dim=1)
    mean_a, mean_b = box_mean(a, radius), box_mean(b, radius)
    if subsample > 1:  # float32 from here: full-resolution maps, values in the scores' range
        mean_a, mean_b, full_guide = mean_a.float(), mean_b.float(), full_guide.float()
        mean_a = F.interpolate(mean_a.flatten(0, 1)[None], size=(height, width), mode="bilinear",
                               align_corners=False)[0].reshape(-1, 3, height, width)
        mean_b = F.interpolate(mean_b[None], size=(height, width), mode="bilinear", align_corners=False)[0]
    return ((mean_a * full_guide[None]).sum(dim=1) + mean_b).to(src.dtype)


def guided_filter_reference(guide: torch.Tensor, src: torch.Tensor, radius: int, eps: float) -> torch.Tensor:
    """``guided_filter`` by its definition: a ridge fit per window, averaged per pixel. Slow."""
    guide, x = guide.double(), src.double()
    c, h, w = x.shape
    a_sum = torch.zeros(c, 3, h, w, dtype=x.dtype)
    b_sum = torch.zeros(c, h, w, dtype=x.dtype)
    windows = torch.zeros(h, w, dtype=x.dtype)
    for i in range(h):
        for j in range(w):
            rows = slice(max(i - radius, 0), min(i + radius + 1, h))
            cols = slice(max(j - radius, 0), min(j + radius + 1, w))
            g = guide[:, rows, cols].reshape(3, -1)  # (3, n)
            p = x[:, rows, cols].reshape(c, -1)  # (C, n)
            g_mean, p_mean = g.mean(dim=1), p.mean(dim=1)
            cov = (g - g_mean[:, None]) @ (g - g_mean[:, None]).t() / g.shape[1]
            cross = (p - p_mean[:, None]) @ (g - g_mean[:, None]).t() / g.shape[1]  # (C, 3)
            a = torch.linalg.solve(cov + eps * torch.eye(3, dtype=x.dtype), cross.t()).t()  # (C, 3)
            b = p_mean - a @ g_mean
            a_sum[:, :, rows, cols] += a[:, :, None, None]
            b_sum[:, rows, cols] += b[:, None, None]
            windows[rows, cols] += 1
    return (((a_sum / windows) * guide[None]).sum(dim=1) + b_sum / windows).to(src.dtype)


__all__ = ["box_mean", "guided_filter", "guided_filter_reference"]
