"""pref-rl labelling GUI (PyQt5). Widgets talk to a ROS-free model; ROS lives in ``ros/``."""
