"""A runner for ROS 2 XML launch files, with no ``launch`` package.

``launch``/``launch_ros`` are not published on PyPI, so on a wheels-only install pref-rl runs
the same ``*.launch.xml`` files itself, with ``ros2 launch``'s semantics; on a full ROS 2
install ``ros2 launch`` runs them. Supported (the README's launch section says what each
means): ``<launch>``, ``<arg>`` (with ``<choice>``), ``<let>``, ``<include>`` with ``<arg>``,
``<group>`` (``scoped``, ``forwarding``, ``<keep>``), ``<push-ros-namespace>``,
``<set_parameter>``, ``<set_remap>``, ``<set_env>``, ``<unset_env>``, ``<node>`` with
``<param>``/``<remap>``/``<env>``, ``<executable>`` with ``<env>``; ``if``/``unless`` on every
action; ``output``, ``on_exit="shutdown"``, ``respawn``, ``respawn_delay``,
``respawn_max_retries``, ``launch-prefix``, ``ros_args``, ``cwd``; the substitutions
``$(var)``, ``$(env)``, ``$(find-pkg-share)``, ``$(find-pkg-prefix)``, ``$(dirname)``,
``$(filename)``, ``$(anon)``, ``$(eval)``. Anything else is a
:class:`~pref_rl_learner.errors.LaunchFileError` naming file, line and tag.
"""

from pref_rl_learner.launcher.actions import load_launch_file
from pref_rl_learner.launcher.ament_index import find_executable, find_package_share
from pref_rl_learner.launcher.plan import ArgSpec, LaunchPlan, NodeSpec
from pref_rl_learner.launcher.runner import ProcessRunner

__all__ = ['ArgSpec', 'LaunchPlan', 'NodeSpec', 'ProcessRunner', 'find_executable',
           'find_package_share', 'load_launch_file']
