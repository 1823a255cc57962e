"""Benchmark: label → updated reward model at 300 labels, in the running ROS 2 session, per arm.

The learner and the robot run as their own processes (installed executables); this process is
the labeller: it answers every query at once with the oracle (higher true return wins)
through ``submit_label``, one call at a time, and watches ``learner_status``. For every
feedback session, the latency is the time from the acknowledgement of the session's last
label (the learner trains once a session's queries are all answered) to the first
``learner_status`` with a higher ``reward_model_version``: the wait for the worker's current
chunk of SAC updates, reward training (or adaptation) on every stored label, the normaliser
fit, the relabelling of the whole replay buffer and the status round trip over DDS.

The run is a real one: sessions of 10 queries every 500 env steps with SAC updating at one
update per env step in between, so when 300 labels are stored the replay buffer holds the
~15k transitions of 30 sessions. The figures are over the ``--sessions`` sessions whose last
label brings the store to ``--labels`` (300) or more: 300, 310, ... labels (latency grows with
the labels, so this is the upper end of the window).

Arms (each a ``pref-rl train`` YAML run by the learner node; the budget is set here):

- ``full_retraining`` (PEBBLE, config/bench_latency_pebble.yaml): the ensemble is trained on
  every stored label (Adam, up to ``reward_training.max_epochs`` epochs, stopping at 97%
  training accuracy);
- ``bounded_retraining``: the same YAML with ``reward_training.max_gradient_steps: 20``:
  each session trains the ensemble, warm-started, for at most 20 gradient steps whatever the
  labels (the bound a running session with a person waiting uses). Its learning control: its
  own labels replayed session by session into two ensembles of the same seed, one trained
  as this arm and one as ``full_retraining``, both scored on the labels the run asked after
  the first 300; and its limit: one bounded training at 300 labels timed whole in this
  process against its matrix products replayed alone (``bounded_training_*``);
- ``fewshot`` (config/bench_latency_fewshot.yaml): each session resets the ensemble to the
  MAML meta-initialisation and adapts it with the learned per-parameter learning rates for a
  bounded number of epochs (needs ``runs/pretrain_point_mass/best_model.pt``: ``pref-rl
  collect point_mass`` + ``pref-rl pretrain``; the arm is skipped, and says so, without it).

Limits (issue 18): few-shot p95 ≤ 300 ms, full retraining p95 ≤ 1000 ms; each arm's figures
stand beside its limit and the other arm. After the few-shot arm, its own first 300 labels are
adapted on in this process by the batched adaptation and by the per-member autograd loop it
replaced (:func:`pref_rl_learner.testing.fewshot_adaptation_by_loop`), same seed, same epochs:
wall time of both and the post-adaptation training accuracy of both (they must agree). Then
the machine's limit for the arm at those labels: the matrix products of the full adaptation
and of the fallback's Adam epochs, captured as they run and replayed alone as fp32
``torch.mm`` (``adapt_matmul_limit_ms``, ``fallback_matmul_limit_ms``, their counted GFLOP,
and how many adaptation epochs the 300 ms limit leaves at that rate).

Figures per arm: p50 / p95 / max latency in ms over the measured sessions, the labels at the
first and last of them, how many sessions met the limit, and the latency of every session by
labels stored; where the time went, from the learner's log line of each training: epochs,
training (or adaptation) time, normaliser fit + relabelling, the whole fit (the rest of the
latency is the wait for the worker and the status round trip); the load average and the
machine's fp32 matmul rate at the adaptation's products before and after (the machine is
shared: read the latencies against them); ``fewshot_speedup_p50`` = full retraining p50 /
few-shot p50.

Run: scripts/bench label_latency (or python bench/label_latency.py inside scripts/env.sh);
--quick for a smoke run (30 labels, 3 sessions).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rclpy
from common import RESULTS, machine, percentile, write_result
from rclpy.executors import SingleThreadedExecutor

from pref_rl_learner.ros.conversions import label_to_ros, query_from_ros
from pref_rl_learner.ros.qos import LATCHED, STREAM
from pref_rl_learner.types import Choice, PreferenceLabel
from pref_rl_msgs.msg import LearnerStatus
from pref_rl_msgs.msg import PreferenceQuery as PreferenceQueryMsg
from pref_rl_msgs.srv import SubmitLabel

ROOT = Path(__file__).resolve().parent.parent
INSTALL = ROOT / 'install'
LEARNER = INSTALL / 'pref_rl_learner' / 'lib' / 'pref_rl_learner' / 'learner'
ROBOT = INSTALL / 'pref_rl_robot' / 'lib' / 'pref_rl_robot' / 'robot'
BOUNDED = {'max_gradient_steps': 20}
"""``reward_training`` of the ``bounded_retraining`` arm, chosen by its learning control on
earlier runs' labels (bench/results/label_latency.json's history): 20 steps of 256 pairs held
full retraining's held-out accuracy (0.778 and 0.778; 2 points under it replayed with other
seeds), 10 of 256 lost 3-8 points, and 20 of 128, which cost as much as 10 of 256 in the
session, lost 5."""
ARMS = {
    'full_retraining': (ROOT / 'config' / 'bench_latency_pebble.yaml', {}),
    'bounded_retraining': (ROOT / 'config' / 'bench_latency_pebble.yaml', BOUNDED),
    'fewshot': (ROOT / 'config' / 'bench_latency_fewshot.yaml', {}),
}
"""Each arm's train YAML and its ``reward_training`` overrides."""
LIMIT_P95_MS = {'full_retraining': 1000.0, 'bounded_retraining': 1000.0, 'fewshot': 300.0}
"""Issue 18's limits on the p95 latency at 300 labels."""
PRETRAINED = ROOT / 'runs' / 'pretrain_point_mass' / 'best_model.pt'
PEER = ('full retraining (PEBBLE) against few-shot adaptation and against PEBBLE with the '
        'training bounded to reward_training.max_gradient_steps (bounded_retraining) in the '
        'same session setup, each against its limit (p95 1000 / 300 ms at 300 labels); '
        "bounded_retraining_learning_control_*: the bounded arm's labels replayed with and "
        "without the bound, scored on its later labels; adapt_*: batched adaptation against "
        'the per-member autograd loop it replaced, same labels, seed and epochs')


