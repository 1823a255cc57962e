"""The reacher's arm geometry: link lengths and forward kinematics from its observation.

Pure numpy (no MuJoCo), for everything that reads a reacher observation (joint angles as
cosines and sines, then joint velocities) and needs where the arm is: the scripted expert,
the labelling window's schematic drawing. The observation holds no fingertip position, since
that with the target would reveal it.
"""

from __future__ import annotations

import numpy as np

LINK_LENGTHS = (0.1, 0.11)
"""Shoulder-elbow and elbow-fingertip lengths of the Reacher-v5 model, m."""


def joint_angles(observations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(q0, q0 + q1)`` (absolute angles of both links) of observations ``[..., 6]``."""
    observations = np.asarray(observations, np.float64)
    q0 = np.arctan2(observations[..., 2], observations[..., 0])
    return q0, q0 + np.arctan2(observations[..., 3], observations[..., 1])


def arm_points(observations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(elbow, fingertip)`` positions in the plane, each ``[..., 2]``, m."""
    (l1, l2), (q0, q01) = LINK_LENGTHS, joint_angles(observations)
    elbow = l1 * np.stack([np.cos(q0), np.sin(q0)], axis=-1)
    return elbow, elbow + l2 * np.stack([np.cos(q01), np.sin(q01)], axis=-1)
