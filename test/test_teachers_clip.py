"""CLIP teacher: boxes, crops and features against the original one-crop-at-a-time loop; loading."""

import os
import sys
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torchvision.transforms as T  # noqa: E402
from PIL import Image  # noqa: E402
from teacher_reference import (  # noqa: E402
    jitter_feeder,
    open_clip_preprocess,
    per_pixel_cosine,
    random_image,
    reference_boxes,
    reference_patch_features,
    save_tiny_clip,
)

from ovs3d_ros.config import ClipConfig, TeacherConfig  # noqa: E402
from ovs3d_ros.core.frame import Frame, Intrinsics  # noqa: E402
from ovs3d_ros.core.teachers import TeacherError, TeacherLoadError, build_teacher  # noqa: E402
from ovs3d_ros.core.teachers.clip import (  # noqa: E402
    ClipTeacher,
    cut_crops,
    draw_jitter,
    grid_shape,
    multiscale_boxes,
    patch_boxes,
    teacher_image_size,
)
from ovs3d_ros.core.teachers.loading import load_clip  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    cfg = save_tiny_clip(tmp_path_factory.mktemp("clip"))
    cfg.min_teacher_short_side = 20
    return cfg, load_clip(cfg, "cpu")


def make_frame(width=48, height=36, seed=0, stamp=0.0):
    intr = Intrinsics(fx=40.0, fy=40.0, cx=width / 2, cy=height / 2, width=width, height=height)
    return Frame(rgb=random_image(width, height, seed), intrinsics=intr, pose=np.eye(4), stamp=stamp,
                 source_id=f"test:{seed}")