class Labeller:
    """Answers queries with the oracle and times session end → new reward model."""

    def __init__(self) -> None:
        self.node = rclpy.create_node('bench_labeller')
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.client = self.node.create_client(SubmitLabel, 'submit_label')
        self.answers: dict[str, Choice] = {}
        self.acked: set[str] = set()
        self.in_flight: tuple[str, object] | None = None
        self.version = -1
        self.waiting_since: float | None = None  # last ack of a session, awaiting training
        self.sessions: list[tuple[int, float]] = []  # (labels stored, latency s) per session
        self.node.create_subscription(PreferenceQueryMsg, 'queries', self.on_query, STREAM)
        self.node.create_subscription(LearnerStatus, 'learner_status', self.on_status, LATCHED)

    def on_query(self, msg: PreferenceQueryMsg) -> None:
        query = query_from_ros(msg)
        if query.query_id not in self.answers:
            left, right = query.left.rewards.sum(), query.right.rewards.sum()
            self.answers[query.query_id] = Choice.LEFT if left >= right else Choice.RIGHT

    def on_status(self, msg: LearnerStatus) -> None:
        now = time.monotonic()
        if msg.reward_model_version > self.version >= 0 and self.waiting_since is not None:
            self.sessions.append((len(self.acked), now - self.waiting_since))
            self.waiting_since = None
        self.version = max(self.version, msg.reward_model_version)

    def tick(self) -> None:
        self.executor.spin_once(timeout_sec=0.002)
        if self.in_flight is not None:
            qid, future = self.in_flight
            if not future.done():
                return
            self.in_flight = None
            if future.result().success:
                self.acked.add(qid)
                if not self._todo():
                    self.waiting_since = time.monotonic()
        todo = self._todo()
        if todo and self.client.service_is_ready():
            label = PreferenceLabel(todo[0], self.answers[todo[0]], 'bench')
            request = SubmitLabel.Request(label=label_to_ros(label))
            self.in_flight = (todo[0], self.client.call_async(request))

    def _todo(self) -> list[str]:
        return sorted(q for q in self.answers if q not in self.acked)

    def close(self) -> None:
        self.executor.remove_node(self.node)
        self.node.destroy_node()


