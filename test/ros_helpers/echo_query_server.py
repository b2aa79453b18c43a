"""A second process for the DDS exchange test: serves ovs3d_ros/srv/Query and publishes a
TrainingStatus, using this package's own generated types. Exits when stdin closes."""


import rclpy
from helper_process import serve_until_stdin_closes
from ovs3d_ros.msg import TrainingStatus
from ovs3d_ros.srv import Query


def main() -> None:
    rclpy.init()
    node = rclpy.create_node("echo_query_server")
    pub = node.create_publisher(TrainingStatus, "status", 10)

    def on_query(req: Query.Request, res: Query.Response) -> Query.Response:
        res.success = bool(req.classes)
        res.message = "|".join(reversed(req.classes)) if req.classes else "no classes"
        res.scene.class_names = list(req.classes)
        return res

    node.create_service(Query, "query", on_query)
    node.create_timer(0.1, lambda: pub.publish(TrainingStatus(state="training", iterations=7)))
    serve_until_stdin_closes(node)


if __name__ == "__main__":
    main()
