"""Training the project's tiny CLIP (open_clip classes, config format and ClipLoss) and tiny DINO
(a timm ViT, DINO self-distillation) on procedurally generated scenes: real, small models that let
the real teacher path (``teacher.kind: clip``) run with weights that mean something, offline.

Both are deterministic on the CPU for a given seed and thread count (one thread by default).
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

TINY_CLIP_NAME = "ovs3d-tiny-clip"
TINY_CLIP_CONFIG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 32, "layers": 4, "width": 128, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 4, "layers": 3},
}
"""A ViT image tower on 32x32 crops (4x4 patches of 8 pixels: the teacher's crops are a few pixels of a
1/8-size image, upscaled, so finer patches see nothing more) and a 3-layer, 32-wide text transformer;
the vocabulary stays open_clip's BPE one (49408 tokens, most of the checkpoint), so its own tokenizer
works unchanged."""
TINY_DINO_MODEL = "vit_tiny_patch16_224"
TINY_DINO_OVERRIDES = {"img_size": 64, "patch_size": 8, "embed_dim": 96, "depth": 4, "num_heads": 3}


@dataclass
class TinyTrainingConfig:
    seed: int = 0
    clip_scenes: int = 600
    """Random scenes rendered for the caption crops (seeds seed+1e6 ..)."""
    clip_views_per_scene: int = 6
    clip_steps: int = 2000
    clip_batch: int = 96
    clip_lr: float = 1e-3
    dino_scenes: int = 1000
    """Random whole views for the self-supervised DINO (seeds seed+2e6 ..)."""
    dino_steps: int = 400
    dino_batch: int = 48
    dino_lr: float = 5e-4
    threads: int = 1


def write_clip_config(folder: Path) -> Path:
    """The open_clip model-config JSON (``teacher.clip.model_config``) registering TINY_CLIP_NAME."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{TINY_CLIP_NAME}.json"
    path.write_text(json.dumps(TINY_CLIP_CONFIG, indent=2) + "\n")
    return path


def build_tiny_clip(config_path: Path):
    import open_clip

    open_clip.add_model_config(config_path)
    model, _, _ = open_clip.create_model_and_transforms(TINY_CLIP_NAME, pretrained=None)
    return model, open_clip.get_tokenizer(TINY_CLIP_NAME)


def _to_model_input(images: np.ndarray, mean, std) -> torch.Tensor:
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def distinct_class_batch(classes_by_id: list[np.ndarray], batch: int, rng: np.random.Generator) -> np.ndarray:
    """Crop indices of ``batch`` crops of distinct classes, classes drawn uniformly: ClipLoss treats
    every other pair in a batch as a negative, so two crops of one class must not share a batch."""
    usable = [i for i, idx in enumerate(classes_by_id) if len(idx)]
    chosen = rng.choice(len(usable), size=min(batch, len(usable)), replace=False)
    return np.array([rng.choice(classes_by_id[usable[c]]) for c in chosen])


