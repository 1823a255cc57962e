"""The actor core (no ROS): segments, flow control, policy updates, frames, e-stop, resets."""

import dataclasses
import re
import sys
import time
import types

import numpy as np
import pytest
import torch

from pref_rl_learner.config import ConfigError
from pref_rl_learner.errors import PrefRLError
from pref_rl_learner.sac import SAC, SACConfig
from pref_rl_learner.types import PolicyWeights
from pref_rl_robot.actor import (
    Actor,
    ActorConfig,
    EstopEngagedError,
    FrameCache,
    Mode,
    UnknownSegmentError,
    WeightsRejectedError,
    make_backend,
)
from pref_rl_robot.fake_robot import FakeRobot, FakeRobotConfig
from pref_rl_robot.tasks import make_task


@pytest.fixture(autouse=True, scope='module')
def _one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def point_mass_actor(**overrides) -> Actor:
    return Actor.from_config(ActorConfig(**{'connect_grace_s': 0.0, **overrides}))


def sac_weights(version=1, obs_dim=4, act_dim=2, seed=0):
    agent = SAC(obs_dim, act_dim, SACConfig(hidden_sizes=(32, 32), device='cpu'), seed=seed)
    architecture, tensors = agent.actor_state()
    return PolicyWeights(version=version, tensors=tensors, architecture=architecture)


def assert_contiguous(segments, episode_length=50):
    """Within an episode each segment starts where the last ended and continues its state."""
    for prev, seg in zip(segments, segments[1:], strict=False):
        np.testing.assert_array_equal(seg.next_observations[:-1], seg.observations[1:])
        if seg.episode == prev.episode:
            assert seg.start_step == prev.start_step + prev.length
            np.testing.assert_array_equal(seg.observations[0], prev.next_observations[-1])
        else:
            assert (seg.episode, seg.start_step) == (prev.episode + 1, 0)
            assert prev.truncated[-1] and prev.start_step + prev.length == episode_length


def test_segments_are_contiguous_and_deterministic_for_a_seed():
    actor = point_mass_actor(seed=3)
    segments = actor.run(max_steps=120)
    assert [(s.episode, s.start_step, s.length) for s in segments[:6]] == [
        (0, 0, 10), (0, 10, 10), (0, 20, 10), (0, 30, 10), (0, 40, 10), (1, 0, 10)]
    assert len(segments) == 12 and actor.env_steps == 120 and actor.episode == 2
    assert_contiguous(segments)
    assert all(s.policy_version == 0 and s.source_id == 'robot' and s.task == 'point_mass'
               and s.frames is None and s.rewards is not None for s in segments)
    # Random actions before any weights, in [-1, 1].
    actions = np.concatenate([s.actions for s in segments])
    assert np.abs(actions).max() <= 1 and actions.std() > 0.3
    again = point_mass_actor(seed=3).run(max_steps=120)
    np.testing.assert_array_equal(np.concatenate([s.observations for s in again]),
                                  np.concatenate([s.observations for s in segments]))


def test_flow_control_waits_for_the_learner_and_resumes():
    actor = point_mass_actor(max_steps_ahead=30)
    assert actor.mode is Mode.WAITING and actor.run(max_steps=10) == []  # no learner yet
    actor.set_learner_steps(0)
    segments = actor.run(max_steps=1000)
    assert len(segments) == 3 and actor.env_steps == 30
    assert actor.mode is Mode.WAITING and actor.step() is None
    actor.set_learner_steps(20)  # the learner consumed two segments: two more may go
    more = actor.run(max_steps=1000)
    assert len(more) == 2 and actor.steps_ahead == 30 and actor.mode is Mode.WAITING
    assert_contiguous(segments + more)
    actor.consumer_connected = False
    actor.set_learner_steps(50)
    assert actor.mode is Mode.WAITING
    actor.consumer_connected = True
    assert actor.mode is Mode.STEPPING


