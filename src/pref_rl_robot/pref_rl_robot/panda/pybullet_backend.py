"""Franka Panda in PyBullet: headless, one physics client per backend.

* **Scene**: pybullet_data's ``franka_panda/panda.urdf`` with a fixed base at the origin on
  ``table/table.urdf`` (top at z = 0), optionally a 5 cm, 0.1 kg cube (``cube_small.urdf``)
  and a goal marker without collision (a sphere in the air or a disc on the table).
* **Timing**: ``PHYSICS_HZ`` = 240 Hz physics (PyBullet's default step), ``CONTROL_HZ`` = 10 Hz
  control: each env step sets one end-effector target and simulates 24 sub-steps (0.1 s).
* **Control**: a target position becomes joint targets through
  ``calculateInverseKinematics`` (end effector = ``panda_grasptarget``, between the fingertips,
  pointing straight down), tracked by PyBullet's joint position motors with the Panda's torque
  limits (87 N m joints 1-4, 12 N m joints 5-7). The gripper is a position-controlled pair of
  fingers. PyBullet's IK always returns an answer, so ``ik_failed`` is never reported here;
  a target the arm cannot follow shows up as a tracking error in the safety envelope.
* **Frames**: ``render`` draws with ``ER_TINY_RENDERER`` (CPU, no display) from a camera in
  front of the robot looking back at the workspace.

``p.DIRECT`` clients are independent, so several envs coexist in one process.
"""

from __future__ import annotations

import numpy as np
import pybullet
import pybullet_data

from pref_rl_robot.panda.backend import CommandResult, PandaBackend

PHYSICS_HZ = 240
"""Physics steps per second."""
CONTROL_HZ = 10
"""End-effector targets per second (env steps per simulated second)."""
HOME_JOINTS = (0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785)
"""Polymetis' Franka home pose, rad; episodes start from it, then move to the start position."""
ARM_TORQUE_LIMITS = (87.0, 87.0, 87.0, 87.0, 12.0, 12.0, 12.0)
"""Joint torque limits of the Panda, N m."""
EE_DOWN = (1.0, 0.0, 0.0, 0.0)
"""End-effector orientation (quaternion xyzw): pointing straight down."""
BLOCK_HALF_SIZE = 0.025
"""Half the side of the block, m."""
_EE_LINK = 'panda_grasptarget'
_FINGER_FORCE = 20.0
_CAMERA_EYE = (1.25, 0.35, 0.75)
_CAMERA_TARGET = (0.45, 0.0, 0.08)


