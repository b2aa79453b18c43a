"""Bounded work per request (issue 17), in the core: a mask's size is capped by its longest side and by
its ray count, a request above the sample budget is refused with the reason, a chunked render lets the
training loop step between chunks, and a reset or checkpoint load between chunks makes the in-flight
query or refine fail cleanly (FieldReplaced) instead of answering from two fields."""

import contextlib
import math
import threading
import time

import pytest
from tiny_config import tiny_room_trainer  # noqa: E402 - test/ is on sys.path
from waiting import wait_until  # noqa: E402 - test/ is on sys.path

from ovs3d_ros.config import Config
from ovs3d_ros.core.field_guard import FieldGuard, FieldReplaced
from ovs3d_ros.core.frame import Intrinsics
from ovs3d_ros.core.query import QueryError, Segmenter
from ovs3d_ros.core.request_budget import (
    RequestTooExpensive,
    check_budget,
    chunk_rays,
    mask_size,
    request_cost,
)


def _mask_size_reference(width: int, height: int, max_side: int, max_rays: int) -> tuple[int, int]:
    """The largest (w, h) with w / h closest to the camera's that fits both caps, by search."""
    if width <= max_side and height <= max_side and width * height <= max_rays:
        return width, height
    best = None
    for w in range(1, min(width, max_side) + 1):
        h = max(1, min(height, max_side, round(w * height / width), max_rays // w))
        if w * h <= max_rays and (best is None or w * h > best[0] * best[1]):
            best = (w, h)
    return best


@pytest.mark.parametrize("width,height,max_side,max_rays", [
    (640, 480, 640, 307_200), (100_000, 100_000, 640, 307_200), (1920, 1080, 640, 307_200),
    (1920, 1080, 4096, 307_200), (80, 60, 640, 307_200), (5000, 3, 640, 100), (3, 5000, 4096, 1000),
    (1, 1, 1, 1), (1000, 1000, 1000, 1),
])
def test_mask_size_meets_both_caps_and_keeps_the_aspect(width, height, max_side, max_rays):
    w, h = mask_size(width, height, max_side, max_rays)
    assert 1 <= w <= min(width, max_side) and 1 <= h <= min(height, max_side)
    assert w * h <= max(1, max_rays)
    ref = _mask_size_reference(width, height, max_side, max_rays)
    # as many rays as the exhaustive search finds, to within a row or column of rounding
    assert w * h >= ref[0] * ref[1] - max(ref) - 1, ((w, h), ref)
    if min(w, h) > 4:
        assert math.isclose(w / h, width / height, rel_tol=0.2)


def test_mask_size_refuses_nonsense():
    for args in [(0, 10, 640, 100), (10, 10, 0, 100), (10, 10, 640, 0)]:
        with pytest.raises(QueryError):
            mask_size(*args)


def test_default_requests_fit_the_budget_and_larger_ones_are_refused_with_the_reason():
    cfg = Config()
    w, h = mask_size(100_000, 100_000, cfg.query.mask_max_side, cfg.query.mask_max_rays)
    check_budget(request_cost(cfg, w * h, True, cfg.query.max_points), cfg)  # the defaults pass
    cfg.query.mask_samples_per_ray = 256  # 640x480 x 288 samples = 88M
    with pytest.raises(RequestTooExpensive, match=r"mask 307200 rays x 288 samples.*request_max_samples"):
        check_budget(request_cost(cfg, 640 * 480, False, 0), cfg)
    with pytest.raises(RequestTooExpensive, match=r"cloud 4294967295 points"):
        check_budget(request_cost(Config(), 0, False, 2**32 - 1), Config())


def test_query_chunks_are_bounded_by_samples_on_a_cpu_and_by_render_chunk_on_a_gpu():
    cfg = Config()
    assert cfg.query.chunk_samples == 0 and cfg.trainer.render_chunk == 8192
    assert chunk_rays(cfg, 64, "cpu") == 32768 // 64  # 512 rays: a reference mask chunk
    assert chunk_rays(cfg, 192, "cpu") == 32768 // 192
    assert chunk_rays(cfg, 64, "cuda:0") == 8192
    assert chunk_rays(cfg, 100_000, "cpu") == 64  # never below MIN_CHUNK_RAYS
    cfg.query.chunk_samples = 10 * 8192 * 64
    assert chunk_rays(cfg, 64, "cuda") == 8192  # never above trainer.render_chunk


@pytest.fixture(scope="module")
def trained():
    trainer, teacher, cfg, data = tiny_room_trainer(3, 48, 36)
    trainer.train(30)
    return trainer, teacher, cfg, data


def test_a_huge_camera_renders_a_mask_capped_by_rays(trained):
    trainer, teacher, cfg, data = trained
    cfg.query.mask_max_side, cfg.query.mask_max_rays = 4096, 600
    try:
        kf = data.train_frames[0]
        huge = Intrinsics(fx=kf.intrinsics.fx * 1000, fy=kf.intrinsics.fy * 1000, cx=50_000.0, cy=50_000.0,
                          width=100_000, height=100_000)
        res = Segmenter(trainer, teacher, cfg).segment(data.class_names, camera=(huge, kf.pose), cloud=False)
        h, w = res.label_image.shape
        assert w * h <= 600 and abs(w - h) <= 1, (w, h)
    finally:
        cfg.query.mask_max_side, cfg.query.mask_max_rays = 640, 307_200


def test_an_expensive_request_is_refused_before_any_work(trained):
    trainer, teacher, cfg, data = trained
    seg = Segmenter(trainer, teacher, cfg)
    cfg.query.request_max_samples = 1000
    try:
        with pytest.raises(RequestTooExpensive, match="request_max_samples"):
            seg.segment(data.class_names, camera=0, max_points=100)
    finally:
        cfg.query.request_max_samples = 32_000_000
    assert seg.point_cache.misses == 0  # refused before the cloud was built


class _ExclusiveHook:
    """Wraps ``trainer.exclusive``: calls ``action()`` once, on the ``at``-th entry, before locking."""

    def __init__(self, trainer, at: int, action):
        self.trainer, self.at, self.action = trainer, at, action
        self.entries = 0
        self._inner = trainer.exclusive

    @contextlib.contextmanager
    def __call__(self):
        self.entries += 1
        if self.entries == self.at:
            self.action()
        with self._inner():
            yield


@pytest.mark.parametrize("what,at", [("mask", 3), ("cloud", 1), ("refine", 3)])
def test_a_reset_between_chunks_fails_the_query_cleanly(what, at):
    trainer, teacher, cfg, data = tiny_room_trainer(3, 48, 36)
    trainer.train(5)
    cfg.trainer.render_chunk = 256  # a 48x36 mask is 7 chunks; the refine set 1 + 2 windows
    seg = Segmenter(trainer, teacher, cfg)
    hook = _ExclusiveHook(trainer, at, trainer.retire)
    trainer.exclusive = hook
    kwargs = dict(mask=dict(camera=0, cloud=False), cloud=dict(max_points=50), refine=dict(refine=True))
    with pytest.raises(FieldReplaced, match="field was reset during the"):
        seg.segment(data.class_names, **kwargs[what])
    assert hook.entries == at  # failed at the first chunk after the reset
    assert len(seg.cache) == 0 and seg.point_cache._entry is None  # nothing half-made is kept


def test_a_checkpoint_load_between_chunks_fails_the_query_and_the_next_one_answers(tmp_path):
    trainer, teacher, cfg, data = tiny_room_trainer(3, 48, 36)
    trainer.train(5)
    path = trainer.save(tmp_path / "a.ckpt")
    cfg.trainer.render_chunk = 256
    seg = Segmenter(trainer, teacher, cfg)
    hook = _ExclusiveHook(trainer, 2, lambda: trainer.load_state_from(path))
    trainer.exclusive = hook
    with pytest.raises(FieldReplaced):
        seg.segment(data.class_names, camera=0, cloud=False)
    res = Segmenter(trainer, teacher, cfg).segment(data.class_names, camera=0, cloud=False)
    assert res.label_image.shape == (36, 48)


@pytest.mark.parametrize("step_every_s", [1e-9, 0.0])
def test_training_steps_during_a_long_mask_only_when_the_query_lets_them_in(step_every_s):
    """A query holds training off for its whole duration, gaps between its chunks included (an operator
    waits for the answer), and lets one pending step in after every query.training_step_every_s of it:
    here before every chunk (1e-9 s; a mask of 31k rays in 16 chunks, long by its size, not by
    sleeping), or never (0: at most the step already in flight when the query came finishes)."""
    trainer, teacher, cfg, data = tiny_room_trainer(3, 48, 36)
    trainer.train(3)
    cfg.trainer.render_chunk = 2048
    cfg.query.mask_max_side, cfg.query.mask_max_rays = 1024, 204 * 153
    cfg.query.training_step_every_s = step_every_s
    kf = data.train_frames[0]
    stop = threading.Event()
    loop = threading.Thread(target=trainer.run, args=(stop,), daemon=True)
    loop.start()
    try:
        with trainer.hold_training():
            assert wait_until(lambda: trainer._step_pending, 120.0)
            assert trainer.yield_to_step(timeout_s=120.0)  # one step; the loop now waits: none in flight
            before = trainer.step_count
            res = Segmenter(trainer, teacher, cfg).segment(data.class_names[:2],
                                                           camera=(kf.intrinsics.scaled(204, 153), kf.pose),
                                                           cloud=False)
            during = trainer.step_count - before
    finally:
        stop.set()
        loop.join(timeout=120)
    assert res.label_image.shape == (153, 204)
    print(f"{during} training steps during a {res.timing_s['render_s']:.1f} s mask render")
    if step_every_s > 0:
        assert during >= 1  # the first chunk lets the waiting step in (later ones, if one is pending)
        assert res.timing_s["steps_let_in"] >= 1
    else:
        assert during == 0
        assert res.timing_s["steps_let_in"] == 0
    assert 0.0 <= res.timing_s["guard_wait_s"] <= res.timing_s["total_s"]


def test_field_guard_counts_the_time_it_waited_for_the_trainer():
    """``FieldGuard.wait_s`` (the query's ``guard_wait_s``) includes the time another holder kept the
    trainer after the guard asked for it: the holder releases only once the guard is queued, and
    measures how long it still held on."""

    class Trainer:
        def __init__(self):
            self.lock = threading.Lock()
            self.queued = threading.Event()

        @contextlib.contextmanager
        def exclusive(self):
            self.queued.set()
            with self.lock:
                yield

    trainer = Trainer()
    guard = FieldGuard(trainer, yield_every_s=0.0)
    held = {}

    def holder(acquired):
        with trainer.lock:
            acquired.set()
            assert trainer.queued.wait(120.0)
            t = time.perf_counter()
            time.sleep(0.05)
            held["s"] = time.perf_counter() - t

    acquired = threading.Event()
    thread = threading.Thread(target=holder, args=(acquired,))
    thread.start()
    assert acquired.wait(120.0)
    with guard():
        pass
    thread.join(120.0)
    assert guard.wait_s >= held["s"] > 0.0


def test_yield_to_step_returns_at_once_without_a_running_loop():
    trainer = tiny_room_trainer(2, 16, 12)[0]
    assert trainer.yield_to_step(timeout_s=60.0) is False


def test_a_waiting_save_goes_before_the_next_chunk_of_a_running_mask():
    """Python's lock is not fair: without ``let_waiters_in`` the running query re-took it chunk after
    chunk before a blocked saver woke. Counted in chunks, not seconds: at most the chunk in flight
    runs between the saver queueing and the saver getting the trainer."""
    from waiting import wait_until  # noqa: E402 - test/ is on sys.path

    trainer, teacher, cfg, data = tiny_room_trainer(3, 48, 36)
    trainer.train(3)
    cfg.trainer.render_chunk = 128
    seg = Segmenter(trainer, teacher, cfg)
    chunks = _ExclusiveHook(trainer, 0, lambda: None)
    trainer.exclusive = chunks  # counts the query's chunks; the saver below uses the real lock
    kf = data.train_frames[0]
    query = threading.Thread(target=seg.segment, args=(data.class_names,),
                             kwargs=dict(camera=(kf.intrinsics.scaled(160, 120), kf.pose), cloud=False))
    query.start()
    try:
        assert wait_until(lambda: chunks.entries >= 3, 120.0)
        queued = chunks.entries
        with chunks._inner():
            got = chunks.entries
        assert query.is_alive(), "the mask ended before the saver got in: make it longer"
        assert got - queued <= 1, (queued, got)
    finally:
        query.join(timeout=300)