def test_flow_control_counts_from_when_a_learner_appears_or_restarts():
    actor = point_mass_actor(max_steps_ahead=30)
    actor.consumer_connected = True
    # Without flow control (another reader, say a recorder) 50 steps went out before the
    # learner subscribed: they never reach it, so they must not count as unconsumed.
    actor.config = dataclasses.replace(actor.config, max_steps_ahead=0)
    assert len(actor.run(max_steps=50)) == 5
    actor.config = dataclasses.replace(actor.config, max_steps_ahead=30)
    actor.set_learner_steps(0)
    assert len(actor.run(max_steps=1000)) == 3 and actor.steps_ahead == 30
    actor.set_learner_steps(30)
    assert len(actor.run(max_steps=1000)) == 3
    # The learner restarts from a checkpoint at 10 steps: a new baseline, not 50 steps owed.
    actor.set_learner_steps(10)
    assert actor.steps_ahead == 0 and len(actor.run(max_steps=1000)) == 3
    # It disappears (its status publisher is gone): the robot waits for the next one.
    actor.learner_lost()
    assert actor.mode is Mode.WAITING and actor.run(max_steps=10) == []
    actor.set_learner_steps(10)
    assert actor.mode is Mode.STEPPING


def test_flow_control_waits_a_grace_period_after_a_learner_appears():
    actor = point_mass_actor(max_steps_ahead=30, connect_grace_s=0.3)
    actor.set_learner_steps(0)
    assert actor.mode is Mode.WAITING  # its segments reader may not be matched yet
    time.sleep(0.35)
    assert actor.mode is Mode.STEPPING and len(actor.run(max_steps=1000)) == 3
    actor.set_learner_steps(30)  # no new baseline: no new grace
    assert actor.mode is Mode.STEPPING


def test_flow_control_bound_must_cover_a_segment_and_bounds_unread_segments():
    with pytest.raises(ConfigError, match='at least one segment'):
        point_mass_actor(max_steps_ahead=5)
    # 1000 steps: 100 full segments of 10, plus one short last segment per episode ending.
    assert point_mass_actor(max_steps_ahead=1000).max_unread_segments() == 100 + 20
    assert point_mass_actor().max_unread_segments() is None


def test_weights_take_over_at_the_next_segment_boundary():
    actor = point_mass_actor(deterministic=True)
    actor.run(max_steps=5)  # mid-segment
    weights = sac_weights(version=1)
    actor.apply_weights(weights)
    first, second = actor.run(max_segments=2)
    assert (first.policy_version, second.policy_version) == (0, 1)
    assert actor.policy.version == 1 and actor.status().policy_version == 1
    reference = SAC.actor_from_state(weights.architecture, dict(weights.tensors))
    np.testing.assert_allclose(second.actions, reference.act(second.observations, True),
                               atol=1e-6)
    assert not np.allclose(first.actions[5:], reference.act(first.observations[5:], True))


def bad_shape(weights):
    tensors = dict(weights.tensors)
    tensors['layers.0.weight'] = tensors['layers.0.weight'][:, :-1]
    return PolicyWeights(2, tensors, weights.architecture)


def missing_tensor(weights):
    tensors = dict(weights.tensors)
    del tensors['layers.0.bias']
    return PolicyWeights(2, tensors, weights.architecture)


@pytest.mark.parametrize('make_bad, reason', [
    (bad_shape, "'layers.0.weight': shape"),
    (missing_tensor, "missing ['layers.0.bias']"),
    (lambda w: sac_weights(version=2, obs_dim=6), 'this env has (4, 2)'),
    (lambda w: PolicyWeights(2, w.tensors, '{"type": "transformer"}'), 'architecture'),
    (lambda w: sac_weights(version=1, seed=5), 'not newer than the acting version 1'),
])
def test_malformed_weights_are_rejected_and_the_old_policy_keeps_acting(make_bad, reason):
    actor = point_mass_actor(deterministic=True)
    good = sac_weights(version=1)
    actor.apply_weights(good)
    with pytest.raises(WeightsRejectedError, match=re.escape(reason)):
        actor.apply_weights(make_bad(good))
    assert actor.weights_rejected == 1 and actor.policy.version == 1
    segment = actor.run(max_segments=1)[0]
    reference = SAC.actor_from_state(good.architecture, dict(good.tensors))
    np.testing.assert_allclose(segment.actions, reference.act(segment.observations, True),
                               atol=1e-6)
    assert segment.policy_version == 1


