"""Out-of-memory during a training step or a query (core/oom.py), tested on CPU by INJECTING the
allocator's exception type (torch.OutOfMemoryError) from inside the field's forward pass: the guard
catches it, halves the budget, logs a warning, and training / the query goes on."""

import logging
import threading
import time

import pytest
import torch
from tiny_config import tiny_config as _tiny_config  # noqa: E402 - test/ is on sys.path

from ovs3d_ros.config import Config
from ovs3d_ros.core import oom
from ovs3d_ros.core.query import Segmenter
from ovs3d_ros.core.teachers import build_teacher
from ovs3d_ros.core.trainer import Trainer
from ovs3d_ros.data.synthetic import SyntheticScene


def tiny_config() -> Config:
    cfg = _tiny_config()
    cfg.trainer.rays_per_step, cfg.trainer.oom_min_rays_per_step = 512, 64
    cfg.semantic.rays_per_step = 256
    cfg.query.oom_retries = 2
    return cfg


@pytest.fixture(scope="module")
def scene_data():
    return SyntheticScene("room", seed=0).make_frames(3, 1, 32, 24)


@pytest.fixture
def trained(scene_data):
    data = scene_data
    cfg = tiny_config()
    teacher = build_teacher(cfg.teacher, "cpu", data.class_names)
    trainer = Trainer(cfg, "cpu", teacher)
    for frame in data.train_frames:
        trainer.add_frame(frame)
    trainer.train(1)
    return data, cfg, teacher, trainer


def inject_oom(monkeypatch, obj, name: str, times: int = 1, message: str = "CUDA out of memory (INJECTED)"):
    """Make ``obj.name`` raise torch.OutOfMemoryError on its next ``times`` calls (an injection: no
    real allocator ran out), then behave normally. Returns the list of calls that raised."""
    original = getattr(obj, name)
    raised: list[int] = []

    def failing(*args, **kwargs):
        if len(raised) < times:
            raised.append(1)
            raise torch.OutOfMemoryError(message)
        return original(*args, **kwargs)

    monkeypatch.setattr(obj, name, failing)
    return raised


def test_is_out_of_memory_recognises_cuda_and_cpu_allocator_errors():
    assert oom.is_out_of_memory(torch.OutOfMemoryError("x"))
    assert oom.is_out_of_memory(torch.cuda.OutOfMemoryError("x"))
    try:  # the real CPU allocator failure: 10 TB
        torch.empty(10**13, dtype=torch.uint8)
    except RuntimeError as exc:
        assert oom.is_out_of_memory(exc)
    assert not oom.is_out_of_memory(RuntimeError("shape mismatch"))
    assert not oom.is_out_of_memory(ValueError("can't allocate memory"))


def test_oom_guard_passes_other_errors_through():
    with pytest.raises(KeyError):
        with oom.oom_guard(lambda: "nothing"):
            raise KeyError("not memory")


def test_step_oom_is_caught_budget_halved_warning_logged_and_training_continues(trained, monkeypatch, caplog):
    _, cfg, _, trainer = trained
    steps_before = trainer.step_count
    raised = inject_oom(monkeypatch, trainer.field, "density_contracted")
    with caplog.at_level(logging.WARNING, logger="ovs3d_ros.oom"):
        assert oom.guarded_step(trainer) is None
    assert raised == [1]
    budget = trainer.memory_budget
    assert budget.rays(trainer.cfg) == 256 and budget.feature_rays(trainer.cfg) == 128
    # the config stays what the user set (the node reports it as its parameters)
    assert trainer.cfg.trainer.rays_per_step == 512 and trainer.cfg.semantic.rays_per_step == 256
    assert trainer.step_count == steps_before  # the failed step did not count
    assert any("out of memory" in r.message and "256" in r.message for r in caplog.records)
    result = oom.guarded_step(trainer)  # the injection is spent: a real step with the smaller budget
    assert result is not None and torch.isfinite(torch.tensor(result["loss"]))
    assert trainer.step_count == steps_before + 1


