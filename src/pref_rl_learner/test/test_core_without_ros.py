"""Every core module imports with rclpy, PyQt5 and pref_rl_msgs made unimportable."""

import subprocess
import sys
import textwrap

# Sub-packages that are adapters and may import ROS or Qt.
ADAPTERS = ('ros', 'widgets')
PACKAGES = ('pref_rl_learner', 'pref_rl_robot', 'pref_rl_gui')

SCRIPT = textwrap.dedent('''
    import importlib, pkgutil, sys

    BLOCKED = ('rclpy', 'PyQt5', 'pref_rl_msgs', 'rcl_interfaces', 'builtin_interfaces',
               'std_msgs')

    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split('.')[0] in BLOCKED:
                raise ImportError(f'{name} is blocked: core modules must not import it')
            return None

    sys.meta_path.insert(0, Block())
    imported = []
    for package_name in __PACKAGES__:
        package = importlib.import_module(package_name)
        for info in pkgutil.walk_packages(package.__path__, package_name + '.'):
            parts = info.name.split('.')
            if any(p in __ADAPTERS__ for p in parts[1:]):
                continue
            importlib.import_module(info.name)
            imported.append(info.name)
    print('\\n'.join(imported))
''')


def _script(packages, adapters):
    return SCRIPT.replace('__PACKAGES__', repr(packages)).replace('__ADAPTERS__', repr(adapters))


def test_core_modules_import_without_ros_or_qt():
    script = _script(PACKAGES, ADAPTERS)
    result = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    imported = set(result.stdout.split())
    # The walk really covered the core (guards against an empty walk passing vacuously).
    for module in ('pref_rl_learner.types', 'pref_rl_learner.launcher.runner',
                   'pref_rl_learner.config', 'pref_rl_robot.fake_robot',
                   'pref_rl_robot.segmenter'):
        assert module in imported


def test_blocker_really_blocks():
    script = _script(('pref_rl_learner.ros.conversions',), ())
    script = script.replace("package = importlib.import_module(package_name)",
                            "importlib.import_module(package_name); continue")
    result = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode != 0
    assert 'is blocked' in result.stderr
