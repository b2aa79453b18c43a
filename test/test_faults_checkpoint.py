"""SIGKILL while a checkpoint is being written never corrupts the previous one (atomic writes).

A child process builds a Trainer with keyframes (a checkpoint of tens of MB, so a save takes a
noticeable time) and saves it over the same path in a loop, announcing `begin i` / `end i` around each
save with ``step_count = i``. The parent SIGKILLs it at a random moment after the first complete
save, several times; after every kill the file must load with ``Trainer.load`` and hold the newest
completed save (or the one in flight, if the rename had just happened)."""

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ovs3d_ros.core.checkpoint import read_checkpoint
from ovs3d_ros.core.trainer import Trainer

KILLS = 6
REPO = Path(__file__).resolve().parents[1]

SAVER = textwrap.dedent("""
    import sys
    import torch
    torch.set_num_threads(1)
    from ovs3d_ros.config import Config
    from ovs3d_ros.core.trainer import Trainer
    from ovs3d_ros.data.synthetic import SyntheticScene

    path, first = sys.argv[1], int(sys.argv[2])
    cfg = Config(device="cpu")
    cfg.keyframes.min_translation_m = cfg.keyframes.min_rotation_deg = 0.0
    trainer = Trainer(cfg, "cpu", None)
    for frame in SyntheticScene("room", seed=0).make_frames(4, 0, 64, 48).train_frames:
        trainer.add_frame(frame)
    i = first
    while True:
        trainer.step_count = i
        print(f"begin {i}", flush=True)
        trainer.save(path)
        print(f"end {i}", flush=True)
        i += 1
""")


def _run_and_kill(path: Path, first: int, rng: random.Random) -> list[str]:
    """Start the saver, wait for its first complete save, SIGKILL it after a random delay."""
    proc = subprocess.Popen([sys.executable, "-c", SAVER, str(path), str(first)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                raise AssertionError(f"saver exited early: {proc.stderr.read()[-2000:]}")
            lines.append(line.strip())
            if line.startswith("end"):
                break
        t0 = time.monotonic()
        os.set_blocking(proc.stdout.fileno(), False)
        delay = rng.uniform(0.0, 1.5)
        while time.monotonic() - t0 < delay:
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        rest = proc.stdout.read() or ""
        lines += [x for x in rest.splitlines() if x]
        return lines
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sigkill_during_saves_never_corrupts_the_checkpoint(tmp_path):
    rng = random.Random(1234)
    path = tmp_path / "autosave.ckpt"
    first = 0
    killed_mid_save = 0
    for _ in range(KILLS):
        lines = _run_and_kill(path, first, rng)
        ended = [int(x.split()[1]) for x in lines if x.startswith("end")]
        begun = [int(x.split()[1]) for x in lines if x.startswith("begin")]
        last_end = max(ended)
        in_flight = max(begun) if max(begun) > last_end else None
        killed_mid_save += in_flight is not None
        state = read_checkpoint(path)  # raises CheckpointError if corrupt/truncated
        allowed = {last_end} | ({in_flight} if in_flight is not None else set())
        assert state["step"] in allowed, (state["step"], lines[-4:])
        trainer = Trainer.load(path, "cpu")
        assert trainer.step_count == state["step"] and len(trainer.keyframes) == 4
        first = max(begun) + 1
    # the kills must actually have hit writes, or the test proves nothing
    assert killed_mid_save >= KILLS // 2, f"only {killed_mid_save} of {KILLS} kills landed during a save"
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name != "autosave.ckpt")
    # interrupted writes leave their temporary files (named .autosave.ckpt.*.tmp), never the real name
    assert all(n.startswith(".autosave.ckpt.") and n.endswith(".tmp") for n in leftovers), leftovers


def test_a_truncated_checkpoint_is_a_clear_error_not_a_crash(tmp_path):
    from ovs3d_ros.config import Config
    from ovs3d_ros.core.checkpoint import CheckpointError

    cfg = Config(device="cpu")
    cfg.field.log2_hashmap_size = cfg.field.semantic_log2_hashmap_size = 10
    good = Trainer(cfg, "cpu", None).save(tmp_path / "a.ckpt")
    data = good.read_bytes()
    for cut in (0, 100, len(data) // 2, len(data) - 10):
        bad = tmp_path / f"cut{cut}.ckpt"
        bad.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match=str(bad.name)):
            Trainer.load(bad, "cpu")