def test_repeated_oom_never_goes_below_the_floor(trained, monkeypatch):
    _, _, _, trainer = trained
    inject_oom(monkeypatch, trainer.field, "density_contracted", times=10)
    warnings: list[str] = []
    for _ in range(10):
        assert oom.guarded_step(trainer, warn=warnings.append) is None
    assert trainer.memory_budget.rays(trainer.cfg) == trainer.cfg.trainer.oom_min_rays_per_step == 64
    assert trainer.memory_budget.feature_rays(trainer.cfg) >= 1
    assert trainer.cfg.trainer.rays_per_step == 512
    assert "floor" in warnings[-1]
    assert oom.guarded_step(trainer) is not None


def test_oom_in_backward_leaves_no_stale_gradients(trained, monkeypatch):
    _, _, _, trainer = trained
    original_backward = torch.Tensor.backward
    calls = []

    def failing_backward(self, *args, **kwargs):  # INJECTED: backward runs, then the allocator "fails"
        original_backward(self, *args, **kwargs)
        if not calls:
            calls.append(1)
            raise torch.OutOfMemoryError("CUDA out of memory (INJECTED in backward)")

    monkeypatch.setattr(torch.Tensor, "backward", failing_backward)
    params = [p.detach().clone() for p in trainer.field.parameters()]
    assert oom.guarded_step(trainer) is None
    assert all(p.grad is None for p in trainer.field.parameters())
    assert all(torch.equal(a, b.detach()) for a, b in zip(params, trainer.field.parameters(), strict=True))
    assert oom.guarded_step(trainer) is not None


def test_training_thread_survives_injected_oom(trained, monkeypatch):
    """The loop the node runs, with the guard around the step (the call Trainer.run should make)."""
    _, _, _, trainer = trained
    raised = inject_oom(monkeypatch, trainer.field, "density_contracted", times=2)
    stop = threading.Event()
    errors: list[BaseException] = []

    def loop():
        try:
            while not stop.is_set():
                oom.guarded_step(trainer, warn=lambda _m: None)
        except BaseException as exc:  # noqa: BLE001 - the test reports whatever escaped
            errors.append(exc)

    start = trainer.step_count
    thread = threading.Thread(target=loop)
    thread.start()
    t0 = time.monotonic()
    while trainer.step_count < start + 3 and time.monotonic() - t0 < 30:
        time.sleep(0.05)
    stop.set()
    thread.join(10)
    assert not errors and len(raised) == 2 and trainer.step_count >= start + 3


def test_query_oom_retries_with_half_the_points_and_chunk(trained, monkeypatch):
    data, cfg, teacher, trainer = trained
    seg = Segmenter(trainer, teacher, cfg)
    chunk_before = trainer.render_chunk()
    configured = trainer.cfg.trainer.render_chunk
    calls: list[int] = []
    original = seg.segment

    def record(classes, max_points=None, **kw):
        calls.append(max_points)
        return original(classes, max_points=max_points, **kw)

    monkeypatch.setattr(seg, "segment", record)
    inject_oom(monkeypatch, trainer.field, "semantic_at")  # the cloud's per-point features
    warnings: list[str] = []
    result = oom.segment_with_oom_retry(seg, data.class_names, warn=warnings.append, max_points=1000,
                                        camera=0)
    assert calls == [1000, 500]
    assert len(result.labels) <= 500 and result.label_image is not None
    assert trainer.render_chunk() == chunk_before // 2 and trainer.cfg.trainer.render_chunk == configured
    assert warnings and "500 points" in warnings[0]


def test_query_that_never_fits_is_a_clear_error(trained, monkeypatch):
    data, cfg, teacher, trainer = trained
    seg = Segmenter(trainer, teacher, cfg)
    inject_oom(monkeypatch, trainer.field, "semantic_at", times=100)
    with pytest.raises(oom.QueryOutOfMemory, match="after 2 retries"):
        oom.segment_with_oom_retry(seg, data.class_names, warn=lambda _m: None)
    inject_oom(monkeypatch, trainer.field, "semantic_at", times=0)
    monkeypatch.undo()
    assert len(oom.segment_with_oom_retry(seg, data.class_names).labels) > 0
