from setuptools import find_packages, setup

package_name = 'pref_rl_gui'

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
    description='pref-rl Qt labelling app and labeler node.',
    license='Apache-2.0',
    extras_require={'test': ['pytest', 'pytest-qt']},
    entry_points={
        # `pref-rl label`, the standalone labelling app: a sub-command of the pref-rl CLI.
        'pref_rl.commands': ['label = pref_rl_gui.label_cli:register'],
        'console_scripts': [
            # The Qt labelling window of a ROS 2 session.
            'labeler = pref_rl_gui.ros.labeler:main',
        ],
    },
)
