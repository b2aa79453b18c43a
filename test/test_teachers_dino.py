"""DINO teacher: tiny timm ViT/8 saved to a file and loaded back; token grid, layer, errors."""

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from teacher_reference import random_image, save_tiny_dino  # noqa: E402

from ovs3d_ros.config import DinoConfig  # noqa: E402
from ovs3d_ros.core.teachers import TeacherLoadError  # noqa: E402
from ovs3d_ros.core.teachers.dino import DinoTeacher, dino_image_size  # noqa: E402
from ovs3d_ros.core.teachers.loading import load_dino  # noqa: E402


@pytest.fixture(scope="module")
def dino(tmp_path_factory):
    return DinoTeacher(save_tiny_dino(tmp_path_factory.mktemp("dino")), "cpu")


def test_input_size_is_a_multiple_of_the_patch():
    assert dino_image_size(640, 480, 5, 64, 8) == (128, 96)
    assert dino_image_size(1440, 1080, 5, 64, 8) == (288, 216)
    assert dino_image_size(320, 240, 5, 64, 8) == (88, 64)  # short side kept at 64
    w, h = dino_image_size(100, 75, 5, 64, 14)
    assert w % 14 == 0 and h % 14 == 0


def test_tokens_are_last_block_before_norm_without_cls(dino):
    rgb = random_image(80, 64, 1)
    tokens = dino.tokens(rgb)
    w, h = dino.input_size(80, 64)
    assert tokens.shape == (h // 8, w // 8, 32) and tokens.dtype == torch.float16
    # Manual forward: resize, ImageNet normalise, all blocks, no final norm, prefix token dropped.
    m = dino.model
    x = torch.tensor(rgb).permute(2, 0, 1)[None].float() / 255.0
    x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    x = (x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    with torch.no_grad():
        z = m.norm_pre(m._pos_embed(m.patch_embed(x)))
        for blk in m.blocks:
            z = blk(z)
    expected = z[0, m.num_prefix_tokens:].reshape(h // 8, w // 8, -1)
    torch.testing.assert_close(tokens.float(), expected, atol=2e-3, rtol=1e-3)
    assert not torch.allclose(m.norm(z)[0, 1:].reshape_as(expected), expected, atol=1e-2)
    assert torch.equal(dino.tokens(rgb), tokens)


def test_missing_pretrained_weights_offline_say_how_to_provide_them():
    with pytest.raises(TeacherLoadError, match=r"vit_small_patch8_224\.dino.*teacher\.dino\.checkpoint"):
        load_dino(DinoConfig(model="vit_small_patch8_224.dino"))


def test_bad_checkpoint_and_overrides(tmp_path):
    with pytest.raises(TeacherLoadError, match="does not exist"):
        load_dino(DinoConfig(checkpoint=str(tmp_path / "missing.pth")))
    with pytest.raises(TeacherLoadError, match="arch_overrides"):
        load_dino(DinoConfig(checkpoint=str(tmp_path / "x.pth"), arch_overrides="{depth: 2"))
    cfg = save_tiny_dino(tmp_path)
    with pytest.raises(TeacherLoadError, match="do not fit the architecture"):
        wider = '{"embed_dim": 48, "depth": 2, "num_heads": 2}'
        load_dino(DinoConfig(checkpoint=cfg.checkpoint, arch_overrides=wider))


def test_weights_round_trip(tmp_path, dino):
    cfg = save_tiny_dino(tmp_path, seed=0)
    again = load_dino(cfg)
    rgb = np.zeros((40, 40, 3), np.uint8)
    assert torch.equal(DinoTeacher(cfg, "cpu", model=again).tokens(rgb), dino.tokens(rgb))
