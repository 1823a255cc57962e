from setuptools import find_packages, setup

package_name = 'pref_rl_learner'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
        # The one command-line entry point, on PATH once install/setup.bash is sourced.
        ('bin', ['scripts/pref-rl']),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='pref-rl maintainers',
    maintainer_email='maintainers@pref-rl.dev',
    description='pref-rl core library, CLI and learner-side ROS 2 nodes.',
    license='Apache-2.0',
    extras_require={'test': ['pytest'], 'slurm': ['submitit==1.5.4']},
    entry_points={
        'console_scripts': [
            'pref-rl = pref_rl_learner.cli:main',
            'session_monitor = pref_rl_learner.ros.session_monitor:main',
            'learner = pref_rl_learner.ros.learner:main',
            'teacher = pref_rl_learner.ros.teacher:main',
            'bag_player = pref_rl_learner.ros.bag_player:main',
        ],
    },
)
