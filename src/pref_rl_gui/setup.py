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
        'console_scripts': [
            # The Qt labelling window of a ROS 2 session (`pref-rl label` is the standalone
            # app: a sub-command of the pref-rl CLI, registered by pref_rl_gui.label_cli).
            'labeler = pref_rl_gui.ros.labeler:main',
        ],
    },
)
