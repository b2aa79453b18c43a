"""Loading CLIP (open_clip) and DINO (timm) models: by pretrained tag/name or from a local file.

A robot is often offline: when weights are neither cached nor downloadable, loading fails with a
TeacherLoadError that names the model and tag (or file) and says how to provide the weights.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from ovs3d_ros.config import ClipConfig, DinoConfig
from ovs3d_ros.core.teachers.base import TeacherLoadError


@dataclass
class ClipBundle:
    """A loaded CLIP model with what the teacher needs from its preprocessing."""

    model: torch.nn.Module
    tokenizer: Callable[[list[str]], torch.Tensor]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    image_size: int
    embed_dim: int
    dtype: torch.dtype


def model_dtype(device: torch.device | str) -> torch.dtype:
    """fp16 on CUDA, fp32 elsewhere."""
    return torch.float16 if torch.device(device).type == "cuda" else torch.float32


def _is_local_file(value: str) -> bool:
    return bool(value) and (os.sep in value or value.endswith((".pt", ".pth", ".bin", ".safetensors"))
                            or Path(value).expanduser().exists())


def read_state_dict(path: str | Path, what: str) -> dict[str, torch.Tensor]:
    """A state dict from a plain state_dict file, a {'state_dict'|'model'|'teacher': ...} wrapper, or
    .safetensors; 'module.' prefixes (DataParallel) are removed."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise TeacherLoadError(f"{what}: checkpoint file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any reader failure means the same thing to the user
        raise TeacherLoadError(f"{what}: cannot read checkpoint file {path}: {exc}") from exc
    for key in ("state_dict", "model", "teacher"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise TeacherLoadError(f"{what}: {path} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


@contextlib.contextmanager
def _quiet_random_init_warning():
    """Drop open_clip's root-logger warning "No pretrained weights loaded ... initialized randomly" while
    the architecture is built for a local checkpoint: it would tell a user the opposite of what happens
    (``_load_into`` then loads every weight, or fails loudly)."""
    def keep(record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("No pretrained weights loaded")

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


def _load_into(model: torch.nn.Module, state: dict[str, torch.Tensor], path: str, what: str) -> None:
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise TeacherLoadError(f"{what}: the weights in {path} do not fit the architecture "
                               f"(wrong model name?): {str(exc)[:600]}") from exc


# ----------------------------------------------------------------------------------------------
# CLIP


def load_clip(cfg: ClipConfig, device: torch.device | str = "cpu") -> ClipBundle:
    """open_clip model ``cfg.model`` with weights from ``cfg.pretrained``: a tag (open_clip downloads
    it once into ``cfg.cache_dir``) or a local file (architecture built, then the state dict loaded)."""
    import open_clip

    if cfg.model_config:
        cfg_path = Path(cfg.model_config).expanduser()
        if not cfg_path.exists():
            raise TeacherLoadError(f"teacher.clip.model_config: {cfg_path} does not exist")
        open_clip.add_model_config(cfg_path)
    if cfg.model not in open_clip.list_models():
        raise TeacherLoadError(f"teacher.clip.model: unknown open_clip architecture '{cfg.model}' "
                               f"(e.g. ViT-B-16; a custom one needs teacher.clip.model_config)")
    what = f"CLIP model '{cfg.model}'"
    if _is_local_file(cfg.pretrained):
        with _quiet_random_init_warning():  # the weights are loaded on the next line (strictly)
            model, _, _ = open_clip.create_model_and_transforms(cfg.model, pretrained=None)
        _load_into(model, read_state_dict(cfg.pretrained, what), cfg.pretrained, what)
    else:
        try:
            model, _, _ = open_clip.create_model_and_transforms(
                cfg.model, pretrained=cfg.pretrained or None, cache_dir=cfg.cache_dir or None)
        except Exception as exc:  # noqa: BLE001 - open_clip raises RuntimeError/OSError/HF errors
            raise TeacherLoadError(
                f"{what} with pretrained tag '{cfg.pretrained}' could not be loaded: weights are not in "
                f"the cache ({cfg.cache_dir or 'open_clip default, ~/.cache'}) and could not be "
                f"downloaded ({type(exc).__name__}: {str(exc)[:300]}). On a connected machine run "
                f"`python -c \"import open_clip; open_clip.create_model_and_transforms('{cfg.model}', "
                f"pretrained='{cfg.pretrained}', cache_dir='<dir>')\"` and copy <dir> here as "
                f"teacher.clip.cache_dir, or save the model's state_dict to a file and set "
                f"teacher.clip.pretrained to that file's path.") from exc
    dtype = model_dtype(device)
    model = model.to(device=device, dtype=dtype).eval()
    pre = getattr(model.visual, "preprocess_cfg", {}) or {}
    size = pre.get("size", model.visual.image_size)
    size = size[0] if isinstance(size, (tuple, list)) else size
    if pre.get("resize_mode", "shortest") != "shortest" or pre.get("interpolation", "bicubic") != "bicubic":
        raise TeacherLoadError(f"{what}: only 'shortest' bicubic preprocessing is supported, got {pre}")
    embed_dim = int(model.text_projection.shape[1]) if getattr(model, "text_projection", None) is not None \
        else int(model.visual.output_dim)
    return ClipBundle(model=model, tokenizer=open_clip.get_tokenizer(cfg.model),
                      mean=tuple(pre.get("mean", open_clip.OPENAI_DATASET_MEAN)),
                      std=tuple(pre.get("std", open_clip.OPENAI_DATASET_STD)),
                      image_size=int(size), embed_dim=embed_dim, dtype=dtype)


# ----------------------------------------------------------------------------------------------
# DINO


def dino_overrides(cfg: DinoConfig) -> dict[str, Any]:
    """teacher.dino.arch_overrides parsed into timm create_model keyword arguments."""
    if not cfg.arch_overrides:
        return {}
    try:
        overrides = json.loads(cfg.arch_overrides)
    except json.JSONDecodeError as exc:
        raise TeacherLoadError(f"teacher.dino.arch_overrides is not valid JSON: {exc}") from exc
    if not isinstance(overrides, dict):
        raise TeacherLoadError("teacher.dino.arch_overrides must be a JSON object, e.g. '{\"depth\": 2}'")
    return overrides


def load_dino(cfg: DinoConfig, device: torch.device | str = "cpu") -> torch.nn.Module:
    """timm ViT ``cfg.model`` (dynamic image size) with timm's pretrained weights or ``cfg.checkpoint``."""
    import timm

    what = f"DINO model '{cfg.model}'"
    kwargs = dict(dynamic_img_size=True, num_classes=0, **dino_overrides(cfg))
    try:
        model = timm.create_model(cfg.model, pretrained=not cfg.checkpoint, **kwargs)
    except Exception as exc:  # noqa: BLE001 - timm raises RuntimeError/OSError/HF errors
        if cfg.checkpoint:
            raise TeacherLoadError(f"{what}: cannot build the architecture: {exc}") from exc
        raise TeacherLoadError(
            f"{what}: pretrained weights are not in the timm/Hugging Face cache and could not be "
            f"downloaded ({type(exc).__name__}: {str(exc)[:300]}). On a connected machine run "
            f"`python -c \"import timm, torch; m = timm.create_model('{cfg.model}', pretrained=True); "
            f"torch.save(m.state_dict(), 'dino.pth')\"`, copy dino.pth here and set "
            f"teacher.dino.checkpoint to its path (or copy the Hugging Face cache, HF_HOME).") from exc
    if cfg.checkpoint:
        state = read_state_dict(cfg.checkpoint, what)
        try:  # official DINO/DINOv2 checkpoints use other key names and position-embedding sizes
            from timm.models.vision_transformer import checkpoint_filter_fn

            state = checkpoint_filter_fn(state, model)
        except Exception:  # noqa: BLE001, S110 - a timm-format state dict needs no filtering
            pass
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
        _load_into(model, state, cfg.checkpoint, what)
    if not hasattr(model, "forward_intermediates"):
        raise TeacherLoadError(f"{what}: needs a timm ViT with forward_intermediates")
    return model.to(device=device, dtype=model_dtype(device)).eval()
