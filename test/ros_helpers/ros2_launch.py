"""What `ros2 launch PACKAGE FILE ARG:=VALUE ...` runs (ros2launch/command/launch.py), without ros2cli
(not vendored): the launch file found through the ament index, then launched by upstream `launch`.

    python ros2_launch.py PACKAGE FILE [ARG:=VALUE ...]
    python ros2_launch.py --default PACKAGE FILE ARGUMENT   # print a launch argument's default value
"""

import sys

from ros2launch.api import get_share_file_path_from_package, launch_a_launch_file


def print_default(package: str, file_name: str, argument: str) -> int:
    """The default of a DeclareLaunchArgument, evaluated the way `launch` does (substitutions included)."""
    from launch.actions import DeclareLaunchArgument
    from launch.launch_description_sources import get_launch_description_from_python_launch_file
    from launch.utilities import perform_substitutions

    from launch import LaunchContext

    path = get_share_file_path_from_package(package_name=package, file_name=file_name)
    description = get_launch_description_from_python_launch_file(path)
    for entity in description.entities:
        if isinstance(entity, DeclareLaunchArgument) and entity.name == argument:
            print(perform_substitutions(LaunchContext(), entity.default_value))
            return 0
    print(f"{path} declares no argument {argument}", file=sys.stderr)
    return 1


def main(argv: list[str]) -> int:
    if argv[:1] == ["--default"]:
        return print_default(*argv[1:4])
    package, file_name, *arguments = argv
    path = get_share_file_path_from_package(package_name=package, file_name=file_name)
    print(f"launching {path}", flush=True)
    return launch_a_launch_file(launch_file_path=path, launch_file_arguments=arguments, noninteractive=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
