"""A runner for ROS 2 XML launch files (the subset pref-rl uses), with no ``launch`` package.

``launch``/``launch_ros`` are not published on PyPI, so on a wheels-only install pref-rl runs
the same ``*.launch.xml`` files itself; on a full ROS 2 install ``ros2 launch`` runs them.
Supported: ``<launch>``, ``<arg>``, ``<let>``, ``<node>`` with ``<param>``/``<remap>``,
``<include>`` with ``<arg>``; ``$(var)``, ``$(env)``, ``$(find-pkg-share)``, ``$(dirname)``;
``if``/``unless`` on actions; ``on_exit="shutdown"`` marks a node whose exit ends the session.
Anything else is a :class:`~pref_rl_learner.errors.LaunchFileError` naming file, line and tag.
"""

from pref_rl_learner.launcher.ament_index import find_executable, find_package_share
from pref_rl_learner.launcher.plan import LaunchPlan, NodeSpec, load_launch_file
from pref_rl_learner.launcher.runner import ProcessRunner

__all__ = ['LaunchPlan', 'NodeSpec', 'ProcessRunner', 'find_executable', 'find_package_share',
           'load_launch_file']
