"""ros2 launch ovs3d_ros ovs3d.launch.py image:=/camera/color/image_raw camera_info:=/camera/color/camera_info

Starts the ovs3d node with config/ovs3d.yaml (or params_file:=...), remapping its generic input names
(image, camera_info, depth, pose, odom) to your robot's topics.
"""

from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription

# (argument, default, description): the node's input names, remapped to these topics.
TOPIC_ARGUMENTS = [
    ("image", "/camera/color/image_raw", "sensor_msgs/Image (or CompressedImage with compressed:=true)"),
    ("camera_info", "/camera/color/camera_info", "sensor_msgs/CameraInfo of the colour image"),
    (
        "depth",
        "/camera/aligned_depth_to_color/image_raw",
        "optional depth registered to colour (16UC1 mm or 32FC1 m)",
    ),
    ("pose", "/camera/pose", "geometry_msgs/PoseStamped of the camera optical frame (pose_source:=pose)"),
    ("odom", "/odom", "nav_msgs/Odometry (pose_source:=odometry, with ros.camera_in_body)"),
]


def generate_launch_description() -> LaunchDescription:
    args = [
        DeclareLaunchArgument(name, default_value=default, description=desc)
        for name, default, desc in TOPIC_ARGUMENTS
    ]
    args += [
        DeclareLaunchArgument(
            "params_file",
            default_value=PathJoinSubstitution([FindPackageShare("ovs3d_ros"), "config", "ovs3d.yaml"]),
            description="ROS parameters file (every key maps onto the ovs3d Config)",
        ),
        DeclareLaunchArgument("device", default_value="auto", description="auto | cpu | cuda | cuda:N"),
        DeclareLaunchArgument("pose_source", default_value="auto", description="auto | tf | pose | odometry"),
        DeclareLaunchArgument(
            "world_frame", default_value="map", description="fixed frame of poses and outputs"
        ),
        DeclareLaunchArgument(
            "compressed",
            default_value="false",
            description="subscribe to sensor_msgs/CompressedImage on `image`",
        ),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="use /clock (bag replay)"),
    ]
    node = Node(
        package="ovs3d_ros",
        executable="ovs3d_node",
        name="ovs3d",
        output="screen",
        # one malloc arena per thread kept ~600 MB of freed memory resident under load (bench/load.py)
        additional_env={"MALLOC_ARENA_MAX": "2"},
        parameters=[
            LaunchConfiguration("params_file"),
            {
                "device": LaunchConfiguration("device"),
                "ros.pose_source": LaunchConfiguration("pose_source"),
                "ros.world_frame": LaunchConfiguration("world_frame"),
                "ros.compressed": LaunchConfiguration("compressed"),
                "use_sim_time": LaunchConfiguration("use_sim_time"),
            },
        ],
        remappings=[(name, LaunchConfiguration(name)) for name, _, _ in TOPIC_ARGUMENTS],
    )
    return LaunchDescription([*args, node])
