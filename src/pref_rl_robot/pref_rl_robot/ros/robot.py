"""``robot`` node: the actor. Steps an env with a local copy of the policy, publishes segments.

Maps ROS onto :class:`pref_rl_robot.actor.Actor`, which holds all the logic:

- publishes ``segments`` (Segment, reliable stream) and ``robot_status`` (RobotStatus,
  latched; on every change and every ``status_period_s``);
- subscribes to ``policy_weights`` (PolicyWeights, latched): checked, then acting from the next
  segment boundary; malformed weights are refused with a logged reason and counted in
  ``RobotStatus.weights_rejected``, and the old policy keeps acting;
- subscribes to ``learner_status`` (LearnerStatus, latched): its ``env_steps`` is the learner's
  consumption for flow control (``max_steps_ahead``). Under flow control the robot steps only
  once a learner reported, counting from that moment; when the topic loses its publisher
  (the learner stopped or crashed) it waits for the next report and counts afresh, so a
  restarted learner is never owed segments it could not have received;
- serves ``~/reset_episode``, ``~/set_estop`` and ``~/get_segment_frames``; the frames
  service queues a burst of requests (the two segments of every query of a feedback session)
  with the ``SERVICE`` QoS (:mod:`pref_rl_learner.ros.qos`): the default service queue keeps
  only the last 10 requests, and requests beyond it were never answered.

Stepping: with ``rate_hz`` = 0 (simulation) a zero-period timer steps as fast as flow control
allows, in slices of at most ``step_slice_s`` so that subscriptions and services are served in
between; with ``rate_hz`` > 0 (a real robot) one step per timer period. While it may not step
(waiting for the learner or a subscriber, e-stop) the step timer is cancelled, the arm holds,
and a slow timer checks every ``hold_period_s`` whether stepping may resume.

Segments are lossless only under flow control: the stream keeps the last 256 messages per
reader, so a writer further ahead than that overwrites segments the learner has not read yet.
The node refuses a ``max_steps_ahead`` that could exceed it, and waits for a subscriber on
``segments`` before stepping (``min_subscribers``): segments published to nobody are lost, and
under flow control the learner's count would then never catch up.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.subscription import MessageInfo

from pref_rl_learner.config import ConfigError
from pref_rl_learner.errors import PrefRLError
from pref_rl_learner.ros.conversions import (
    publisher_gid,
    segment_to_ros,
    weights_from_ros,
)
from pref_rl_learner.ros.node_main import NodeExit, run_node
from pref_rl_learner.ros.params import declare_config
from pref_rl_learner.ros.qos import LATCHED, SERVICE, STREAM
from pref_rl_msgs.msg import LearnerStatus, PolicyWeights, RobotStatus
from pref_rl_msgs.msg import Segment as SegmentMsg
from pref_rl_msgs.srv import GetSegmentFrames, ResetEpisode, SetEstop
from pref_rl_robot.actor import (
    Actor,
    ActorConfig,
    Mode,
    UnknownSegmentError,
    WeightsRejectedError,
)
from pref_rl_robot.ros.conversions import frames_to_response, robot_status_to_ros


@dataclass(frozen=True)
class RobotNodeConfig:
    """Parameters of the ``robot`` node beyond the actor's (:class:`ActorConfig`)."""

    rate_hz: float = 0.0
    """Control rate of a real robot, steps/s; 0: step as fast as flow control allows (sim)."""
    step_slice_s: float = 0.005
    """Simulation: longest stretch of stepping per timer callback, seconds."""
    hold_period_s: float = 0.05
    """While not stepping: check for resumption and keep the arm holding this often, s."""
    status_period_s: float = 1.0
    """Publish robot_status at least this often, seconds."""
    min_subscribers: int = 1
    """Step only while at least this many readers subscribe to segments (0: always)."""
    max_segments: int = 0
    """Exit once this many segments are published and acknowledged (0: run until stopped)."""

    def __post_init__(self) -> None:
        if self.rate_hz < 0 or self.min_subscribers < 0 or self.max_segments < 0:
            raise ConfigError('rate_hz, min_subscribers and max_segments must be >= 0')
        for name in ('step_slice_s', 'hold_period_s', 'status_period_s'):
            if not getattr(self, name) > 0:
                raise ConfigError(f'{name} must be > 0, got {getattr(self, name)}')


