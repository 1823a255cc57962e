"""``learner`` node: PEBBLE fed by the robot's segments, labels through a service.

Maps ROS onto :class:`pref_rl_learner.learner.LearnerCore`, which holds all the learning
state; a :class:`~pref_rl_learner.learner.LearnerWorker` thread runs SAC updates, query
selection and reward training, so message handling is never blocked by learning.

Parameters (one per field of :class:`LearnerNodeConfig` and
:class:`~pref_rl_learner.learner.LearnerConfig`; ``ros2 param describe`` shows each field's
docstring):

- ``config`` (str): a ``pref-rl train`` YAML file (:class:`TrainConfig`: task, algorithm,
  seed/unsupervised steps, SAC, reward model, query selection, feedback schedule and
  budget, ...), e.g. ``config/pebble_point_mass.yaml``; '' uses TrainConfig's defaults.
  Relative paths are relative to the working directory.
- ``algorithm`` (str), ``pretrained_reward`` (str): override the YAML's (the session's
  ``algorithm:=`` and ``checkpoint:=`` launch arguments); ``init`` and ``fewshot`` need a
  pretrained reward checkpoint, the other algorithms refuse one.
- ``run_dir`` (str): where the preference store (``preferences/``) and ``checkpoint.pt``
  live; '' makes ``runs/<timestamp>-learner``. An existing run directory is resumed: the
  checkpoint is loaded, every acknowledged label is read back from the store, and queries
  asked but unanswered are published again.
- ``checkpoint_interval_s`` (float, 300): periodic checkpoints; 0 disables them.
- ``publish_period_s`` (float, 0.05): how often new queries, weights and a changed status
  are published.
- ``frames_service`` (str, ``robot/get_segment_frames``), ``frames_timeout_s`` (float, 1.0),
  ``frames_max_in_flight`` (int, 8), ``frames_retries`` (int, 1): before a query is
  published the frames of both segments are asked from the robot, at most
  ``frames_max_in_flight`` requests at a time, each asked again if unanswered within
  ``frames_timeout_s`` (:mod:`pref_rl_learner.ros.frames`). A side the robot has no frames
  for (refused, unusable, unanswered, no service) is logged and counted, and its query goes
  out without them; the summary reports the fraction of queries with frames on both sides.
- ``republish_period_s`` (float, 30): unanswered queries are published again this often
  (a labeller that started late still gets them; answers are idempotent); 0: never.
- ``torch_threads`` (int, 1): torch intra-op threads; 0 leaves torch's default.
- ``updates_per_step``, ``update_chunk``, ``policy_publish_interval``,
  ``train_after_labels``, ``segment_store_capacity``, ``stats_window_episodes``: see
  :class:`~pref_rl_learner.learner.LearnerConfig`.

Topics:

- subscribes ``segments`` (pref_rl_msgs/Segment, STREAM). A malformed segment (lengths that
  disagree with the shapes, NaN/inf, another task or shape, a repeated id) is logged with
  the reason and counted; the node goes on.
- publishes ``queries`` (PreferenceQuery, STREAM): each query is durably stored before it is
  published; ids are ``session<k>-q<j>``.
- publishes ``labels`` (PreferenceLabel, STREAM): every newly stored label, after it is on
  disk (for the segment recorder: the bag holds every acknowledged label).
- publishes ``policy_weights`` (PolicyWeights, LATCHED) every ``policy_publish_interval``
  SAC updates, versions 1, 2, ...
- publishes ``learner_status`` (LearnerStatus, LATCHED) after every ingested segment (its
  ``env_steps`` drives the robot's flow control), every answered label, every new reward
  model (at once, from the worker through a guard condition), and on any change.

Services:

- ``submit_label`` (SubmitLabel; relative, so ``/submit_label`` by default): ``success`` only
  once the label is fsynced; message ``stored`` or ``already stored`` (the identical answer
  again). Unknown query ids, a different answer to an answered query and choices outside
  1..5 are refused with ``success: false`` and the reason.
- ``~/save_checkpoint`` (SaveCheckpoint): write a checkpoint now (``path`` '' : the run
  directory's ``checkpoint.pt``).

Evaluation and the end of a run: the policy is evaluated on the run's target (``goal``) at
the start, every ``eval_interval_steps`` received transitions and at ``total_steps`` (each
logged to ``<run_dir>/eval.csv`` and reported in the log). At ``total_steps`` the node
writes ``summary.json`` (held-out success before and after, queries, labels, reward-model
version, ...) and ``learning_curves.png`` into the run directory, logs the summary, writes
the final checkpoint and exits with status 0 (a launch file marks it ``on_exit="shutdown"``
so the whole session ends with it).

SIGINT/SIGTERM: the worker stops after its current unit of work, a final checkpoint is
written, the node exits with status 0.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

from rclpy.node import Node

from pref_rl_learner.config import ConfigError
from pref_rl_learner.errors import PrefRLError
from pref_rl_learner.learner import LearnerConfig, LearnerCore, LearnerWorker
from pref_rl_learner.learner.evaluation import SessionEvaluator
from pref_rl_learner.pebble.config import PRETRAINED_ALGORITHMS, TrainConfig, load_config
from pref_rl_learner.ros.conversions import (
    label_from_ros,
    label_to_ros,
    query_to_ros,
    segment_from_ros,
    status_to_ros,
    weights_to_ros,
)
from pref_rl_learner.ros.frames import FramesFetcher, check_frames_config
from pref_rl_learner.ros.node_main import NodeExit, run_node
from pref_rl_learner.ros.params import declare_config
from pref_rl_learner.ros.qos import LATCHED, SERVICE, STREAM
from pref_rl_learner.types import LearnerStatus
from pref_rl_msgs.msg import LearnerStatus as LearnerStatusMsg
from pref_rl_msgs.msg import PolicyWeights as PolicyWeightsMsg
from pref_rl_msgs.msg import PreferenceLabel as PreferenceLabelMsg
from pref_rl_msgs.msg import PreferenceQuery as PreferenceQueryMsg
from pref_rl_msgs.msg import Segment as SegmentMsg
from pref_rl_msgs.srv import GetSegmentFrames, SaveCheckpoint, SubmitLabel


@dataclass(frozen=True)
class LearnerNodeConfig:
    """Parameters of the ``learner`` node beyond the learner's (:class:`LearnerConfig`)."""

    config: str = ''
    """TrainConfig YAML file of the run (as for ``pref-rl train``); '' : the defaults."""
    algorithm: str = ''
    """Overrides the config's ``algorithm`` (pebble, init, fewshot, sac); '' : keep it."""
    pretrained_reward: str = ''
    """Overrides the config's ``pretrained_reward``: the reward checkpoint ``init`` and
    ``fewshot`` start from (``pref-rl pretrain``'s best_model.pt, or a ``pref-rl
    reward-train`` output for ``init``); '' : keep it."""
    goal: str = ''
    """Overrides the config's ``goal``, the run's target (the session's ``goal:=``):
    ``eval:i``, ``train:i``, ``x,y[,z]`` or ``person`` (a real arm: no evaluation); '' : keep
    it."""
    run_dir: str = ''
    """Run directory (label store, checkpoint); resumed if it exists; '' : a new one under
    ``runs/``."""
    checkpoint_interval_s: float = 300.0
    """Seconds between periodic checkpoints; 0: only on request and at shutdown."""
    publish_period_s: float = 0.05
    """Seconds between checks for new queries, weights and status changes to publish."""
    frames_service: str = 'robot/get_segment_frames'
    """GetSegmentFrames service asked for the frames of queried segments ('' : never)."""
    frames_timeout_s: float = 1.0
    """A frames request waits at most this long for its answer, then is asked again (or
    its query goes out without those frames)."""
    frames_max_in_flight: int = 8
    """Frames requests in flight at most (below the service queue's depth: a burst beyond
    it is never answered)."""
    frames_retries: int = 1
    """How often an unanswered frames request is sent again."""
    republish_period_s: float = 30.0
    """Publish unanswered queries again this often, seconds (0: only once)."""
    torch_threads: int = 1
    """torch intra-op threads (0: torch's default). 1 is much faster for the small networks
    of the point mass on a CPU: a multi-threaded pool and the executor thread fight over the
    cores and the GIL."""

    def __post_init__(self) -> None:
        for name in ('checkpoint_interval_s', 'frames_timeout_s', 'republish_period_s',
                     'torch_threads'):
            if getattr(self, name) < 0:
                raise ConfigError(f'{name} must be >= 0, got {getattr(self, name)}')
        if not self.publish_period_s > 0:
            raise ConfigError(f'publish_period_s must be > 0, got {self.publish_period_s}')
        if self.frames_service:
            check_frames_config(self.frames_timeout_s, self.frames_max_in_flight,
                                self.frames_retries)


