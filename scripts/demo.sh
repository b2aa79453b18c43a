#!/usr/bin/env bash
# Set up (idempotent) and run the built-in demo: a synthetic scene streamed through the real ovs3d
# node over ROS 2 topics, trained on, and queried from a separate client. Outputs in outputs/demo.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
exec .venv/bin/python -m ovs3d_ros.ros.demo "$@"