class RobotNode(Node):
    """The ``robot`` node; ``kwargs`` go to :class:`rclpy.node.Node` (e.g. parameter overrides)."""

    def __init__(self, **kwargs) -> None:
        super().__init__('robot', **kwargs)
        import torch  # the policy acts on the CPU, one sample at a time: one thread is fastest

        torch.set_num_threads(1)
        self.actor_config = declare_config(self, ActorConfig)
        self.config = declare_config(self, RobotNodeConfig)
        self.actor = Actor.from_config(self.actor_config,
                                       source_id=self.get_fully_qualified_name())
        unread = self.actor.max_unread_segments()
        if unread is not None and unread > STREAM.depth:
            raise ConfigError(
                f'max_steps_ahead {self.actor_config.max_steps_ahead} allows {unread} unread '
                f'segments, more than the {STREAM.depth} the segments stream keeps')
        self.published = 0
        self._last_mode: Mode | None = None
        self._last_status_s = 0.0

        self.segment_pub = self.create_publisher(SegmentMsg, 'segments', STREAM)
        self.status_pub = self.create_publisher(RobotStatus, 'robot_status', LATCHED)
        self.create_subscription(PolicyWeights, 'policy_weights', self.on_weights, LATCHED)
        self._learner_gid: bytes | None = None  # the publisher of the last learner status
        self.learner_sub = self.create_subscription(LearnerStatus, 'learner_status',
                                                    self.on_learner_status, LATCHED)
        self.create_service(ResetEpisode, '~/reset_episode', self.on_reset_episode)
        self.create_service(SetEstop, '~/set_estop', self.on_set_estop)
        self.create_service(GetSegmentFrames, '~/get_segment_frames', self.on_get_frames,
                            qos_profile=SERVICE)
        rate = self.config.rate_hz
        self.step_timer = self.create_timer(1.0 / rate if rate else 0.0, self.on_step_timer)
        self.create_timer(self.config.hold_period_s, self.on_hold_timer)
        self.create_timer(self.config.status_period_s, self.on_status_timer)
        c = self.actor_config
        self.get_logger().info(
            f'{c.task} on {c.backend}: segments of {self.actor.segment_length} steps, '
            + (f'at most {c.max_steps_ahead} steps ahead of the learner'
               if c.max_steps_ahead else 'no flow control (a slow reader may lose segments)')
            + (f', {rate} Hz' if rate else ''))
        self.publish_status()

    # ---------------------------------------------------------------------------- stepping

    def on_step_timer(self) -> None:
        """Step one slice (sim) or one step (control rate); publish what closes."""
        self.check_connections()
        if self.config.rate_hz:
            self.publish_segments(self.actor.run(max_steps=1))
        else:
            deadline = time.monotonic() + self.config.step_slice_s
            while True:
                # One segment at a time, so each is published as soon as it closes.
                remaining = max(0.0, deadline - time.monotonic())
                self.publish_segments(self.actor.run(max_segments=1, max_seconds=remaining))
                if self.actor.mode is not Mode.STEPPING or time.monotonic() >= deadline:
                    break
        if self.actor.mode is not Mode.STEPPING:
            self.step_timer.cancel()
            self.actor.hold()
            if self.actor.last_error:
                self.get_logger().error(f'e-stop engaged: {self.actor.last_error}')
        self.publish_status_on_change()

    def publish_segments(self, segments: list) -> None:
        """Publish closed segments; exit after ``max_segments`` once all are acknowledged."""
        for segment in segments:
            self.segment_pub.publish(segment_to_ros(segment))
            self.published += 1
            if self.published == self.config.max_segments:
                self.publish_status()
                self.segment_pub.wait_for_all_acked(Duration(seconds=10))
                raise NodeExit(0, f'published {self.published} segments')

    def on_hold_timer(self) -> None:
        """While not stepping: resume when allowed, else keep the arm holding."""
        if not self.step_timer.is_canceled():
            return
        self.check_connections()
        if self.actor.mode is Mode.STEPPING:
            self.step_timer.reset()
        else:
            self.actor.idle(self.config.hold_period_s)
        self.publish_status_on_change()

    def check_connections(self) -> None:
        """Readers on ``segments``, and whether the learner that set the flow-control
        baseline is still there (no publisher on ``learner_status``: it went away)."""
        self.actor.consumer_connected = (self.segment_pub.get_subscription_count()
                                         >= self.config.min_subscribers)
        if self.actor.learner_connected and self.learner_sub.get_publisher_count() == 0:
            self.get_logger().warning('the learner went away: waiting for it under flow '
                                      'control' if self.actor_config.max_steps_ahead
                                      else 'the learner went away')
            self.actor.learner_lost()
            self._learner_gid = None

    def wake(self) -> None:
        """Resume stepping at once if the actor may step (after an input changed)."""
        if self.step_timer.is_canceled() and self.actor.mode is Mode.STEPPING:
            self.step_timer.reset()
        self.publish_status_on_change()

    # ---------------------------------------------------------------------------- inputs

    def on_weights(self, msg: PolicyWeights) -> None:
        """Check new policy weights; refuse malformed ones with a logged reason."""
        try:
            weights = weights_from_ros(msg)
        except PrefRLError as err:
            error = self.actor.reject_weights(f'version {msg.version}: {err}')
        else:
            try:
                self.actor.apply_weights(weights)
            except WeightsRejectedError as err:
                error = err
            else:
                self.get_logger().info(f'policy version {weights.version} accepted (acting '
                                       'from the next segment)')
                self.publish_status()
                return
        self.get_logger().warning(f'policy weights rejected, policy version '
                                  f'{self.actor.policy.version} keeps acting: {error}')
        self.publish_status()

    def on_learner_status(self, msg: LearnerStatus, info: MessageInfo) -> None:
        """The learner's consumption drives flow control.

        A status from another publisher than the last one is a restarted learner (it resumed
        from its checkpoint and never received what its predecessor was sent after it):
        flow control takes a new baseline even if the restart was too quick for the graph
        to show the old publisher gone.
        """
        gid = publisher_gid(info)
        if self._learner_gid is not None and gid != self._learner_gid:
            self.get_logger().warning(f'a new learner at {msg.env_steps} env steps (restarted): '
                                      'new flow-control baseline')
            self.actor.learner_lost()
        self._learner_gid = gid
        self.actor.set_learner_steps(msg.env_steps)
        self.wake()

    def on_reset_episode(self, request: ResetEpisode.Request,
                         response: ResetEpisode.Response) -> ResetEpisode.Response:
        """Start a new episode (refused while the e-stop is engaged)."""
        try:
            response.episode = self.actor.reset_episode(
                seed=request.seed if request.seed >= 0 else None, go_home=request.go_home)
        except PrefRLError as err:  # EstopEngagedError, or a bad seed
            response.success, response.message = False, str(err)
            return response
        response.success, response.message = True, f'episode {response.episode} started'
        self.get_logger().info(response.message)
        self.publish_status()
        return response

    def on_set_estop(self, request: SetEstop.Request,
                     response: SetEstop.Response) -> SetEstop.Response:
        """Engage or release the e-stop."""
        if request.engage:
            self.actor.engage_estop('set_estop service')
            self.step_timer.cancel()
            self.get_logger().warning('e-stop engaged')
            response.success, response.message = True, 'e-stop engaged'
        else:
            self.actor.release_estop()
            response.success = self.actor.mode is not Mode.ESTOP
            response.message = ('e-stop released' if response.success
                                else 'the safety envelope keeps the e-stop engaged')
            self.get_logger().info(response.message)
            self.wake()
        self.publish_status()
        return response

    def on_get_frames(self, request: GetSegmentFrames.Request,
                      response: GetSegmentFrames.Response) -> GetSegmentFrames.Response:
        """Frames of a recently published segment, from the actor's cache."""
        try:
            return frames_to_response(self.actor.frames(request.segment_id), response)
        except UnknownSegmentError as err:
            response.success, response.message = False, str(err)
            return response

    # ---------------------------------------------------------------------------- status

    def publish_status(self) -> None:
        """Publish the actor's status on ``robot_status`` now."""
        status = self.actor.status()
        self._last_mode = status.mode
        self._last_status_s = time.monotonic()
        self.status_pub.publish(robot_status_to_ros(status))

    def publish_status_on_change(self) -> None:
        """Publish the status if the mode changed since the last one."""
        if self.actor.mode is not self._last_mode:
            self.publish_status()

    def on_status_timer(self) -> None:
        """Periodic status (skipped if one went out within the period)."""
        if time.monotonic() - self._last_status_s >= 0.5 * self.config.status_period_s:
            self.publish_status()

    def destroy_node(self) -> None:
        """Close the env (a robot backend releases the arm) and destroy the node."""
        self.actor.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Entry point of the ``robot`` executable."""
    return run_node(RobotNode, args)
