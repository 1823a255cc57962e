from setuptools import find_packages, setup

package_name = 'pref_rl_robot'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='pref-rl maintainers',
    maintainer_email='maintainers@pref-rl.dev',
    description='pref-rl env/robot backends and robot-side ROS 2 nodes.',
    license='Apache-2.0',
    extras_require={'test': ['pytest']},
    entry_points={
        # The task suite pref_rl_learner looks up (it never imports this package).
        'pref_rl.task_suites': ['default = pref_rl_robot.tasks'],
        'console_scripts': [
            'fake_robot = pref_rl_robot.ros.fake_robot:main',
            'robot = pref_rl_robot.ros.robot:main',
            'segment_recorder = pref_rl_robot.ros.segment_recorder:main',
        ],
    },
)
