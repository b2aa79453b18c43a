"""The incremental trainer: keyframes in, a continuously optimised field out.

``Trainer.step()`` is synchronous and does one optimisation step under the trainer lock; ``run()`` is
the loop a thread calls. ``add_frame`` runs keyframe selection and teacher extraction *outside* that
lock, so frames arrive while training goes on; ``render`` takes the lock between steps and announces
itself first, so the training loop lets it in after at most the step in flight.

Extension hook: ``trainer.extra_losses`` is a list of callables
``hook(trainer, batch: RayBatch, outputs: RenderOutputs) -> dict[str, Tensor]`` called inside
``step()`` after the built-in losses. Each returns already-weighted scalar terms (its own config
decides the weights); they are added to the total and reported in ``step()``'s result and
``stats()['losses']`` under their names. ``outputs.feature``/``selection`` exist for the first
``len(outputs.feature)`` rays of the batch once semantic training has started (else None).
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ovs3d_ros.config import Config, ConfigError, from_nested, resolve_device, to_nested, validate
from ovs3d_ros.core import losses, metrics
from ovs3d_ros.core.checkpoint import (
    FORMAT_TAG,
    FORMAT_VERSION,
    CheckpointError,
    read_checkpoint,
    save_checkpoint,
)
from ovs3d_ros.core.field import OccupancyGrid, SemanticField
from ovs3d_ros.core.field.semantic_average import SemanticAverage
from ovs3d_ros.core.frame import Frame, Intrinsics
from ovs3d_ros.core.keyframes import KeyframeBuffer, KeyframeError, RayBatch
from ovs3d_ros.core.oom import MemoryBudget, guarded_step
from ovs3d_ros.core.rendering import RenderOutputs, SamplingSettings, render_image, render_rays
from ovs3d_ros.core.semantic_targets import colour_guided_maps, feature_target_weights

ExtraLoss = Callable[["Trainer", RayBatch, RenderOutputs], dict[str, torch.Tensor]]


class TrainerError(RuntimeError):
    """The trainer cannot do what was asked (no keyframes yet, wrong teacher dimension, ...)."""


class Trainer:
    def __init__(self, cfg: Config, device: str | torch.device = "cpu", teacher=None):
        self.cfg = validate(cfg)  # a Config assigned attribute by attribute is checked here
        self.device = torch.device(resolve_device(cfg) if str(device) == "auto" else device)
        self.teacher = teacher
        if teacher is not None and getattr(teacher, "embed_dim", cfg.field.clip_dim) != cfg.field.clip_dim:
            raise TrainerError(
                f"teacher embeds in {teacher.embed_dim} dimensions but field.clip_dim is "
                f"{cfg.field.clip_dim}; set field.clip_dim to the teacher's dimension"
            )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.field = SemanticField(cfg.field).to(self.device)
        self.semantic_average = SemanticAverage(self.field, cfg.semantic.average_decay,
                                                cfg.semantic.average_power)
        f = cfg.field
        self.occupancy = OccupancyGrid(
            f.occupancy_resolution,
            f.occupancy_threshold,
            f.occupancy_ema_decay,
            f.occupancy_warmup_steps,
            f.occupancy_update_fraction,
        ).to(self.device)
        self.keyframes = KeyframeBuffer(cfg.keyframes, self.device)
        groups = self.field.param_groups()
        t = cfg.trainer
        self.optimizer = torch.optim.Adam(
            [
                {"params": groups["grid"], "lr": t.lr_grid, "name": "grid"},
                {"params": groups["mlp"], "lr": t.lr_mlp, "name": "mlp"},
            ],
            betas=(0.9, 0.99),
            eps=t.adam_eps,
            fused=True,
        )  # one kernel over the hash tables: about 2x faster than foreach on CPU
        self.scheduler = torch.optim.lr_scheduler.ExponentialLR(
            self.optimizer, gamma=0.1 ** (1.0 / t.lr_decay_steps)
        )
        self.sample_generator = torch.Generator().manual_seed(t.seed)
        self.render_generator = torch.Generator(device=self.device).manual_seed(t.seed + 1)
        self.train_settings = SamplingSettings.for_training(cfg)
        self.render_settings = SamplingSettings.for_rendering(cfg)
        self.extra_losses: list[ExtraLoss] = []
        self.step_count = 0
        self.semantic_step_count = 0
        self._semantics_started = False
        self.running_psnr = float("nan")  # exponential mean of the training batches' PSNR
        self.training_time_s = 0.0
        self.frames_seen = 0
        self.frames_rejected = 0
        self.last_losses: dict[str, float] = {}
        self.last_psnr = float("nan")
        self.observed_min = np.full(3, np.inf)
        self.observed_max = np.full(3, -np.inf)
        self.max_observed_depth = 0.0
        self.nonfinite_steps = 0
        self.quarantined_keyframes = 0
        self._step_times: deque[tuple[float, float]] = deque(maxlen=50)
        self.memory_budget = MemoryBudget()  # caps after out-of-memory errors; cfg stays as set
        self._lock = threading.RLock()
        # bumped when the field is replaced (a checkpoint load) or the trainer retired (a reset): a
        # request rendering chunk by chunk (core/field_guard.py) then fails at its next chunk
        self.field_version = 0
        self.retired = False
        self._waiting = 0
        self._waiting_lock = threading.Lock()
        # the run loop announces the step it is about to take, so a long chunked request can let it in
        # (yield_to_step); loop_iterations counts the loop's attempts, skipped (OOM) steps included
        self._step_pending = False
        self._loop_iterations = 0
        self._step_done = threading.Condition()
        # requests someone is waiting for (a query) hold the loop off for their whole duration, not only
        # while they hold the lock: between their chunks a step would otherwise slip in every time
        self._holding = 0
        self._let_in_iteration = -1  # the loop iteration yield_to_step let past the hold

    # ------------------------------------------------------------------ locking
    @contextlib.contextmanager
    def exclusive(self):
        """Hold the trainer between steps (render, query, save); the run loop yields to waiters."""
        with self._waiting_lock:
            self._waiting += 1
        try:
            with self._lock:
                yield
        finally:
            with self._waiting_lock:
                self._waiting -= 1

    def retire(self) -> None:
        """This trainer was replaced (a reset): requests still using it fail at their next chunk, and
        its training loop ends after the step in flight once its stop event is set. Takes no lock, so a
        reset never waits for a query or a step."""
        self.retired = True
        self.field_version += 1

    @contextlib.contextmanager
    def hold_training(self):
        """While held (by a request someone waits for), the run loop takes no step but those let in by
        ``yield_to_step``. Nests; takes no lock."""
        with self._waiting_lock:
            self._holding += 1
        try:
            yield
        finally:
            with self._waiting_lock:
                self._holding -= 1

    def yield_to_step(self, timeout_s: float = 1.0) -> bool:
        """Let the run loop's pending step go first (called, without the lock, between the chunks of a
        long request, so training keeps stepping during a long render). True if a step was let in;
        returns at once when the loop is not about to step (paused, stopped, no keyframes, no loop)."""
        with self._step_done:
            if not self._step_pending:
                return False
            before = self._loop_iterations
            # past hold_training: this iteration's step only (the one in flight, if the loop is stepping
            # already; not the next one as well)
            self._let_in_iteration = before
            stepped = self._step_done.wait_for(lambda: self._loop_iterations != before, timeout_s)
            if not stepped:
                self._let_in_iteration = -1
            return stepped

    def let_waiters_in(self, timeout_s: float = 1.0) -> None:
        """Called without the lock between a long request's chunks: whoever is queued for the lock (a
        save, a load, another render) goes first. Python's lock is not fair: the request's own thread,
        already running, would otherwise re-take it before a blocked waiter wakes (a load waited 1.2 s
        behind 0.4 s chunks)."""
        if self._lock._is_owned():  # a nested guard: this thread holds the lock (and counts in _waiting)
            return
        deadline = time.monotonic() + timeout_s
        while self._waiting > 0 and time.monotonic() < deadline:
            time.sleep(0.001)

    # ------------------------------------------------------------------ frames
    def add_frame(self, frame: Frame) -> bool:
        """Validate, select, extract teacher features (outside the training lock), insert. True if kept."""
        frame.validate()
        self.frames_seen += 1
        keep, _reason = self.keyframes.should_insert(frame)
        if not keep:
            self.frames_rejected += 1
            return False
        clip = dino = None
        if self.teacher is not None:
            features = self.teacher.extract(frame)
            clip, dino = features.clip, features.dino
            if clip.shape[1] != self.cfg.field.clip_dim:
                raise TrainerError(
                    f"teacher features have {clip.shape[1]} channels, field.clip_dim is "
                    f"{self.cfg.field.clip_dim}"
                )
            clip = colour_guided_maps(clip, frame.rgb, self.cfg.semantic.target_colour_filter_radius,
                                      self.cfg.semantic.target_colour_filter_eps)
        points = _depth_points(frame)
        if frame.depth is not None:
            valid = frame.depth[np.isfinite(frame.depth) & (frame.depth > 0)]
            if valid.size:
                self.max_observed_depth = max(self.max_observed_depth, float(np.percentile(valid, 99)))
        with self.exclusive():
            if not bool(self.field.bounds_set):
                center, radius = initial_scene_bounds(frame, points, self.cfg)
                self.field.set_scene_bounds(torch.as_tensor(center, dtype=torch.float32), radius)
            if self.cfg.field.occupancy_keep_measured and len(points):
                with torch.no_grad():
                    self.occupancy.mark_measured(self.field.contract(
                        torch.as_tensor(points, dtype=torch.float32, device=self.device)))
        self.keyframes.insert(frame, clip, dino)
        observed = np.vstack([frame.pose[None, :3, 3], points]) if len(points) else frame.pose[None, :3, 3]
        self.observed_min = np.minimum(self.observed_min, observed.min(axis=0))
        self.observed_max = np.maximum(self.observed_max, observed.max(axis=0))
        return True

    # ------------------------------------------------------------------ optimisation
    def step(self) -> dict[str, float]:
        """One optimisation step. Returns the (weighted) loss terms, 'loss' (their sum) and 'psnr_batch'."""
        if len(self.keyframes) == 0:
            raise TrainerError("no keyframes yet: add_frame() first")
        with self._lock:
            start = time.perf_counter()
            t = self.cfg.trainer
            semantic_on = self.semantics_started() and self.keyframes.has_features()
            rays = self.memory_budget.rays(self.cfg)
            feature_rays = self.memory_budget.feature_rays(self.cfg) if semantic_on else 0
            sem = self.cfg.semantic
            rare_rays = round(feature_rays * sem.rare_ray_fraction)  # the fraction is in [0, 1]
            batch = self.keyframes.sample(rays, self.sample_generator, feature_rays=feature_rays,
                                          rare_rays=rare_rays, rare_colour_bins=sem.rare_colour_bins)
            if batch.clip_targets is None:
                feature_rays = 0
            self.field.train()
            out = render_rays(
                self.field,
                batch.origins,
                batch.directions,
                self.train_settings,
                depth=batch.depth,
                occupancy=self.occupancy,
                semantic_rays=feature_rays,
                generator=self.render_generator,
            )
            terms: dict[str, torch.Tensor] = {"rgb": t.rgb_weight * losses.rgb_loss(out.rgb, batch.rgb)}
            valid = batch.depth > 0
            if t.depth_weight > 0 and bool(valid.any()):
                terms["depth"] = t.depth_weight * losses.depth_loss(out.depth, batch.depth, valid)
            if t.free_space_weight > 0 and bool(valid.any()):
                margin = t.depth_sample_sigmas * t.depth_sigma_m
                terms["free_space"] = t.free_space_weight * losses.free_space_loss(
                    out.weights, out.t_mid, batch.depth, margin, valid
                )
            if feature_rays:
                self.semantic_step_count += 1
            sem = self.cfg.semantic
            if feature_rays and (sem.feature_weight > 0 or sem.feature_residual_weight > 0):
                weights = feature_target_weights(self.cfg, out.selection, batch.clip_targets)
                if sem.feature_weight > 0:
                    terms["feature"] = sem.feature_weight * losses.feature_distillation_loss(
                        out.feature, weights, batch.clip_targets)
                if sem.feature_residual_weight > 0:
                    terms["feature_residual"] = sem.feature_residual_weight * losses.residual_feature_loss(
                        out.feature, weights, batch.clip_targets)
            for hook in self.extra_losses:
                terms.update(hook(self, batch, out))
            total = sum(terms.values())
            self.optimizer.zero_grad(set_to_none=True)
            if torch.isfinite(total):
                total.backward()
                self.optimizer.step()
                if feature_rays:
                    self.semantic_average.update(self.field)
            else:  # one bad batch must not poison Adam's moments: skip it and count it
                self.nonfinite_steps += 1
                self._quarantine(batch, out)
            self.scheduler.step()
            self.step_count += 1
            if self.step_count % self.cfg.field.occupancy_update_every == 0:
                self._update_occupancy()
            result = {name: float(value.detach()) for name, value in terms.items()}
            result["loss"] = float(total.detach())
            result["psnr_batch"] = metrics.psnr(out.rgb, batch.rgb)
            self._update_running_psnr(result["psnr_batch"])
            if (
                t.holdout_eval_every > 0
                and self.step_count % t.holdout_eval_every == 0
                and self.cfg.keyframes.holdout_every > 0
            ):
                self.last_psnr = self.holdout_psnr()
            elapsed = time.perf_counter() - start
            self.training_time_s += elapsed
            self._step_times.append((time.perf_counter(), elapsed))
            self.last_losses = result
            return result

    @property
    def query_field(self) -> SemanticField:
        """The field queries answer from: the live geometry with the averaged semantic weights
        (``semantic.average_decay``; the live field itself when that is 0 or nothing was averaged)."""
        return self.semantic_average.field(self.field)

    def semantics_started(self) -> bool:
        """Whether the feature distillation is on: from the first step at which the running training
        PSNR reached ``trainer.semantic_start_psnr`` or the step count ``trainer.semantic_start_step``,
        whichever came first; it then stays on (a later dip in PSNR must not stop it)."""
        if not self._semantics_started:
            t = self.cfg.trainer
            self._semantics_started = (
                self.step_count >= t.semantic_start_step
                or t.semantic_start_psnr <= 0
                or self.running_psnr >= t.semantic_start_psnr
            )
        return self._semantics_started

    def _update_running_psnr(self, value: float) -> None:
        # an exponential mean over ~10 steps: one batch's PSNR swings by a dB or more
        if np.isfinite(value):
            prev = self.running_psnr
            self.running_psnr = value if not np.isfinite(prev) else 0.9 * prev + 0.1 * value

    def train(self, steps: int) -> dict[str, float]:
        """``steps`` synchronous steps; returns the last step's result."""
        result: dict[str, float] = {}
        for _ in range(steps):
            result = self.step()
        return result

    def run(self, stop_event: threading.Event, paused_event: threading.Event | None = None) -> None:
        """Training loop for a thread: steps until ``stop_event`` is set, idles while ``paused_event`` is
        set or there are no keyframes, and honours ``trainer.max_steps_per_s``."""
        while not stop_event.is_set():
            if (paused_event is not None and paused_event.is_set()) or len(self.keyframes) == 0:
                stop_event.wait(0.05)
                continue
            self._step_pending = True
            while self._must_wait() and not stop_event.is_set():
                time.sleep(0.001)  # a render/query is queued or held: let it go first
            started = time.perf_counter()
            try:
                guarded_step(self)  # out of memory: the ray budget halves and training goes on
            finally:
                with self._step_done:
                    self._step_pending = False
                    self._loop_iterations += 1
                    self._step_done.notify_all()
            rate = self.cfg.trainer.max_steps_per_s
            if rate > 0:
                remaining = 1.0 / rate - (time.perf_counter() - started)
                if remaining > 0:
                    stop_event.wait(remaining)

    def _must_wait(self) -> bool:
        """The run loop's next step waits: a request is queued for the lock, or one holds training off
        and has not let this step in."""
        return self._waiting > 0 or (self._holding > 0 and self._let_in_iteration != self._loop_iterations)

    @torch.no_grad()
    def _quarantine(self, batch: RayBatch, out: RenderOutputs) -> None:
        """Remove the keyframes whose rays made the loss non-finite, when others' rays were fine.

        When every keyframe's rays are bad the field itself is at fault, and removing its data would
        not help: nothing is removed then.
        """
        ok = _finite_rays(batch, out)
        if bool(ok.all()):
            return
        uids = batch.keyframe_uids.to(ok.device)
        bad = set(torch.unique(uids[~ok]).tolist())
        good = set(torch.unique(uids[ok]).tolist())
        culprits = bad - good
        if culprits and good:
            self.quarantined_keyframes += self.keyframes.remove(culprits)

    @torch.no_grad()
    def _update_occupancy(self) -> None:
        was_training = self.field.training
        self.field.eval()
        step_size = 4.0 * float(self.field.scene_radius) / self.occupancy.resolution
        self.occupancy.update(
            self.step_count,
            lambda c: self.field.density_contracted(c)[0],
            step_size,
            generator=self.render_generator,
        )
        self.field.train(was_training)

    @torch.no_grad()
    def holdout_psnr(self, rays: int | None = None) -> float:
        """PSNR (dB) on random held-out pixels of the keyframes (never trained on)."""
        batch = self.keyframes.holdout_batch(
            rays or self.cfg.trainer.holdout_eval_rays, self.sample_generator
        )
        settings = dataclasses.replace(self.train_settings, jitter=False)
        self.field.eval()
        out = render_rays(
            self.field, batch.origins, batch.directions, settings, depth=batch.depth, occupancy=self.occupancy
        )
        self.field.train()
        return metrics.psnr(out.rgb, batch.rgb)

    # ------------------------------------------------------------------ outputs
    def render(
        self,
        intrinsics: Intrinsics,
        c2w: np.ndarray,
        width: int | None = None,
        height: int | None = None,
        semantics: bool = True,
        feature: bool = True,
        depth: torch.Tensor | None = None,
    ) -> dict:
        """Render a camera: rgb (H,W,3), depth, opacity, and latent, selection, feature (CLIP dim).

        Waits at most for the training step in flight. ``depth`` (H, W) switches to depth-guided sampling.
        Semantics come from ``query_field`` (the averaged semantic weights), as a query's would.
        """
        with self.exclusive():
            self.field.eval()
            try:
                return render_image(
                    self.query_field if semantics else self.field,
                    intrinsics,
                    c2w,
                    self.current_render_settings(),
                    occupancy=self.occupancy,
                    chunk=self.render_chunk(),
                    width=width,
                    height=height,
                    semantics=semantics,
                    feature=feature,
                    depth=depth,
                )
            finally:
                self.field.train()

    def render_chunk(self) -> int:
        """Rays per rendering chunk: ``trainer.render_chunk``, smaller after an out-of-memory."""
        return self.memory_budget.chunk(self.cfg)

    def current_render_settings(self) -> SamplingSettings:
        """Render settings whose far plane hugs the depth seen so far: uniform samples over 12 m in a
        6 m room are spaced too coarsely to find thin, depth-trained surfaces (measured: -1 dB)."""
        margin = self.cfg.trainer.render_far_depth_margin
        if margin <= 0 or self.max_observed_depth <= 0:
            return self.render_settings
        far = min(self.render_settings.far, margin * self.max_observed_depth)
        return dataclasses.replace(self.render_settings, far=max(far, 2.0 * self.render_settings.near))

    def stats(self) -> dict[str, Any]:
        now = time.perf_counter()
        recent = [(t, d) for t, d in self._step_times if now - t < 10.0]
        if len(recent) >= 2:
            span = recent[-1][0] - recent[0][0] + recent[0][1]
            its = len(recent) / max(span, 1e-9)
        else:
            its = 0.0
        return {
            "iterations": self.step_count,
            "semantic_iterations": self.semantic_step_count,
            "iterations_per_s": its,
            "rays_per_s": its * self.memory_budget.rays(self.cfg),
            "training_time_s": self.training_time_s,
            "losses": dict(self.last_losses),
            "psnr": self.last_psnr,
            "keyframes": len(self.keyframes),
            "keyframes_with_depth": sum(kf.has_depth() for kf in self.keyframes.snapshot()),
            "keyframe_bytes": self.keyframes.nbytes(),
            "keyframes_evicted": self.keyframes.evicted,
            "nonfinite_steps": self.nonfinite_steps,
            "quarantined_keyframes": self.quarantined_keyframes,
            "frames_seen": self.frames_seen,
            "frames_rejected": self.frames_rejected,
            "occupied_fraction": self.occupancy.occupied_fraction(),
            "scene_center": self.field.scene_center.tolist(),
            "scene_radius": float(self.field.scene_radius),
            "lr": {g["name"]: g["lr"] for g in self.optimizer.param_groups},
        }

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT_TAG,
            "version": FORMAT_VERSION,
            "config": to_nested(self.cfg),
            "step": self.step_count,
            "semantic_step": self.semantic_step_count,
            "training_time_s": self.training_time_s,
            "field": self.field.state_dict(),
            "semantic_average": self.semantic_average.state_dict(),
            "occupancy": self.occupancy.state_dict(),
            "keyframes": self.keyframes.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": {"sample": self.sample_generator.get_state(), "render": self.render_generator.get_state()},
            "scene": {
                "center": self.field.scene_center.tolist(),
                "radius": float(self.field.scene_radius),
                "set": bool(self.field.bounds_set),
                "observed_min": self.observed_min.tolist(),
                "observed_max": self.observed_max.tolist(),
                "max_observed_depth": self.max_observed_depth,
            },
            "counters": {"frames_seen": self.frames_seen, "frames_rejected": self.frames_rejected},
        }

    def save(self, path: str | Path) -> Path:
        """Atomic checkpoint of everything needed to resume (see core/checkpoint.py)."""
        with self.exclusive():
            state = self.state_dict()
        return save_checkpoint(state, path)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu", teacher=None) -> "Trainer":
        """A new Trainer from a checkpoint (its own config); CheckpointError when unusable."""
        state = read_checkpoint(path)
        try:
            cfg = from_nested(state["config"])
        except (ConfigError, KeyError, TypeError) as exc:
            raise CheckpointError(f"checkpoint {path} has an incompatible configuration: {exc}") from exc
        try:
            trainer = cls(cfg, device, teacher)
        except TrainerError as exc:
            raise CheckpointError(f"checkpoint {path}: {exc}") from exc
        trainer._restore(state, path)
        return trainer

    def _restore(self, state: dict[str, Any], path: str | Path) -> None:
        try:
            self.field.load_state_dict(state["field"])
            if "semantic_average" in state:  # a checkpoint from before it answers from its last step
                self.semantic_average.load_state_dict(state["semantic_average"])
            self.occupancy.load_state_dict(state["occupancy"])
            self.keyframes.load_state_dict(state["keyframes"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.sample_generator.set_state(state["rng"]["sample"])
            try:
                self.render_generator.set_state(state["rng"]["render"])
            except (RuntimeError, ValueError):
                pass  # saved on another device type (CUDA <-> CPU): keep the fresh seeded stream
            self.step_count = int(state["step"])
            self.semantic_step_count = int(state.get("semantic_step", 0))
            self._semantics_started = self.semantic_step_count > 0
            self.training_time_s = float(state.get("training_time_s", 0.0))
            self.observed_min = np.asarray(state["scene"]["observed_min"], dtype=np.float64)
            self.observed_max = np.asarray(state["scene"]["observed_max"], dtype=np.float64)
            self.max_observed_depth = float(state["scene"].get("max_observed_depth", 0.0))
            counters = state.get("counters", {})
            self.frames_seen = int(counters.get("frames_seen", 0))
            self.frames_rejected = int(counters.get("frames_rejected", 0))
        except (RuntimeError, KeyError, TypeError, ValueError, KeyframeError) as exc:
            raise CheckpointError(f"checkpoint {path} does not fit this model: {exc}") from exc

    _SWAPPED = (
        "cfg",
        "field",
        "semantic_average",
        "occupancy",
        "keyframes",
        "optimizer",
        "scheduler",
        "sample_generator",
        "render_generator",
        "train_settings",
        "render_settings",
        "step_count",
        "semantic_step_count",
        "_semantics_started",
        "running_psnr",
        "training_time_s",
        "frames_seen",
        "frames_rejected",
        "observed_min",
        "observed_max",
        "max_observed_depth",
    )

    def load_state_from(self, path: str | Path) -> None:
        """Replace this trainer's state with a checkpoint's, atomically: the file is loaded into a new
        Trainer first, so a bad file raises CheckpointError and leaves the running state untouched."""
        fresh = Trainer.load(path, self.device, self.teacher)
        with self.exclusive():
            for name in self._SWAPPED:
                setattr(self, name, getattr(fresh, name))
            self.field_version += 1  # a request that started on the old field fails at its next chunk
            self.last_losses, self.last_psnr = {}, float("nan")
            self._step_times.clear()


# ---------------------------------------------------------------------------------------------- bounds
def _finite_rays(batch: RayBatch, out: RenderOutputs) -> torch.Tensor:
    """(n,) bool: the ray's inputs, render and depth residual are finite."""
    ok = torch.isfinite(batch.origins).all(-1) & torch.isfinite(batch.directions).all(-1)
    ok &= torch.isfinite(out.rgb.detach()).all(-1) & torch.isfinite(out.depth.detach())
    ok &= torch.isfinite((out.depth.detach() - batch.depth) ** 2)
    if out.feature is not None:  # the first rays carry the semantic outputs
        k = out.feature.shape[0]
        ok[:k] &= torch.isfinite(out.feature.detach()).all(-1)
    return ok


def _depth_points(frame: Frame, max_points: int = 4096) -> np.ndarray:
    """(M, 3) world points from a strided subset of the frame's valid depth pixels."""
    if frame.depth is None:
        return np.zeros((0, 3))
    h, w = frame.depth.shape
    stride = max(1, int(np.sqrt(h * w / max_points)))
    vs, us = np.mgrid[0:h:stride, 0:w:stride]
    z = frame.depth[vs, us].astype(np.float64)
    ok = np.isfinite(z) & (z > 0)
    if not ok.any():
        return np.zeros((0, 3))
    k = frame.intrinsics
    u, v, z = us[ok] + 0.5, vs[ok] + 0.5, z[ok]
    cam = np.stack(((u - k.cx) / k.fx * z, (v - k.cy) / k.fy * z, z), axis=-1)
    return cam @ frame.pose[:3, :3].T + frame.pose[:3, 3]


def initial_scene_bounds(frame: Frame, points: np.ndarray, cfg: Config) -> tuple[np.ndarray, float]:
    """Scene centre and radius of the linear region, from the first keyframe.

    With depth: the centre is the median observed point (what the camera looks at), the radius covers
    the camera and 90% of the points with a margin. Without depth: the centre is half the configured
    radius in front of the camera. Never below ``field.scene_radius_m``. Fixed afterwards: moving it
    would remap everything the grids learned; space beyond it is still represented (contracted).
    """
    cam = frame.pose[:3, 3]
    if len(points):
        center = np.median(points, axis=0)
        reach = max(
            float(np.linalg.norm(cam - center)),
            float(np.percentile(np.linalg.norm(points - center, axis=1), 90)),
        )
    else:
        center = cam + frame.pose[:3, 2] * 0.5 * cfg.field.scene_radius_m
        reach = 0.5 * cfg.field.scene_radius_m
    return center, max(cfg.field.scene_radius_m, cfg.field.scene_radius_margin * reach)