def test_rejections_reported_from_outside_are_counted():
    actor = point_mass_actor()
    error = actor.reject_weights('tensor has non-finite values')
    assert isinstance(error, WeightsRejectedError) and actor.status().weights_rejected == 1


def test_frames_are_cached_by_segment_id_or_attached():
    actor = point_mass_actor(frame_stride=5, frame_size=32, frame_cache_segments=3, seed=1)
    segments = actor.run(max_segments=4)
    assert all(s.frames is None and s.frame_stride == 0 for s in segments)
    frames = actor.frames(segments[-1].segment_id)
    assert frames.frames.shape == (2, 32, 32, 3) and frames.frame_stride == 5
    with pytest.raises(UnknownSegmentError, match='evicted'):
        actor.frames(segments[0].segment_id)  # the cache holds the last three
    # The first frame shows the first observation: replay the same seed.
    env = make_task('point_mass', seed=1, render_size=32)
    env.reset(seed=1)
    replay = point_mass_actor(frame_stride=5, frame_size=32, seed=1, attach_frames=True)
    attached = replay.run(max_segments=1)[0]
    np.testing.assert_array_equal(attached.frames[0], env.render())
    assert attached.frames.shape == (2, 32, 32, 3) and attached.frame_stride == 5
    assert not np.array_equal(attached.frames[0], attached.frames[1])


def test_frame_cache_evicts_oldest_first():
    cache = FrameCache(2)
    frames = np.zeros((1, 4, 4, 3), np.uint8)
    for name in 'abc':
        cache.put(name, frames, 1)
    assert 'a' not in cache and 'b' in cache and len(cache) == 2 and cache.evicted == 1
    with pytest.raises(UnknownSegmentError, match="'a'"):
        cache.get('a')
    with pytest.raises(ValueError, match='uint8'):
        cache.put('d', frames.astype(np.float32), 1)


def test_estop_stops_stepping_refuses_resets_and_release_resumes_the_episode():
    actor = point_mass_actor()
    before = actor.run(max_steps=15)
    actor.engage_estop('test')
    assert actor.mode is Mode.ESTOP and actor.run(max_steps=100) == []
    assert actor.env_steps == 15
    with pytest.raises(EstopEngagedError):
        actor.reset_episode()
    actor.release_estop()
    after = actor.run(max_segments=2)
    assert_contiguous(before + after)


def test_reset_drops_the_open_segment_and_starts_a_new_episode():
    actor = point_mass_actor(max_steps_ahead=20)
    actor.set_learner_steps(0)
    actor.run(max_steps=13)  # one segment published, three steps pending
    assert actor.reset_episode(seed=7) == 1
    assert actor.dropped_steps == 3 and actor.steps_ahead == 10
    segment = actor.run(max_segments=1)[0]
    assert (segment.episode, segment.start_step) == (1, 0)
    # Same seed, same first observation.
    np.testing.assert_array_equal(segment.observations[0],
                                  make_task('point_mass').reset(seed=7)[0])
    assert actor.reset_episode() == 2  # episode 2 had no steps yet: reusing its index
    assert actor.reset_episode() == 2


class FakeSafety:
    """What a robot env's safety envelope offers the actor."""

    def __init__(self):
        self.estop_engaged = False
        self.reasons = []
        self.interventions = 4
        self.stats = types.SimpleNamespace(watchdog_hold=2)

    def engage_estop(self, reason):
        self.estop_engaged = True
        self.reasons.append(reason)

    def release_estop(self):
        self.estop_engaged = False


