"""A running ovs3d node process fed by a synthetic camera stream, for the tests that talk to it as a
user would (test_fuzz_node.py, test_node_control.py): a small field, the synthetic teacher, CPU."""

import contextlib

from ovs3d_ros.ros.camera_stream import CameraStreamPublisher
from ovs3d_ros.ros.client import Ovs3dClient, init_context, spin_for, start_node_process, stop_node_process


@contextlib.contextmanager
def stream_node(tmp_path, namespace: str, class_names, query: dict):
    """Yields dict(proc, client, stream, executor, log) once the node serves and the stream is heard;
    ``query`` holds the test's query.* parameters."""
    context, node, executor = init_context()
    stream = CameraStreamPublisher(node, namespace=namespace, publish_labels=True)
    params = {
        "device": "cpu",
        "teacher": {"kind": "synthetic", "synthetic": {"class_names": list(class_names)}},
        "ros": {"pose_source": "pose", "checkpoint_dir": str(tmp_path / "ckpt"), "pose_tolerance_s": 0.02},
        "keyframes": {"min_translation_m": 0.02, "min_rotation_deg": 2.0},
        "trainer": {"rays_per_step": 256, "semantic_start_step": 10},
        "field": {"num_levels": 6, "log2_hashmap_size": 14, "semantic_log2_hashmap_size": 12},
        "query": dict(query),
    }
    log = tmp_path / "node.log"
    proc = start_node_process(params, remaps=stream.topics(), log_path=log)
    client = Ovs3dClient(node)
    try:
        client.wait_ready(executor, timeout_s=90.0, proc=proc)
        assert stream.wait_for_subscribers(lambda s: spin_for(executor, s),
                                           names=("image", "camera_info", "pose", "depth", "labels"))
        yield dict(proc=proc, client=client, stream=stream, executor=executor, log=log)
    finally:
        stop_node_process(proc)
        node.destroy_node()
        context.try_shutdown()
