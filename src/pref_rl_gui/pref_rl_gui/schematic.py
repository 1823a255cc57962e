"""Drawing a clip without frames: the trajectory read from its observations.

Segments of state-only tasks carry no camera frames (or the robot's frame cache has evicted
them). A person can still compare two clips from a schematic: for tasks whose observation
layout is known, a top view of the positions that matter (the point mass, the reacher's arm
and fingertip, the Panda's end effector and block, MetaWorld's hand and object); for any other
task, each observation dimension over time. The target is not in the observations (it is
what the labels teach), so the drawing shows no goal; the window names the target, and the
camera frames, where there are any, draw it. Both clips of a
query share one scale (:func:`schematics`), so they can be compared at a glance.

Pure numpy; :mod:`pref_rl_gui.widgets.clip_view` paints what this module computes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from pref_rl_learner.types import Segment
from pref_rl_robot.tasks.reacher_kinematics import arm_points

MAX_TRACES = 8
"""Observation dimensions drawn for a task of unknown layout."""
Bounds = tuple[float, float, float, float]


@dataclass(frozen=True, eq=False)
class Schematic:
    """A trajectory of ``steps`` transitions, as something to draw at each step 0..steps."""

    title: str
    """What the drawing shows, e.g. ``top view: mass (x, y), goal``."""
    steps: int
    """Transitions T; the state is defined at steps 0..T."""
    bounds: Bounds | None = None
    """Plane drawings: (x_min, x_max, y_min, y_max) of the view, zoomed onto the motion and
    the goal; None: a traces drawing."""
    arena: Bounds | None = None
    """Plane: the task's workspace (walls, reach), drawn as a rectangle."""
    paths: tuple[tuple[str, np.ndarray], ...] = ()
    """Plane: named ``[T+1, 2]`` positions at every step (the first is the actor)."""
    goal: np.ndarray | None = None
    """Plane: ``[2]`` goal position, if the task has one."""
    arm: np.ndarray | None = None
    """Plane: ``[T+1, K, 2]`` polyline of an arm's joints at every step."""
    traces: np.ndarray | None = None
    """Traces: ``[T+1, D]`` observation values scaled to [0, 1] (shared scale)."""
    trace_names: tuple[str, ...] = ()
    """Traces: a name per column, e.g. ``obs[3]``."""


def states(segments: Sequence[Segment]) -> np.ndarray:
    """Flat observations at steps 0..T of consecutive segments: ``[T+1, D]`` float32."""
    obs = [s.observations.reshape(s.length, -1) for s in segments]
    last = segments[-1].next_observations.reshape(segments[-1].length, -1)[-1:]
    return np.concatenate([*obs, last]).astype(np.float32, copy=False)


def _plane(title: str, bounds: Bounds, paths: list[tuple[str, np.ndarray]],
           goal: np.ndarray | None = None, arm: np.ndarray | None = None) -> Schematic:
    steps = paths[0][1].shape[0] - 1
    return Schematic(title=title, steps=steps, bounds=bounds, arm=arm,
                     paths=tuple((n, np.asarray(p, np.float32)) for n, p in paths),
                     goal=None if goal is None else np.asarray(goal, np.float32))


def _point_mass(s: np.ndarray) -> Schematic | None:
    if s.shape[1] != 4:  # x, y, vx, vy
        return None
    return _plane('top view: mass (x, y)', (-1.0, 1.0, -1.0, 1.0), [('mass', s[:, 0:2])])


def _reacher(s: np.ndarray) -> Schematic | None:
    if s.shape[1] != 6:  # cos q0, cos q1, sin q0, sin q1, dq0, dq1
        return None
    elbow, tip = arm_points(s)
    arm = np.stack([np.zeros_like(elbow), elbow, tip], axis=1)
    return _plane('top view: arm and fingertip', (-0.22, 0.22, -0.22, 0.22),
                  [('fingertip', tip)], arm=arm)