class HookedRobot(FakeRobot):
    """The fake robot with the hooks of a robot backend (safety, hold, idle, go_home)."""

    def __init__(self):
        super().__init__(FakeRobotConfig(episode_length=20))
        self.safety = FakeSafety()
        self.calls = []
        self.refuse = False

    @property
    def unwrapped(self):
        return self

    def step(self, action):
        if self.refuse:
            raise PrefRLError('outside the workspace')
        return super().step(action)

    def hold(self):
        self.calls.append('hold')

    def idle(self, seconds):
        self.calls.append(('idle', seconds))

    def go_home(self):
        self.calls.append('go_home')


def test_robot_hooks_estop_hold_and_safety_counters():
    env = HookedRobot()
    actor = Actor(env, ActorConfig(task='fake_point', segment_length=5))
    assert len(actor.run(max_steps=10)) == 2
    status = actor.status()
    assert (status.safety_interventions, status.watchdog_holds) == (4, 2)
    env.safety.estop_engaged = True  # the envelope engaged it by itself
    assert actor.mode is Mode.ESTOP and actor.step() is None
    actor.release_estop()
    actor.engage_estop('operator')
    assert env.safety.reasons == ['operator'] and env.calls == ['hold']
    actor.idle(0.05)
    actor.release_estop()
    assert actor.reset_episode(go_home=True) == 1
    assert env.calls == ['hold', ('idle', 0.05), 'go_home']
    env.refuse = True  # a step the envelope refuses engages the e-stop
    assert actor.step() is None and actor.mode is Mode.ESTOP
    assert 'outside the workspace' in actor.last_error and env.safety.estop_engaged


def test_unregistered_task_needs_a_segment_length():
    with pytest.raises(ConfigError, match='segment_length'):
        Actor(FakeRobot(), ActorConfig(task='fake_point'))


def test_config_is_validated():
    for bad in ({'backend': 'gazebo'}, {'goal': ''}, {'goal': 'person'}, {'max_steps_ahead': -1},
                {'frame_size': 4}, {'frame_cache_segments': 0}):
        with pytest.raises(ConfigError):
            ActorConfig(**bad)


def test_polymetis_backend_is_made_by_the_panda_module(monkeypatch):
    made = {}
    panda = types.ModuleType('pref_rl_robot.tasks.panda_tasks')
    panda.make_panda_task = lambda name, **kwargs: made.update(name=name, **kwargs) or 'env'
    monkeypatch.setitem(sys.modules, 'pref_rl_robot.tasks.panda_tasks', panda)
    assert make_backend('polymetis', 'panda_reach', seed=2) == 'env'
    assert made == {'name': 'panda_reach', 'backend': 'polymetis', 'goal': 'eval:0',
                    'seed': 2, 'render_size': 64}
    with pytest.raises(ConfigError, match='unknown backend'):
        make_backend('gazebo', 'point_mass')


def test_simulated_panda_estop_hold_and_watchdog_through_its_safety_envelope():
    pytest.importorskip('pybullet')
    actor = Actor.from_config(ActorConfig(task='panda_reach', frame_stride=25, frame_size=16))
    segments = actor.run(max_segments=2)
    assert [s.length for s in segments] == [25, 25] and segments[0].observations.shape[1] == 6
    assert actor.frames(segments[1].segment_id).frames.shape == (1, 16, 16, 3)
    safety = actor.env.unwrapped.safety
    actor.idle(1.0)  # a stall: no command for longer than the watchdog period
    status = actor.status()
    assert (status.watchdog_holds, status.safety_interventions) == (1, safety.interventions)
    actor.engage_estop('operator')
    assert safety.estop_engaged and actor.mode is Mode.ESTOP and actor.step() is None
    with pytest.raises(EstopEngagedError):
        actor.reset_episode()
    actor.release_estop()
    assert not safety.estop_engaged
    assert_contiguous(segments + actor.run(max_segments=1), episode_length=100)
