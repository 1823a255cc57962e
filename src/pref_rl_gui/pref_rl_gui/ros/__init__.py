"""The ``labeler`` node: rclpy in a worker thread, data to the Qt side through signals."""