def arm_config(arm: str, budget: int, work: Path) -> Path:
    """The arm's YAML with its ``reward_training`` overrides, the feedback budget ``budget``
    and an absolute pretrained path."""
    base, training = ARMS[arm]
    config = yaml.safe_load(base.read_text())
    config['schedule']['total_budget'] = budget
    config['reward_training'] = {**config.get('reward_training', {}), **training}
    if 'pretrained_reward' in config:
        config['pretrained_reward'] = str(ROOT / config['pretrained_reward'])
    path = work / f'{arm}.yaml'
    path.write_text(yaml.safe_dump(config))
    return path


def measure(config: Path, labels: int, sessions: int, timeout_s: float, work: Path,
            run_dir: Path, budget: int) -> list[tuple[int, float]]:
    """Run learner + robot on ``config`` until ``sessions`` sessions ending at ``labels`` or
    more labels are timed (or the ``budget`` is labelled and its last training timed);
    returns (labels stored, latency s) of every session."""
    log = open(work / f'{config.stem}.log', 'w')  # noqa: SIM115 - closed below
    common = ['--ros-args', '-p', f'config:={config}', '-p', f'run_dir:={run_dir}',
              '-p', 'checkpoint_interval_s:=0.0', '-p', "frames_service:=''",
              '-p', 'republish_period_s:=5.0', '-p', 'first_checkpoint_after_seed:=false']
    procs = [subprocess.Popen([str(LEARNER), *common], stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True),
             subprocess.Popen([str(ROBOT), '--ros-args', '-p', 'task:=point_mass',
                               '-p', 'frame_stride:=0', '-p', 'max_steps_ahead:=500',
                               '-p', 'min_subscribers:=1'],
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)]
    labeller = Labeller()
    deadline = time.monotonic() + timeout_s

    def measured() -> int:
        return sum(1 for count, _ in labeller.sessions if count >= labels)
    try:
        def spent() -> bool:  # the budget labelled and its last training timed (or lost)
            waiting = labeller.waiting_since
            return len(labeller.acked) >= budget and (
                waiting is None or time.monotonic() - waiting > 60)
        while measured() < sessions and time.monotonic() < deadline and not spent():
            labeller.tick()
            if any(p.poll() is not None for p in procs):
                raise RuntimeError(f'a node exited: see {log.name}')
    finally:
        labeller.close()
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()
    return labeller.sessions


FIT_LINE = re.compile(r'reward model v\d+ from (\d+) labels: (\d+) epochs, training '
                      r'([\d.]+) s, fit with normaliser and relabelling ([\d.]+) s, train '
                      r'accuracy [\d.na]+(?: \((\w+) after \d+ adaptation epochs\))?')
"""The learner's log line of each new reward model (ros/learner.py)."""


def learner_fits(log: Path) -> dict[int, tuple[int, float, float, str | None]]:
    """(epochs, training s, whole fit s, few-shot path) of each training by labels stored,
    from the learner's log."""
    fits = {}
    for match in FIT_LINE.finditer(log.read_text()):
        fits[int(match[1])] = (int(match[2]), float(match[3]), float(match[4]), match[5])
    return fits


def summary(arm: str, timed: list[tuple[int, float]], labels: int,
            fits: dict[int, tuple[int, float, float, str | None]]) -> dict:
    """An arm's figures over the sessions at ``labels`` or more; ``fits``: the learner's own
    account of each training (where the latency went)."""
    curve = [[count, round(1000 * s, 1)] for count, s in timed]
    at = sorted(ms for count, ms in curve if count >= labels)
    figures: dict = {'sessions': len(at), 'latency_ms_vs_labels': curve,
                     'limit_p95_ms': LIMIT_P95_MS[arm]}
    if not at:
        return figures
    counts = [count for count, _ in curve if count >= labels]
    p95 = percentile(at, 95)
    figures.update({
        'p50_ms': round(percentile(at, 50), 1), 'p95_ms': round(p95, 1),
        'max_ms': round(at[-1], 1), 'labels_first': counts[0], 'labels_last': counts[-1],
        'sessions_within_limit': sum(1 for ms in at if ms <= LIMIT_P95_MS[arm]),
        'meets_limit_p95': p95 <= LIMIT_P95_MS[arm]})
    own = [fits[count] for count in counts if count in fits]
    if own:
        training = [1000 * t for _, t, _, _ in own]
        fit = [1000 * f for _, _, f, _ in own]
        paths = [path for *_, path in own if path is not None]
        if paths:
            figures['paths'] = {path: paths.count(path) for path in sorted(set(paths))}
        figures.update({
            'epochs_p50': percentile([e for e, *_ in own], 50),
            'training_p50_ms': round(percentile(training, 50), 1),
            'training_p95_ms': round(percentile(training, 95), 1),
            'normaliser_and_relabel_p50_ms': round(percentile(
                [f - t for f, t in zip(fit, training, strict=True)], 50), 1),
            'fit_p50_ms': round(percentile(fit, 50), 1),
            'fit_p95_ms': round(percentile(fit, 95), 1)})
    return figures


