"""pref-rl: preference-based reinforcement learning on robots.

Everything in this package except the ``ros`` sub-package is ROS-free and Qt-free.
"""

__version__ = '0.1.0'
