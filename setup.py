"""pip metadata of the hand-written Python package (the dev venv installs it editable).

On a ROS 2 install the package is built by CMakeLists.txt (interfaces + this code) with colcon;
this file is not used there.
"""

from setuptools import find_packages, setup

setup(
    # Not "ovs3d_ros": that distribution name belongs to the CMake-built interfaces (ament_cmake_python
    # writes an ovs3d_ros egg-info), and pip would uninstall the generated msg/srv modules with it.
    name="ovs3d-ros-python",
    version="0.1.0",
    description="Open-vocabulary 3D segmentation for robots (3D-OVS distilled into an incremental NeRF)",
    license="MIT",
    packages=find_packages(include=["ovs3d_ros", "ovs3d_ros.*"]),
    python_requires=">=3.10",
    install_requires=[
        "torch", "torchvision", "open_clip_torch", "timm", "open3d", "numpy>=2", "pillow", "scipy",
        "pyyaml", "rosbags", "tqdm", "matplotlib",
    ],
    entry_points={
        "console_scripts": [
            "ovs3d = ovs3d_ros.cli:main",
            "ovs3d_node = ovs3d_ros.ros.node:main",
            "ovs3d_demo = ovs3d_ros.ros.demo:main",
        ],
    },
)