def machine_state() -> dict:
    """The 1-minute load average and the fp32 matmul rate on one thread at the reward
    network's hidden-layer product (a training batch of 256 pairs of 10 steps x 128 x 128):
    how much of the shared machine the run had."""
    from common import gemm_flop, gemm_replay

    from pref_rl_learner.testing import one_torch_thread

    shapes = [(5120, 128, 128)] * 10
    run = gemm_replay(shapes)
    with one_torch_thread():
        run(2)
        best = float('inf')
        for _ in range(5):
            start = time.perf_counter()
            run(4)
            best = min(best, (time.perf_counter() - start) / 4)
    return {'load_average_1min': round(os.getloadavg()[0], 2),
            'matmul_gflop_per_s': round(gemm_flop(shapes) / best / 1e9, 1)}


def adaptation_peer(run_dir: Path, config: Path, labels: int, repeats: int) -> dict:
    """Batched few-shot adaptation against the per-member autograd loop it replaced, on the
    few-shot arm's own first ``labels`` labels: same prior, seed and epochs (the session's
    own maximum, every epoch taken), in this process on one thread."""
    from pref_rl_learner.config import from_mapping
    from pref_rl_learner.fewshot.arms import make_reward_learning
    from pref_rl_learner.pebble.config import TrainConfig
    from pref_rl_learner.pebble.reward_learning import run_store_config
    from pref_rl_learner.pebble.tasks import task_suite
    from pref_rl_learner.preferences.store import PreferenceStore
    from pref_rl_learner.testing import fewshot_adaptation_by_loop, one_torch_thread

    train_config = from_mapping(TrainConfig, yaml.safe_load(config.read_text()))
    spec = task_suite().task_spec(train_config.task)
    shape, action_dim = tuple(spec.observation_shape), int(spec.action_dim)
    store_config = run_store_config(train_config.store, train_config.reward_training,
                                    train_config.seed)
    with PreferenceStore.open(run_dir / 'preferences', store_config) as store:
        batch, _ = store.preference_batches()
    batch = type(batch)(*(field[:labels] for field in batch))
    epochs = train_config.fewshot.adapt_max_steps
    forced = replace(train_config, fewshot=replace(
        train_config.fewshot, adapt_min_steps=epochs, fallback=False))
    times = {'batched': [], 'loop': []}
    accuracy = {}
    with one_torch_thread():
        for _ in range(repeats):
            for kind in times:  # interleaved: both see the same machine
                _, trainer = make_reward_learning(forced, shape, action_dim)
                start = time.process_time()  # CPU time: the machine is shared
                if kind == 'batched':
                    report = trainer.train(batch)
                    accuracy[kind] = list(report.member_train_accuracy)
                else:
                    _, _, accuracy[kind] = fewshot_adaptation_by_loop(trainer, batch)
                times[kind].append(time.process_time() - start)
    best = {kind: min(values) for kind, values in times.items()}
    floor = matmul_floor(forced, shape, action_dim, batch, repeats)
    return {**floor, 'adapt_labels': batch.num_pairs, 'adapt_epochs': epochs,
            'adapt_repeats': repeats,
            'adapt_clock': 'process_cpu_time',
            'adapt_batched_ms': round(1000 * best['batched'], 1),
            'adapt_loop_ms': round(1000 * best['loop'], 1),
            'adapt_speedup_batched_vs_loop': round(best['loop'] / best['batched'], 2),
            'adapt_batched_fraction_of_matmul_limit': round(
                floor['adapt_matmul_limit_ms'] / (1000 * best['batched']), 3),
            'adapt_batched_member_accuracy': [round(a, 4) for a in accuracy['batched']],
            'adapt_loop_member_accuracy': [round(a, 4) for a in accuracy['loop']]}


