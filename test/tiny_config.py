"""The tiny Config the core tests share: small hash grids, few rays and samples, a synthetic teacher
with a 32-d embedding, so a real Trainer/Segmenter runs in a fraction of a second per step."""

from ovs3d_ros.config import Config


def tiny_config() -> Config:
    cfg = Config(device="cpu")
    f, t, s, q = cfg.field, cfg.trainer, cfg.semantic, cfg.query
    f.num_levels, f.log2_hashmap_size, f.max_resolution, f.hidden_dim = 4, 12, 128, 32
    f.semantic_num_levels, f.semantic_log2_hashmap_size, f.semantic_max_resolution = 4, 12, 64
    f.occupancy_warmup_steps = 10
    t.rays_per_step, t.samples_per_ray, t.importance_samples = 256, 16, 8
    t.render_samples_per_ray, t.render_importance_samples, t.semantic_start_step = 16, 8, 2
    s.rays_per_step, s.fda_window, s.fda_windows_per_step = 128, 6, 1
    q.refine_rays, q.refine_windows, q.refine_max_steps, q.refine_rays_per_step = 512, 2, 20, 256
    q.voxel_size_m, q.max_points = 0.05, 2000
    cfg.keyframes.min_translation_m = cfg.keyframes.min_rotation_deg = 0.0
    cfg.teacher.kind = "synthetic"
    cfg.teacher.synthetic.embed_dim = f.clip_dim = 32
    return cfg


def tiny_room_trainer(frames: int = 3, width: int = 32, height: int = 24, seed: int = 0):
    """(trainer, teacher, cfg, data): a Trainer on ``tiny_config()`` with the synthetic teacher, holding
    the training frames of a ``frames``-view room scene (not yet trained)."""
    import torch

    from ovs3d_ros.core.teachers import build_teacher
    from ovs3d_ros.core.trainer import Trainer
    from ovs3d_ros.data.synthetic import SyntheticScene

    torch.manual_seed(seed)
    data = SyntheticScene("room", seed=seed).make_frames(frames, 0, width, height)
    cfg = tiny_config()
    teacher = build_teacher(cfg.teacher, "cpu", data.class_names)
    trainer = Trainer(cfg, "cpu", teacher)
    for frame in data.train_frames:
        trainer.add_frame(frame)
    return trainer, teacher, cfg, data
