"""What `rosbags` leaves out of the rosbag2 files it writes, and `ros2 bag play` needs.

- Offered QoS: rosbag2 republishes a topic with the QoS recorded in ``offered_qos_profiles``; an empty
  entry means its volatile default. /tf_static must come back transient local, or tf2's static
  listener (transient local) refuses the publisher and a late node never gets the camera extrinsic.
- MCAP channels: rosbag2's MCAP plugin stores ``topic_type_hash`` (the RIHS01 type hash) next to
  ``offered_qos_profiles`` in each channel's metadata; rosbags 0.11 writes only the latter.
"""

from __future__ import annotations

from io import BytesIO

from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.rosbag2.storage_mcap import Channel, McapWriter, write_channel, write_string

# RMW_DURATION_INFINITE as rosbag2 records it (Jazzy and later) for deadline, lifespan and lease.
_INFINITE = QosTime(sec=9223372036, nsec=854775807)

TF_STATIC_QOS = Qos(
    history=QosHistory.KEEP_LAST,
    depth=1,
    reliability=QosReliability.RELIABLE,
    durability=QosDurability.TRANSIENT_LOCAL,
    deadline=_INFINITE,
    lifespan=_INFINITE,
    liveliness=QosLiveliness.AUTOMATIC,
    liveliness_lease_duration=_INFINITE,
    avoid_ros_namespace_conventions=False,
)
"""What tf2_ros's StaticTransformBroadcaster offers (keep last 1, reliable, transient local)."""


def offered_qos(topic: str) -> tuple[Qos, ...]:
    """The offered QoS to record for `topic`: the real publisher's where it matters on replay, else
    none (rosbag2 then plays with its default: reliable, volatile)."""
    return (TF_STATIC_QOS,) if topic == "/tf_static" else ()


class _McapWriterWithTypeHash(McapWriter):
    """rosbags' MCAP writer, with rosbag2's ``topic_type_hash`` channel metadata added."""

    def add_connection(self, connection, offered_qos_profiles: str) -> None:
        metadata = BytesIO()
        for key, value in (
            ("offered_qos_profiles", offered_qos_profiles),
            ("topic_type_hash", connection.digest),  # 'RIHS01_<sha256>' from the typestore
        ):
            write_string(metadata, key)
            write_string(metadata, value)
        self.channels.append(
            Channel(
                connection.id,
                connection.msgtype,
                connection.topic,
                connection.ext.serialization_format,
                metadata.getvalue(),
            )
        )
        self.channel_stats[connection.id] = 0
        write_channel(self.chunk.bio, self.channels[-1], self.schemas)


class Rosbag2Writer(Writer):
    """`rosbags.rosbag2.Writer` whose MCAP channels carry ``topic_type_hash`` like rosbag2's."""

    STORAGE_PLUGINS = {**Writer.STORAGE_PLUGINS, StoragePlugin.MCAP: _McapWriterWithTypeHash}