def learning_control(run_dir: Path, config: Path, full: Path, labels: int,
                     per_session: int, repeats: int) -> dict:
    """What bounding costs in learning: the bounded arm's own labels replayed in its sessions
    (``per_session`` more each, up to ``labels``) into two ensembles of the same seed, one
    trained as the arm (``config``: at most ``max_gradient_steps`` steps a session,
    warm-started), one as full retraining (the ``reward_training`` of ``full``); both scored
    on the labels the run asked after ``labels`` (held out: neither trained on them). Then
    :func:`training_limit` of the bounded training at ``labels`` labels."""
    from pref_rl_learner.config import from_mapping
    from pref_rl_learner.pebble.config import TrainConfig
    from pref_rl_learner.pebble.reward_learning import run_store_config
    from pref_rl_learner.preferences.store import PreferenceStore
    from pref_rl_learner.reward import RewardEnsemble, RewardTrainer
    from pref_rl_learner.testing import one_torch_thread

    train_config = from_mapping(TrainConfig, yaml.safe_load(config.read_text()))
    store_config = run_store_config(train_config.store, train_config.reward_training,
                                    train_config.seed)
    with PreferenceStore.open(run_dir / 'preferences', store_config) as store:
        batch, _ = store.preference_batches()
    held_out = type(batch)(*(field[labels:] for field in batch))
    if held_out.num_pairs == 0:
        return {'learning_control_skipped': f'no label beyond the first {labels}'}
    shape, action_dim = batch.left_observations.shape[2:], batch.left_actions.shape[2]
    out = {'learning_control_held_out_labels': held_out.num_pairs}
    full_training = from_mapping(TrainConfig, yaml.safe_load(full.read_text())).reward_training
    with one_torch_thread():
        for name, training in (('bounded', train_config.reward_training),
                               ('full', full_training)):
            model = RewardEnsemble(tuple(shape), int(action_dim), train_config.reward_model,
                                   seed=train_config.seed)
            trainer = RewardTrainer(model, training, seed=train_config.seed)
            steps, start = 0, time.process_time()
            for count in range(per_session, labels + 1, per_session):
                steps += trainer.train(type(batch)(*(f[:count] for f in batch))).gradient_steps
            seconds = time.process_time() - start
            out.update({f'learning_control_{name}_held_out_accuracy': round(
                            trainer.evaluate(held_out)[1], 3),
                        f'learning_control_{name}_gradient_steps': steps,
                        f'learning_control_{name}_cpu_s': round(seconds, 1)})
            if name == 'bounded':
                out.update(training_limit(trainer, type(batch)(*(f[:labels] for f in batch)),
                                          repeats))
    return out


def training_limit(trainer, batch, repeats: int) -> dict:
    """The machine's limit for one bounded training at ``batch``'s labels: its matrix
    products (every one of ``max_gradient_steps`` steps) captured as they run and replayed
    alone as fp32 ``torch.mm`` on one thread, against the same training timed whole."""
    from common import capture_gemms, gemm_flop

    from pref_rl_learner.reward.training import RewardTrainer

    training = replace(trainer.config, target_accuracy=None)
    bounded = RewardTrainer(trainer.model, training)
    shapes = capture_gemms(lambda: bounded.train(batch))
    whole = []
    for _ in range(repeats):
        start = time.process_time()
        bounded.train(batch)
        whole.append(time.process_time() - start)
    limit_ms = _replay_ms(shapes, repeats)
    return {'bounded_training_counted_gflop': round(gemm_flop(shapes) / 1e9, 1),
            'bounded_training_matmul_limit_ms': limit_ms,
            'bounded_training_in_process_ms': round(1000 * min(whole), 1),
            'bounded_training_fraction_of_matmul_limit': round(
                limit_ms / (1000 * min(whole)), 3)}


def _replay_ms(shapes, repeats: int) -> float:
    """Best of ``repeats`` process-CPU milliseconds of ``shapes`` replayed as fp32
    ``torch.mm`` (:func:`common.gemm_replay`, one warm-up first; call on one thread)."""
    from common import gemm_replay

    run = gemm_replay(shapes)
    run(1)
    seconds = []
    for _ in range(repeats):
        start = time.process_time()
        run(1)
        seconds.append(time.process_time() - start)
    return round(1000 * min(seconds), 1)


