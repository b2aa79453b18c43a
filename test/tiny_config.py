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
