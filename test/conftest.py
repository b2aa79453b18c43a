"""Shared test set-up: offline model hubs, a private ROS domain per run, small thread counts."""

import os
import random

# Nothing may be downloaded in tests: model loaders must take local files.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# A random DDS domain per test run, so parallel runs on one host do not see each other's nodes.
os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 100)))
os.environ.setdefault("OMP_NUM_THREADS", "2")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture
def rng():
    return __import__("numpy").random.default_rng(0)
