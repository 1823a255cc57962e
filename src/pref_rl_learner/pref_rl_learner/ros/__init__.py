"""ROS 2 adapters of pref-rl: message conversions, QoS profiles and learner-side nodes.

The only part of ``pref_rl_learner`` that imports ``rclpy`` and ``pref_rl_msgs``.
"""