def matmul_floor(forced, shape: tuple[int, ...], action_dim: int, batch, repeats: int) -> dict:
    """The machine's limit for the few-shot arm at these labels: the matrix products of a
    full adaptation (every epoch, as ``forced``) and of the fallback's Adam training (every
    one of ``reward_training.max_epochs`` epochs), captured as they run and replayed alone as
    fp32 ``torch.mm`` on one thread. No code that does this work can take less time here;
    against the 300 ms limit it says how many epochs the limit leaves."""
    from common import capture_gemms, gemm_flop

    from pref_rl_learner.fewshot.arms import make_reward_learning
    from pref_rl_learner.reward.training import RewardTrainer
    from pref_rl_learner.testing import one_torch_thread

    _, trainer = make_reward_learning(forced, shape, action_dim)
    reports = []
    adapt = capture_gemms(lambda: reports.append(trainer.train(batch)))
    training = replace(forced.reward_training, target_accuracy=None)
    fallback = capture_gemms(lambda: RewardTrainer(trainer.model, training).train(batch))
    out = {}
    with one_torch_thread():
        for name, shapes in (('adapt', adapt), ('fallback', fallback)):
            out[f'{name}_counted_gflop'] = round(gemm_flop(shapes) / 1e9, 1)
            out[f'{name}_matmul_limit_ms'] = _replay_ms(shapes, repeats)
    epochs = reports[0].adapt_steps  # every one of adapt_max_steps unless it blew up
    out['adapt_epochs_counted'] = epochs
    out['fallback_epochs_counted'] = training.max_epochs
    out['adapt_epochs_within_300ms_at_matmul_limit'] = round(
        epochs * 300 / out['adapt_matmul_limit_ms'], 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--labels', type=int, default=300,
                        help='sessions ending at this many stored labels or more are measured')
    parser.add_argument('--sessions', type=int, default=10, help='measured sessions per arm')
    parser.add_argument('--timeout', type=float, default=1500.0, help='seconds per arm')
    parser.add_argument('--arms', nargs='+', choices=list(ARMS), default=list(ARMS))
    parser.add_argument('--repeats', type=int, default=3,
                        help='timed repeats of the in-process adaptation comparison')
    parser.add_argument('--adaptation-peer', action=argparse.BooleanOptionalAction,
                        default=True, help='time batched adaptation against the loop')
    parser.add_argument('--before', type=Path,
                        help="a label_latency.json of an earlier commit: its arms' figures are "
                             'kept as before_* (the same benchmark on the code before)')
    parser.add_argument('--peer-from', type=Path, metavar='WORK',
                        help="only the adaptation comparison, on the few-shot arm of an earlier "
                             "run's work directory (printed by that run): its figures replace "
                             'the adapt_* ones in bench/results/label_latency.json')
    parser.add_argument('--control-from', type=Path, metavar='WORK',
                        help="only the bounded arm's learning control and training limit, on "
                             "an earlier run's work directory (printed by that run): they "
                             'replace the bounded_retraining_learning_control_* and '
                             'bounded_retraining_bounded_training_* figures')
    parser.add_argument('--quick', action='store_true')
    args = parser.parse_args()
    if args.control_from is not None:
        path = RESULTS / 'label_latency.json'
        result = json.loads(path.read_text())
        control = learning_control(
            args.control_from / 'bounded_retraining',
            args.control_from / 'bounded_retraining.yaml',
            arm_config('full_retraining', result['feedback_budget'], args.control_from),
            result['labels'], result['labels_per_session'], args.repeats)
        print(f'[label_latency] bounded_retraining: {control}', flush=True)
        result.update({f'bounded_retraining_{key}': value for key, value in control.items()})
        result['bounded_retraining_control_commit'] = machine()['commit']
        path.write_text(json.dumps(result, indent=2) + '\n')
        return
    if args.peer_from is not None:
        path = RESULTS / 'label_latency.json'
        result = json.loads(path.read_text())
        peer = adaptation_peer(args.peer_from / 'fewshot',
                               args.peer_from / 'fewshot.yaml', result['labels'],
                               args.repeats)
        print(f'[label_latency] adaptation: {peer}', flush=True)
        result.update(peer)
        result['adapt_commit'] = machine()['commit']
        path.write_text(json.dumps(result, indent=2) + '\n')
        return
    if args.quick:
        args.labels, args.sessions, args.repeats = 30, 3, 1
    per_session = yaml.safe_load(ARMS['fewshot'][0].read_text())['schedule'][
        'queries_per_session']
    budget = args.labels + per_session * (args.sessions - 1)
    work = Path(tempfile.mkdtemp(prefix='pref-rl-label-latency-'))
    print(f'[label_latency] work directory {work}', flush=True)
    rclpy.init()
    figures: dict = {'peer': PEER, 'labels': args.labels, 'sessions_per_arm': args.sessions,
                     'labels_per_session': per_session, 'feedback_budget': budget}
    try:
        for arm in args.arms:
            if arm == 'fewshot' and not PRETRAINED.exists():
                print(f'[label_latency] {arm}: skipped, {PRETRAINED} missing', flush=True)
                figures[f'{arm}_skipped'] = f'{PRETRAINED.relative_to(ROOT)} missing'
                continue
            config = arm_config(arm, budget, work)
            run_dir = work / arm
            figures.update({f'{arm}_{key}_before': value
                            for key, value in machine_state().items()})
            timed = measure(config, args.labels, args.sessions, args.timeout, work, run_dir,
                            budget)
            figures.update({f'{arm}_{key}_after': value
                            for key, value in machine_state().items()})
            result = summary(arm, timed, args.labels,
                             learner_fits(work / f'{config.stem}.log'))
            print(f'[label_latency] {arm}: {result}', flush=True)
            figures.update({f'{arm}_{key}': value for key, value in result.items()})
            figures[f'{arm}_commit'] = machine()['commit']
            figures[f'{arm}_reward_training_overrides'] = ARMS[arm][1]
            if arm == 'bounded_retraining':
                control = learning_control(run_dir, config,
                                           arm_config('full_retraining', budget, work),
                                           args.labels, per_session, args.repeats)
                print(f'[label_latency] {arm}: {control}', flush=True)
                figures.update({f'{arm}_{key}': value for key, value in control.items()})
            if arm == 'fewshot' and args.adaptation_peer:
                peer = adaptation_peer(run_dir, config, args.labels, args.repeats)
                print(f'[label_latency] adaptation: {peer}', flush=True)
                figures.update(peer)
    finally:
        rclpy.shutdown()
    if figures.get('fewshot_p50_ms') and figures.get('full_retraining_p50_ms'):
        figures['fewshot_speedup_p50'] = round(figures['full_retraining_p50_ms']
                                               / figures['fewshot_p50_ms'], 2)
    if args.before is not None:
        before = json.loads(args.before.read_text())
        figures['before_commit'] = before['machine']['commit']
        figures.update({f'before_{key}': value for key, value in before.items()
                        if key.startswith(tuple(ARMS)) and 'latency_ms_vs' not in key})
    if args.quick:
        print(figures)
        return
    previous = RESULTS / 'label_latency.json'
    if set(args.arms) != set(ARMS) and previous.exists():
        # A subset of the arms: the others keep their figures (each names its commit).
        earlier = json.loads(previous.read_text())
        others = tuple(a for a in ARMS if a not in args.arms)
        kept = {key: value for key, value in earlier.items()
                if key.startswith((*others, 'adapt_', 'fallback_', 'before_'))}
        for arm in others:
            if any(k.startswith(arm) for k in kept):
                kept.setdefault(f'{arm}_commit', earlier['machine']['commit'])
        figures = {**kept, **figures}
    print(write_result(
        'label_latency', figures,
        'Limits (issue 18): p95 <= 300 ms few-shot, <= 1000 ms full retraining, at 300 '
        'labels. Peer: full retraining (PEBBLE) against few-shot adaptation, same session '
        'setup, same labeller; adapt_*: batched adaptation against the per-member autograd '
        'loop on the same labels. Latency: ack of a session\'s last label -> learner_status '
        'with a newer reward_model_version, over DDS between processes, relabelling of the '
        'whole replay buffer included.'))


if __name__ == '__main__':
    main()
