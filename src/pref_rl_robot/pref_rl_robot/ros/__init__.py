"""ROS 2 nodes of the robot side (the only part of pref_rl_robot importing rclpy)."""