def _train_config(c: LearnerNodeConfig) -> TrainConfig:
    """The run's TrainConfig: the YAML file (or the defaults) with the node's overrides.

    Raises:
        ConfigError: a bad file or value, or a pretrained reward model given to an algorithm
            that would ignore it.
    """
    overrides = {key: value for key, value in (('algorithm', c.algorithm),
                                               ('pretrained_reward', c.pretrained_reward),
                                               ('goal', c.goal))
                 if value}
    train = (load_config(c.config, overrides) if c.config
             else dataclasses.replace(TrainConfig(), **overrides))
    if c.pretrained_reward and train.algorithm not in PRETRAINED_ALGORITHMS:
        raise ConfigError(f'pretrained_reward {c.pretrained_reward!r} is given, but algorithm '
                          f'{train.algorithm} does not use one: use init or fewshot')
    if train.target_known:  # a bad goal is refused at start, not at the first evaluation
        from pref_rl_learner.pebble.tasks import task_suite
        try:
            task_suite().resolve_target(train.task, train.goal)
        except ValueError as err:
            raise ConfigError(f'goal {train.goal!r}: {err}') from err
    return train


class LearnerNode(Node):
    """The ``learner`` node; ``kwargs`` go to :class:`rclpy.node.Node` (parameter overrides)."""

    def __init__(self, **kwargs) -> None:
        super().__init__('learner', **kwargs)
        self.node_config = c = declare_config(self, LearnerNodeConfig)
        self.learner_config = declare_config(self, LearnerConfig)
        if c.torch_threads:
            import torch
            torch.set_num_threads(c.torch_threads)
        train = _train_config(c)
        run_dir = Path(c.run_dir or f'runs/{time.strftime("%Y%m%d-%H%M%S")}-learner')
        # A person's own target (a real arm) cannot be evaluated against: no evaluator.
        self.core = LearnerCore(train, self.learner_config, run_dir,
                                evaluator=(SessionEvaluator(train, run_dir)
                                           if train.target_known else None))
        self.segments_rejected = 0
        self.labels_rejected = 0
        self._last_status: str | None = None
        self._last_republish = time.monotonic()
        self._destroyed = False

        self.query_pub = self.create_publisher(PreferenceQueryMsg, 'queries', STREAM)
        self.label_pub = self.create_publisher(PreferenceLabelMsg, 'labels', STREAM)
        self.weights_pub = self.create_publisher(PolicyWeightsMsg, 'policy_weights', LATCHED)
        self.status_pub = self.create_publisher(LearnerStatusMsg, 'learner_status', LATCHED)
        self.create_subscription(SegmentMsg, 'segments', self.on_segment, STREAM)
        self.create_service(SubmitLabel, 'submit_label', self.on_submit_label)
        self.create_service(SaveCheckpoint, '~/save_checkpoint', self.on_save_checkpoint)
        self.frames_client = (self.create_client(GetSegmentFrames, c.frames_service,
                                                 qos_profile=SERVICE)
                              if c.frames_service else None)
        self.frames = FramesFetcher(self.frames_client, c.frames_timeout_s,
                                    c.frames_max_in_flight, c.frames_retries, self.get_logger())
        if self.core.evaluator is not None:  # the summary reports the frames fraction
            self.core.evaluator.add_figures(self.frames.figures)
        self.create_timer(c.publish_period_s, self.on_publish_timer)
        if c.checkpoint_interval_s:
            self.create_timer(c.checkpoint_interval_s, self.on_checkpoint_timer)
        # A new reward model is announced at once: the worker triggers, the executor publishes.
        self._new_model = self.create_guard_condition(self._on_new_model)
        self.core.on_reward_model = self._new_model.trigger
        self.worker = LearnerWorker(self.core)
        self.worker.start()
        status = self.core.status()
        self.get_logger().info(
            f'{train.algorithm} on {train.task}, target {train.goal}, in {run_dir}: '
            + (f'resumed at {status.env_steps} env steps, ' if self.core.resumed else '')
            + f'{status.labels_stored} labels stored, '
            f'{len(self.core.store.pending_queries())} queries awaiting an answer')
        for note in self.core.notes:
            self.get_logger().warning(note)
        self._rollbacks = dict(self.core.learning.rollbacks)
        self.publish_status()

    # ----------------------------------------------------------------------------- inputs

    def on_segment(self, msg: SegmentMsg) -> None:
        """Ingest a segment; a malformed one is logged with the reason and counted."""
        try:
            self.core.ingest(segment_from_ros(msg))
        except PrefRLError as err:
            self.segments_rejected += 1
            self.get_logger().warning(
                f'segment {msg.segment_id!r} rejected ({self.segments_rejected} so far): '
                f'{type(err).__name__}: {err}')
            return
        self.publish_status()

    def on_submit_label(self, request: SubmitLabel.Request,
                        response: SubmitLabel.Response) -> SubmitLabel.Response:
        """Store a label durably, then answer; refuse invalid or conflicting ones."""
        try:
            label = label_from_ros(request.label)
            response.message = self.core.submit_label(label)
            response.success = True
        except PrefRLError as err:
            self.labels_rejected += 1
            response.success = False
            response.message = f'{type(err).__name__}: {err}'
            self.get_logger().warning(f'label for {request.label.query_id!r} refused: '
                                      f'{response.message}')
            return response
        if response.message == 'stored':  # durable now: the recorder may see it
            self.label_pub.publish(label_to_ros(label))
        self.publish_status()
        return response

    def on_save_checkpoint(self, request: SaveCheckpoint.Request,
                           response: SaveCheckpoint.Response) -> SaveCheckpoint.Response:
        """Write a checkpoint now."""
        try:
            response.path = str(self.core.checkpoint(request.path or None))
        except (PrefRLError, OSError) as err:
            response.success, response.message = False, f'{type(err).__name__}: {err}'
            self.get_logger().error(f'checkpoint failed: {response.message}')
            return response
        response.success, response.message = True, 'checkpoint written'
        return response

    # ---------------------------------------------------------------------------- outputs

    def _on_new_model(self) -> None:
        status = self.publish_status(only_if_changed=True)
        report = self.core.last_report
        if report is not None:
            path = getattr(report, 'path', None)  # few-shot: adapted, or fell back to Adam
            how = '' if path is None else f' ({path} after {report.adapt_steps} adaptation epochs)'
            self.get_logger().info(
                f'reward model v{status.reward_model_version} from {status.labels_stored} '
                f'labels: {report.epochs} epochs, training {report.seconds:.3f} s, fit with '
                f'normaliser and relabelling {self.core.last_fit_seconds:.3f} s, train '
                f'accuracy {report.train_accuracy:.3f}{how}')

    def on_publish_timer(self) -> None:
        """Publish new weights and queries (frames attached when they came), status."""
        if self.worker.error is not None:
            raise NodeExit(1, f'the learner worker failed: {type(self.worker.error).__name__}: '
                              f'{self.worker.error}')
        self._report_progress()
        self._report_rollbacks()
        if self.core.early_checkpoint_due():
            self.on_checkpoint_timer()
        if self.core.finished:
            raise NodeExit(0, 'session finished: ' + _summary_line(self.core.summary or {}))
        weights = self.core.take_weights()
        if weights is not None:
            self.weights_pub.publish(weights_to_ros(weights))
            self.get_logger().info(f'policy version {weights.version} published')
        now = time.monotonic()
        period = self.node_config.republish_period_s
        if period and now - self._last_republish >= period:
            self._last_republish = now
            waiting = self.frames.waiting_ids()
            for query in self.core.pending_queries():
                if query.query_id not in waiting:
                    self.query_pub.publish(query_to_ros(query))
        for query in self.core.take_queries():
            self.frames.add(query)
        for query in self.frames.poll():
            self.query_pub.publish(query_to_ros(query))
        self.publish_status(only_if_changed=True)

    def _report_progress(self) -> None:
        """Log each new held-out evaluation."""
        evaluator = self.core.evaluator
        for row in evaluator.take_new() if evaluator is not None else ():
            self.get_logger().info(
                f"eval on the target at {int(row['step'])} env steps: success "
                f"{row['success_rate']:.3f}, return {row['return']:.1f}; "
                f"{int(row.get('queries', 0))} queries, {int(row.get('labelled', 0))} labels, "
                f"reward model v{int(row.get('reward_model_version', 0))}, "
                f"policy v{int(row.get('policy_version', 0))}")

    def publish_status(self, only_if_changed: bool = False) -> LearnerStatus:
        """Publish ``learner_status`` (with ``only_if_changed``: unless nothing changed)."""
        status = self.core.status()
        key = repr(dataclasses.replace(status, stamp_ns=0))  # repr: NaN equals NaN
        if not only_if_changed or key != self._last_status:
            self._last_status = key
            self.status_pub.publish(status_to_ros(status))
        return status

    def on_checkpoint_timer(self) -> None:
        """Periodic checkpoint (one that cannot be written is logged; the last one stays)."""
        try:
            path = self.core.checkpoint()
        except (PrefRLError, OSError) as err:
            self.get_logger().error(f'checkpoint not written: {type(err).__name__}: {err}')
            return
        self.get_logger().info(f'checkpoint written to {path}')

    def _report_rollbacks(self) -> None:
        """Log updates undone because they produced non-finite values."""
        now = dict(self.core.learning.rollbacks)
        for kind, count in now.items():
            if count > self._rollbacks.get(kind, 0):
                self.get_logger().warning(
                    f'{count - self._rollbacks.get(kind, 0)} {kind} update(s) produced '
                    f'non-finite values and were rolled back ({count} in this run)')
        self._rollbacks = now

    # --------------------------------------------------------------------------- shutdown

    def destroy_node(self) -> None:
        """Stop the worker, write a final checkpoint, release the store (once)."""
        if self._destroyed:
            return
        self._destroyed = True
        self.worker.stop()
        try:
            if self.worker.error is None:
                path = self.core.checkpoint()
                self.get_logger().info(f'final checkpoint written to {path}')
                self.publish_status()
        finally:
            self.core.close()
            super().destroy_node()


def _summary_line(summary: dict) -> str:
    """One line of the end summary for the log."""
    def fig(key: str) -> str:
        value = summary.get(key)
        return 'n/a' if value is None else (f'{value:.3f}' if isinstance(value, float)
                                            else str(value))
    return (f"target {fig('target')}: success {fig('eval_success_before')} -> "
            f"{fig('eval_success_after')} over {fig('eval_episodes')} episodes "
            f"(return {fig('eval_return_before')} -> {fig('eval_return_after')}), "
            f"{fig('env_steps')} env steps, {fig('queries_asked')} queries asked, "
            f"{fig('labels_stored')} labels used, frames on both sides of "
            f"{fig('frames_queries_with_both')} of {fig('frames_queries_asked')} queries "
            f"({fig('frames_fraction')}), reward model v"
            f"{fig('reward_model_version')}, policy v{fig('policy_version')}; "
            f"summary.json and {fig('plot')}")


def main(args: list[str] | None = None) -> int:
    """Entry point of the ``learner`` executable."""
    return run_node(LearnerNode, args)