def _panda_reach(s: np.ndarray) -> Schematic | None:
    if s.shape[1] != 6:  # ee xyz, ee velocity xyz
        return None
    return _plane('top view: end effector (x, y)', (0.25, 0.75, -0.3, 0.3),
                  [('end effector', s[:, 0:2])])


def _panda_push(s: np.ndarray) -> Schematic | None:
    if s.shape[1] != 9:  # ee xyz, ee velocity xyz, block xyz
        return None
    return _plane('top view: end effector and block', (0.25, 0.75, -0.3, 0.3),
                  [('end effector', s[:, 0:2]), ('block', s[:, 6:8])])


def _metaworld(s: np.ndarray) -> Schematic | None:
    if s.shape[1] != 39:  # partially observable: the goal entries are zero
        return None
    return _plane('top view: hand and object', (-0.5, 0.5, 0.3, 1.0),
                  [('hand', s[:, 0:2]), ('object', s[:, 4:6])])


def _layout(task: str) -> Callable[[np.ndarray], Schematic | None] | None:
    if task == 'point_mass':
        return _point_mass
    if task == 'reacher':
        return _reacher
    if task == 'panda_reach':
        return _panda_reach
    if task == 'panda_push':
        return _panda_push
    if task.endswith(('-v2', '-v3')):
        return _metaworld
    return None


MIN_ZOOM_SPAN = 0.3
"""The view spans at least this fraction of the task's workspace (small motions are zoomed
in on, but not so far that the workspace's scale is lost)."""


def _fit(arena: Bounds, points: np.ndarray, margin: float = 0.15) -> Bounds:
    """A square view holding every point with a margin, at least :data:`MIN_ZOOM_SPAN` of
    the arena wide."""
    x0, x1 = float(points[:, 0].min()), float(points[:, 0].max())
    y0, y1 = float(points[:, 1].min()), float(points[:, 1].max())
    least = MIN_ZOOM_SPAN * max(arena[1] - arena[0], arena[3] - arena[2])
    half = max(x1 - x0, y1 - y0, least) / 2 * (1 + margin)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return (cx - half, cx + half, cy - half, cy + half)


def _traces(all_states: Sequence[np.ndarray]) -> list[Schematic]:
    dims = min(MAX_TRACES, min(s.shape[1] for s in all_states))
    joined = np.concatenate([s[:, :dims] for s in all_states])
    low, high = joined.min(axis=0), joined.max(axis=0)
    span = np.where(high - low > 1e-9, high - low, 1.0)
    names = tuple(f'obs[{i}]' for i in range(dims))
    return [Schematic(title=f'observations over time (first {dims} dimensions)',
                      steps=s.shape[0] - 1, traces=(s[:, :dims] - low) / span,
                      trace_names=names) for s in all_states]


def schematics(task: str, all_states: Sequence[np.ndarray]) -> list[Schematic]:
    """One :class:`Schematic` per state array (``[T+1, D]``, from :func:`states`), all on one
    scale: the task's top view when its layout is known, observation traces otherwise."""
    layout = _layout(task)
    drawn = [layout(s) for s in all_states] if layout is not None else []
    if not drawn or any(d is None for d in drawn):
        return _traces(all_states)
    points = np.concatenate([p for d in drawn for _, p in d.paths]
                            + [d.goal[None] for d in drawn if d.goal is not None]
                            + [d.arm.reshape(-1, 2) for d in drawn if d.arm is not None])
    arena = drawn[0].bounds
    assert arena is not None
    bounds = _fit(arena, points)
    return [Schematic(title=d.title, steps=d.steps, bounds=bounds, arena=arena, paths=d.paths,
                      goal=d.goal, arm=d.arm) for d in drawn]


def segment_schematics(segments: Sequence[Segment], task: str = '') -> list[Schematic]:
    """:func:`schematics` of single segments (e.g. the two clips of a query)."""
    return schematics(task or segments[0].task, [states([s]) for s in segments])
