"""A 300k-point labeled cloud (the node's default cap) and 640x480 masks cross processes intact with
the node's latched QoS, including to a subscriber that joins after publication. Run once with Fast DDS
defaults and once with the LARGE_DATA builtin transport recommended in docs/reliability.md.

Publisher and subscriber are both helper processes: a DDS transport that blocks in C code (it did once,
under load) cannot be interrupted by pytest-timeout's signal, so the test itself only waits on processes
and kills them when its safety net runs out."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.ros

HELPERS = Path(__file__).parent / "ros_helpers"
SUBSCRIBER_WAIT_S = 120.0  # the subscriber's own net for the three messages
PROCESS_NET_S = 180.0  # the test's net for the subscriber process, start-up and checks included


def _ended(proc: subprocess.Popen, timeout_s: float) -> tuple[int | str, str]:
    try:
        out, _ = proc.communicate(timeout=timeout_s)
        return proc.returncode, out
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        return f"killed after {timeout_s:.0f} s", out


UNDISCOVERED = "publishers discovered: {'cloud': 0, 'mask': 0, 'overlay': 0}"
"""What the subscriber helper prints when its participant never discovered the publisher's."""


def _subscribe(seed: int, env: dict) -> tuple[int | str, str]:
    subscriber = subprocess.Popen(
        [sys.executable, str(HELPERS / "large_result_subscriber.py"), str(seed), str(SUBSCRIBER_WAIT_S)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    return _ended(subscriber, PROCESS_NET_S)


@pytest.mark.parametrize("transport", ["default", "LARGE_DATA"])
def test_300k_cloud_and_640x480_masks_arrive_intact(transport):
    env = dict(os.environ)
    if transport != "default":
        env["FASTDDS_BUILTIN_TRANSPORTS"] = transport
    seed = 7
    publisher = subprocess.Popen(
        [sys.executable, str(HELPERS / "large_result_publisher.py"), str(seed)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        # "ready" comes after the three publish() calls: the subscriber below joins late
        assert publisher.stdout.readline().strip() == "ready"
        rc, out = _subscribe(seed, env)
        if UNDISCOVERED in out:
            # The subscriber's participant never discovered the publisher's (the graph shows no publisher
            # on any of the three topics after 120 s): a Fast DDS discovery miss, seen with LARGE_DATA
            # beside a busy core in 1 of 24 runs (docs/reliability.md). A user restarts the subscriber;
            # so does the test, once. Anything after discovery (a lost or corrupt message) still fails.
            first = out
            rc, out = _subscribe(seed, env)
            out = f"first subscriber: {first[-1000:]}\nsecond subscriber: {out}"
        assert rc == 0 and out.strip().endswith("ok"), (rc, out[-3000:])
    finally:
        publisher.stdin.close()  # the publisher's signal to end
        try:
            publisher_rc = publisher.wait(timeout=60.0)
        except subprocess.TimeoutExpired:
            publisher.kill()
            publisher_rc = "killed after 60 s"
    assert publisher_rc == 0, f"publisher: {publisher_rc}"
