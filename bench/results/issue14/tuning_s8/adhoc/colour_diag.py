import numpy as np

from ovs3d_ros.data.scene_spec import open_scene

d = open_scene("synthetic:desk,train=16,test=4,width=160,height=120,seed=3")
for bins in (8, 16):
    acc = np.zeros(len(d.class_names))
    area = np.zeros(len(d.class_names))
    for f in d.train_frames[:8]:
        q = (f.rgb.astype(np.int64) * bins) // 256
        key = (q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]
        cnt = np.bincount(key.ravel(), minlength=bins**3)
        wp = 1.0 / cnt[key]
        wp /= wp.sum()
        for c in range(len(d.class_names)):
            acc[c] += wp[f.labels == c].sum()
            area[c] += (f.labels == c).mean()
    print(bins, {n: f"{a / 8:.3f}/{b / 8:.4f}" for n, a, b in zip(d.class_names, acc, area, strict=True)})
f = d.train_frames[0]
for c, n in enumerate(d.class_names):
    m = f.labels == c
    if m.any():
        print(n, f.rgb[m].mean(0).round(), f.rgb[m].std(0).round())