def _augment_crops(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Horizontal flips and a little brightness change (never hue: colour is in the captions)."""
    flip = torch.rand(len(x), generator=gen) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
    return x * (1 + 0.2 * (torch.rand(len(x), 1, 1, 1, generator=gen) - 0.5))


def train_clip(cfg: TinyTrainingConfig, out_dir: Path, log) -> Path:
    """Train the tiny CLIP; writes <out_dir>/ovs3d-tiny-clip.json and tiny_clip.pt (fp16 state dict)."""
    from open_clip.loss import ClipLoss

    from ovs3d_ros.data.caption_scenes import TEMPLATES, generate_crops

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    config_path = write_clip_config(out_dir)
    model, tokenizer = build_tiny_clip(config_path)
    pre = model.visual.preprocess_cfg
    start = time.perf_counter()
    data = generate_crops(cfg.seed + 1_000_000, cfg.clip_scenes, cfg.clip_views_per_scene)
    by_class = [np.nonzero(data.classes == c)[0] for c in range(len(data.class_names))]
    log(f"clip data: {len(data.classes)} crops of {sum(len(i) > 0 for i in by_class)} classes "
        f"from {cfg.clip_scenes} scenes in {time.perf_counter() - start:.0f} s")
    captions = {(c, t): tokenizer([tpl.format(n)])[0] for c, n in enumerate(data.class_names)
                for t, tpl in enumerate(TEMPLATES)}
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.clip_lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.clip_lr, total_steps=cfg.clip_steps, pct_start=0.05)
    loss_fn = ClipLoss()
    model.train()
    for step in range(cfg.clip_steps):
        idx = distinct_class_batch(by_class, cfg.clip_batch, rng)
        images = _augment_crops(_to_model_input(data.images[idx], pre["mean"], pre["std"]), gen)
        text = torch.stack([captions[(int(data.classes[i]), int(rng.integers(len(TEMPLATES))))] for i in idx])
        image_features, text_features, logit_scale = model(images, text)[:3]
        loss = loss_fn(image_features, text_features, logit_scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == cfg.clip_steps - 1:
            log(f"clip step {step} loss {loss.item():.4f} logit_scale {logit_scale.item():.2f} "
                f"wall {time.perf_counter() - start:.0f} s cpu {time.process_time():.0f} s")
    path = out_dir / "tiny_clip.pt"
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}, path)
    return path


# ----------------------------------------------------------------------------------------------
# DINO: self-distillation with no labels (Caron et al. 2021), student vs EMA teacher on two views


class DinoHead(torch.nn.Module):
    def __init__(self, dim: int, out: int = 256, hidden: int = 192):
        super().__init__()
        self.mlp = torch.nn.Sequential(torch.nn.Linear(dim, hidden), torch.nn.GELU(),
                                       torch.nn.Linear(hidden, 64))
        self.last = torch.nn.utils.parametrizations.weight_norm(torch.nn.Linear(64, out, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last(F.normalize(self.mlp(x), dim=-1))


def build_tiny_dino():
    import timm

    return timm.create_model(TINY_DINO_MODEL, pretrained=False, num_classes=0, dynamic_img_size=True,
                             **TINY_DINO_OVERRIDES)


def _two_views(images: torch.Tensor, gen: torch.Generator, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two random resized crops (40-100% of each side), flips, brightness/contrast jitter per image."""
    from torchvision.ops import roi_align

    n, _, h, w = images.shape
    views = []
    for _ in range(2):
        frac = 0.4 + 0.6 * torch.rand(n, 1, generator=gen)
        wh = frac * torch.tensor([[w, h]])
        corner = torch.rand(n, 2, generator=gen) * (torch.tensor([[w, h]]) - wh)
        boxes = torch.cat([torch.arange(n, dtype=torch.float32)[:, None], corner, corner + wh], dim=1)
        v = roi_align(images, boxes, output_size=(size, size), sampling_ratio=2, aligned=True)
        v = torch.where((torch.rand(n, generator=gen) < 0.5).view(-1, 1, 1, 1), v.flip(3), v)
        mean = v.mean(dim=(1, 2, 3), keepdim=True)
        contrast = 1 + 0.4 * (torch.rand(n, 1, 1, 1, generator=gen) - 0.5)
        bright = 0.2 * (torch.rand(n, 1, 1, 1, generator=gen) - 0.5)
        views.append((v - mean) * contrast + mean + bright)
    return views[0], views[1]


def _dino_loss(student: torch.Tensor, teacher: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
    t = F.softmax((teacher - center) / 0.04, dim=-1)
    return -(t * F.log_softmax(student / 0.1, dim=-1)).sum(-1).mean()


def train_dino(cfg: TinyTrainingConfig, out_dir: Path, log) -> Path:
    """Train the tiny DINO (CLS and mean patch token both distilled); writes tiny_dino.pt (fp16)."""
    from ovs3d_ros.data.caption_scenes import images_for_self_supervision

    torch.manual_seed(cfg.seed + 1)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    start = time.perf_counter()
    raw = images_for_self_supervision(cfg.seed + 2_000_000, cfg.dino_scenes, size=96)
    log(f"dino data: {len(raw)} views in {time.perf_counter() - start:.0f} s")
    mean = torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)  # timm's ImageNet statistics, as DinoTeacher
    std = torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)
    images = torch.from_numpy(raw).permute(0, 3, 1, 2).float() / 255.0
    student = torch.nn.ModuleDict({"backbone": build_tiny_dino(),
                                   "head": DinoHead(TINY_DINO_OVERRIDES["embed_dim"])})
    teacher = copy.deepcopy(student).requires_grad_(False)
    center = torch.zeros(1, 256)
    opt = torch.optim.AdamW(student.parameters(), lr=cfg.dino_lr, weight_decay=0.04)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.dino_lr, total_steps=cfg.dino_steps, pct_start=0.1)

    def embed(net, x):
        tokens = net["backbone"].forward_features((x - mean) / std)
        # CLS and the mean of the patch tokens: the patch tokens are what FDA uses, so they are trained too
        return net["head"](torch.cat([tokens[:, 0], tokens[:, 1:].mean(1)]))

    for step in range(cfg.dino_steps):
        idx = torch.randint(0, len(images), (cfg.dino_batch,), generator=gen)
        a, b = _two_views(images[idx], gen, TINY_DINO_OVERRIDES["img_size"])
        with torch.no_grad():
            ta, tb = embed(teacher, a), embed(teacher, b)
        sa, sb = embed(student, a), embed(student, b)
        loss = 0.5 * (_dino_loss(sa, tb, center) + _dino_loss(sb, ta, center))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 3.0)
        opt.step()
        sched.step()
        with torch.no_grad():
            momentum = 0.996 + (1 - 0.996) * step / max(1, cfg.dino_steps - 1)
            for ps, pt in zip(student.parameters(), teacher.parameters(), strict=True):
                pt.mul_(momentum).add_(ps.detach(), alpha=1 - momentum)
            center.mul_(0.9).add_(torch.cat([ta, tb]).mean(0, keepdim=True), alpha=0.1)
        if step % 100 == 0 or step == cfg.dino_steps - 1:
            log(f"dino step {step} loss {loss.item():.4f} wall {time.perf_counter() - start:.0f} s "
                f"cpu {time.process_time():.0f} s")
    path = out_dir / "tiny_dino.pt"
    state = teacher["backbone"].state_dict()
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in state.items()}, path)
    return path


def train_all(cfg: TinyTrainingConfig, out_dir: Path, log=print) -> dict:
    """Both models, then a JSON manifest of the settings, seed and timings beside them."""
    torch.set_num_threads(cfg.threads)
    out_dir.mkdir(parents=True, exist_ok=True)
    wall, cpu = time.perf_counter(), time.process_time()
    clip_path = train_clip(cfg, out_dir, log)
    dino_path = train_dino(cfg, out_dir, log) if cfg.dino_steps > 0 else None
    manifest = {"config": asdict(cfg), "clip_model": TINY_CLIP_NAME, "clip_model_config": TINY_CLIP_CONFIG,
                "dino_model": TINY_DINO_MODEL, "dino_arch_overrides": TINY_DINO_OVERRIDES,
                "files": [p.name for p in (clip_path, dino_path) if p is not None],
                "wall_s": round(time.perf_counter() - wall, 1), "cpu_s": round(time.process_time() - cpu, 1),
                "torch": torch.__version__}
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    log(f"done: wall {manifest['wall_s']} s, cpu {manifest['cpu_s']} s")
    return manifest
