"""pref-rl robot side. Everything except the ``ros`` sub-package is ROS-free."""