@pytest.mark.parametrize("size,patch", [((27, 20), 4), ((53, 40), 8), ((80, 60), 12), ((80, 60), 6)])
def test_boxes_equal_the_original_loop(size, patch, rng):
    w, h = size
    stride = patch // 4
    rows, cols = grid_shape(w, h, patch, stride)
    no_jitter = reference_boxes(w, h, patch, lambda a, b: 0)
    assert patch_boxes(w, h, patch, stride).tolist() == [list(b) for b in no_jitter]
    jitter = draw_jitter(rng, rows * cols, patch // 4)
    ours = patch_boxes(w, h, patch, stride, jitter)
    assert ours.tolist() == [list(b) for b in reference_boxes(w, h, patch, jitter_feeder(jitter))]
    # The grid reaches both borders and every side stays within [p, 1.5p] before clamping.
    assert ours[:, 2].max() == w and ours[:, 3].max() == h
    sides = np.concatenate([ours[:, 2] - ours[:, 0], ours[:, 3] - ours[:, 1]])
    assert sides.max() <= patch + 2 * (patch // 4) and sides.min() >= 1


def test_multiscale_boxes_follow_config():
    cfg = ClipConfig(jitter=False)
    boxes = multiscale_boxes(80, 60, cfg, None)
    assert [b[0, 2] - b[0, 0] for b in boxes] == [12, 8, 6]
    counts = [int(np.prod(grid_shape(80, 60, p, max(1, p // 4)))) for p in (12, 8, 6)]
    assert [len(b) for b in boxes] == counts
    assert teacher_image_size(640, 480, 8, 40) == (80, 60)
    assert teacher_image_size(320, 240, 8, 40) == (53, 40)
    assert teacher_image_size(32, 24, 8, 40) == (32, 24)  # never upsampled


@pytest.mark.parametrize("crop", [224, 32])
def test_tensor_crops_equal_pil_preprocessing(crop, rng):
    img = random_image(40, 30, 3)
    boxes = []
    for _ in range(60):
        left, top = int(rng.integers(0, 35)), int(rng.integers(0, 25))
        right, bottom = min(40, left + int(rng.integers(1, 16))), min(30, top + int(rng.integers(1, 16)))
        boxes.append((left, top, right, bottom))
    tf = T.Compose([T.Resize(crop, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(crop)])
    ref = np.stack([np.asarray(tf(Image.fromarray(img).crop(b))) for b in boxes]).astype(np.float32)
    image = torch.from_numpy(img).permute(2, 0, 1).float()
    ours = cut_crops(image, torch.tensor(boxes), crop, pil_rounding=True)
    diff = np.abs(ours.permute(0, 2, 3, 1).numpy() - ref)
    assert diff.max() <= 2.0 and (diff > 0).mean() < 1e-3  # only float-vs-fixed-point rounding ties
    linear = cut_crops(image, torch.tensor(boxes), crop, pil_rounding=False)
    assert np.abs(linear.permute(0, 2, 3, 1).numpy() - ref).mean() < 0.6  # PIL's uint8 rounding only


@pytest.mark.parametrize("pil_rounding", [False, True])
def test_batched_features_equal_reference_loop(tiny, pil_rounding):
    cfg, bundle = tiny
    cfg = replace(cfg, jitter=False, pil_rounding=pil_rounding)
    teacher = ClipTeacher(cfg, "cpu", bundle=bundle)
    image = teacher.teacher_image(random_image(96, 72, 2))
    boxes = multiscale_boxes(image.shape[1], image.shape[0], cfg, None)
    ours = teacher.patch_features(image, boxes)
    preprocess = open_clip_preprocess(bundle.model)
    ref = reference_patch_features(bundle.model, preprocess, Image.fromarray(image), boxes)
    assert ours.shape == ref.shape == (3, bundle.embed_dim, image.shape[0], image.shape[1])
    assert per_pixel_cosine(ours, ref).min() >= 0.999


def test_chunking_does_not_change_features(tiny):
    cfg, bundle = tiny
    frame = make_frame()
    cfg = replace(cfg, stride_fraction=0.5)  # ~280 crops: ~90 batches of 3 stay fast
    small = ClipTeacher(replace(cfg, batch_size=3), "cpu", bundle=bundle).extract(frame)
    large = ClipTeacher(replace(cfg, batch_size=1000), "cpu", bundle=bundle).extract(frame)
    torch.testing.assert_close(small.clip.float(), large.clip.float(), atol=2e-3, rtol=0)


def test_extract_shapes_dtypes_and_seeded_jitter(tiny):
    cfg, bundle = tiny
    teacher = ClipTeacher(cfg, "cpu", seed=3, bundle=bundle)
    frame = make_frame()
    a, b = teacher.extract(frame), teacher.extract(frame)
    w, h = teacher_image_size(48, 36, cfg.image_downsample, cfg.min_teacher_short_side)
    assert a.clip.shape == (3, bundle.embed_dim, h, w) and a.clip.dtype == torch.float16
    assert a.dino is None
    norms = a.clip.float().norm(dim=1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=2e-3)
    assert torch.equal(a.clip, b.clip)  # same frame, same seed: same jitter
    other_view = teacher.extract(make_frame(stamp=1.0))
    assert not torch.equal(a.clip, other_view.clip)  # another view draws other jitter
    assert a.nbytes() == a.clip.numel() * 2
    down = ClipTeacher(replace(cfg, feature_downsample=2), "cpu", bundle=bundle)
    assert down.extract(frame).clip.shape[-2:] == (h // 2, w // 2)


def test_text_features_unit_cached_and_templated(tiny):
    cfg, bundle = tiny
    teacher = ClipTeacher(cfg, "cpu", bundle=bundle)
    text = teacher.encode_text(["chair", "wooden table", "floor"])
    assert text.shape == (3, bundle.embed_dim) and text.dtype == torch.float32
    assert torch.allclose(text.norm(dim=1), torch.ones(3), atol=1e-5)
    assert teacher.encode_text(["chair", "wooden table", "floor"]) is text
    tokens = bundle.tokenizer(["chair"])
    raw = torch.nn.functional.normalize(bundle.model.encode_text(tokens).float(), dim=-1)
    torch.testing.assert_close(text[0], raw[0].detach())  # the paper: raw class string, no template
    templ = ClipTeacher(replace(cfg, prompt_template="a photo of a {}."), "cpu", bundle=bundle)
    assert not torch.allclose(templ.encode_text(["chair"]), text[:1])
    for bad in ([], [""], "chair", [3]):
        with pytest.raises(TeacherError):
            teacher.encode_text(bad)


def test_load_from_wrapped_state_dict_equals_plain(tmp_path, tiny):
    cfg, bundle = tiny
    wrapped = save_tiny_clip(tmp_path, seed=0, wrap=True)
    other = load_clip(wrapped, "cpu")
    pairs = zip(bundle.model.state_dict().items(), other.model.state_dict().items(), strict=True)
    for (k, v), (k2, v2) in pairs:
        assert k == k2 and torch.equal(v, v2)


def test_build_teacher_with_dino_from_files(tmp_path):
    from teacher_reference import save_tiny_dino

    tcfg = TeacherConfig(clip=save_tiny_clip(tmp_path / "c"), dino=save_tiny_dino(tmp_path / "d"))
    tcfg.clip.min_teacher_short_side = 20
    teacher = build_teacher(tcfg, "cpu")
    feats = teacher.extract(make_frame(64, 48))
    assert feats.dino is not None and feats.dino.dtype == torch.float16 and feats.dino.shape == (6, 8, 32)
    assert feats.nbytes() == feats.clip.numel() * 2 + feats.dino.numel() * 2


def test_missing_weights_fail_with_actionable_message(tmp_path):
    with pytest.raises(TeacherLoadError, match=r"ViT-B-16.*'openai'.*teacher\.clip\.pretrained"):
        load_clip(ClipConfig(model="ViT-B-16", pretrained="openai", cache_dir=str(tmp_path)))
    missing = tmp_path / "nope" / "clip.pt"
    with pytest.raises(TeacherLoadError, match=str(missing)):
        load_clip(ClipConfig(model="ViT-B-16", pretrained=str(missing)))
    with pytest.raises(TeacherLoadError, match="unknown open_clip architecture"):
        load_clip(ClipConfig(model="no-such-model"))


def test_weights_of_another_architecture_are_rejected(tmp_path):
    cfg = save_tiny_clip(tmp_path)
    with pytest.raises(TeacherLoadError, match="do not fit the architecture"):
        load_clip(ClipConfig(model="ViT-B-16", pretrained=cfg.pretrained))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(TeacherLoadError, match="cannot read checkpoint"):
        load_clip(ClipConfig(model="ViT-B-16", pretrained=str(garbage)))


def test_prefix_sum_equals_cumsum_along_each_dimension():
    from ovs3d_ros.core.teachers.clip import prefix_sum_

    x = torch.randn(3, 5, 7, 4, dtype=torch.float64)
    for dim in range(4):
        torch.testing.assert_close(prefix_sum_(x.clone(), dim), x.cumsum(dim))
    both = prefix_sum_(prefix_sum_(x.clone(), 1), 2)
    torch.testing.assert_close(both, x.cumsum(1).cumsum(2))