class PyBulletPandaBackend(PandaBackend):
    """A simulated Panda on a table; see the module docstring."""

    realtime = False
    control_period_s = 1.0 / CONTROL_HZ

    def __init__(self, *, with_block: bool, goal_on_table: bool,
                 goal_marker_radius: float = 0.02) -> None:
        super().__init__()
        p = pybullet
        self._client = p.connect(p.DIRECT)
        c = self._client
        p.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=c)
        p.setGravity(0, 0, -9.81, physicsClientId=c)
        p.setTimeStep(1.0 / PHYSICS_HZ, physicsClientId=c)
        self._robot = p.loadURDF('franka_panda/panda.urdf', useFixedBase=True,
                                 flags=p.URDF_ENABLE_CACHED_GRAPHICS_SHAPES,
                                 physicsClientId=c)
        p.loadURDF('table/table.urdf', basePosition=(0.5, 0.0, -0.626), physicsClientId=c)
        names = {p.getJointInfo(self._robot, j, physicsClientId=c)[12].decode(): j
                 for j in range(p.getNumJoints(self._robot, physicsClientId=c))}
        self._ee = names[_EE_LINK]
        self._arm = list(range(7))
        self._fingers = [names['panda_leftfinger'], names['panda_rightfinger']]
        self._block: int | None = None
        if with_block:
            self._block = p.loadURDF('cube_small.urdf', basePosition=(0.5, 0.0, BLOCK_HALF_SIZE),
                                     physicsClientId=c)
            p.changeVisualShape(self._block, -1, rgbaColor=(0.2, 0.35, 0.95, 1.0),
                                physicsClientId=c)
        if goal_on_table:
            shape = p.createVisualShape(p.GEOM_CYLINDER, radius=0.05, length=0.002,
                                        rgbaColor=(0.1, 0.85, 0.2, 1.0), physicsClientId=c)
        else:
            shape = p.createVisualShape(p.GEOM_SPHERE, radius=goal_marker_radius,
                                        rgbaColor=(0.1, 0.85, 0.2, 1.0), physicsClientId=c)
        self._marker = p.createMultiBody(baseMass=0, baseVisualShapeIndex=shape,
                                         basePosition=(0.5, 0.0, 0.3), physicsClientId=c)
        self._substeps = 0
        self._gripper_width = 0.0
        self._view = p.computeViewMatrix(_CAMERA_EYE, _CAMERA_TARGET, (0, 0, 1))
        self._projection = p.computeProjectionMatrixFOV(50.0, 1.0, 0.05, 5.0)
        self._set_joints(HOME_JOINTS)

    # --- Motion hooks (reached only through the safety envelope) ----------------------------

    def _move_ee(self, target: np.ndarray, duration: float) -> CommandResult:
        self._drive_arm(self._ik(target))
        return CommandResult(ik_failed=False)

    def _hold(self) -> np.ndarray:
        self._drive_arm(self._joint_positions())
        return self.ee_position()

    def _move_gripper(self, width: float) -> None:
        self._gripper_width = width
        pybullet.setJointMotorControlArray(
            self._robot, self._fingers, pybullet.POSITION_CONTROL,
            targetPositions=[width / 2] * 2, forces=[_FINGER_FORCE] * 2,
            physicsClientId=self._client)

    def _home(self, ee_position: np.ndarray, max_step_m: float) -> None:
        # Simulation: teleport (no motion to limit). From the home pose, refine the IK
        # solution by placing the arm on it and solving again.
        self._set_joints(HOME_JOINTS)
        for _ in range(4):
            self._set_joints(self._ik(ee_position))
        self._drive_arm(self._joint_positions())

    # --- Scene and sensing -----------------------------------------------------------------

    def now(self) -> float:
        """Simulated time, s."""
        return self._substeps / PHYSICS_HZ

    def advance(self, seconds: float) -> float:
        """Simulate ``seconds`` rounded to whole 1/240 s sub-steps (at least one)."""
        n = max(1, round(seconds * PHYSICS_HZ))
        for _ in range(n):
            pybullet.stepSimulation(physicsClientId=self._client)
        self._substeps += n
        return n / PHYSICS_HZ

    def ee_position(self) -> np.ndarray:
        """End-effector position, m."""
        state = pybullet.getLinkState(self._robot, self._ee, computeForwardKinematics=True,
                                      physicsClientId=self._client)
        return np.array(state[4])

    def ee_velocity(self) -> np.ndarray:
        """End-effector linear velocity, m/s."""
        state = pybullet.getLinkState(self._robot, self._ee, computeLinkVelocity=True,
                                      physicsClientId=self._client)
        return np.array(state[6])

    def block_position(self) -> np.ndarray | None:
        """Centre of the block, m; None without a block."""
        if self._block is None:
            return None
        position, _ = pybullet.getBasePositionAndOrientation(self._block,
                                                             physicsClientId=self._client)
        return np.array(position)

    def reset_scene(self, goal: np.ndarray | None, block_position: np.ndarray | None) -> None:
        """Move the goal marker to ``goal`` (None: out of sight) and the block (at rest,
        square) to ``block_position``."""
        c = self._client
        if goal is None:
            marker = (0.0, 0.0, -10.0)
        else:
            marker = (*goal[:2], 0.001) if len(goal) == 2 else tuple(goal)
        pybullet.resetBasePositionAndOrientation(self._marker, marker, (0, 0, 0, 1),
                                                 physicsClientId=c)
        if self._block is not None and block_position is not None:
            pybullet.resetBasePositionAndOrientation(self._block, tuple(block_position),
                                                     (0, 0, 0, 1), physicsClientId=c)
            pybullet.resetBaseVelocity(self._block, (0, 0, 0), (0, 0, 0), physicsClientId=c)

    def render(self, size: int) -> np.ndarray:
        """``uint8 [size, size, 3]`` from the camera in front of the robot."""
        _, _, rgba, _, _ = pybullet.getCameraImage(
            size, size, self._view, self._projection, renderer=pybullet.ER_TINY_RENDERER,
            flags=pybullet.ER_NO_SEGMENTATION_MASK, physicsClientId=self._client)
        return np.asarray(rgba, np.uint8).reshape(size, size, 4)[:, :, :3].copy()

    def joint_positions(self) -> np.ndarray:
        """Arm joint angles, rad, ``float64 [7]``."""
        return np.array(self._joint_positions())

    def close(self) -> None:
        """Disconnect the physics client (idempotent)."""
        if self._client is not None and pybullet.isConnected(self._client):
            pybullet.disconnect(self._client)
        self._client = None

    # --- Internals -----------------------------------------------------------------------

    def _ik(self, target: np.ndarray) -> list[float]:
        # Plain damped-least-squares IK from the current joint state: for the small steps an
        # env makes it is accurate to ~0.1 mm, where the null-space variant stays mm off.
        solution = pybullet.calculateInverseKinematics(
            self._robot, self._ee, tuple(float(v) for v in target), EE_DOWN,
            maxNumIterations=50, residualThreshold=1e-5, physicsClientId=self._client)
        return list(solution[:7])

    def _joint_positions(self) -> list[float]:
        states = pybullet.getJointStates(self._robot, self._arm, physicsClientId=self._client)
        return [s[0] for s in states]

    def _drive_arm(self, joints: list[float] | tuple[float, ...]) -> None:
        pybullet.setJointMotorControlArray(
            self._robot, self._arm, pybullet.POSITION_CONTROL, targetPositions=list(joints),
            targetVelocities=[0.0] * 7, forces=list(ARM_TORQUE_LIMITS),
            physicsClientId=self._client)

    def _set_joints(self, joints: list[float] | tuple[float, ...]) -> None:
        c = self._client
        for j, q in zip(self._arm, joints, strict=True):
            pybullet.resetJointState(self._robot, j, q, 0.0, physicsClientId=c)
        for j in self._fingers:
            pybullet.resetJointState(self._robot, j, self._gripper_width / 2, 0.0,
                                     physicsClientId=c)
        self._drive_arm(joints)

