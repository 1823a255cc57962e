"""What an adversarial client and crashes must not break: the checkpoint service's paths,
finite-but-extreme data, non-finite updates, memory under a flood, partial checkpoint files."""

import dataclasses
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from test_learner_core import PACE, Teacher, config, feed, rollout

from pref_rl_learner.checkpoint import CheckpointError, previous_path
from pref_rl_learner.learner import CHECKPOINT_NAME, LearnerCore, SegmentRejectedError
from pref_rl_learner.learner.core import CheckpointPathError


@pytest.fixture(scope='module')
def segments():
    return rollout(1500, seed=0)


def test_save_checkpoint_writes_only_where_a_checkpoint_belongs(tmp_path, segments):
    run = tmp_path / 'run'
    core = LearnerCore(config(), PACE, run)
    feed(core, segments[:80], teacher=Teacher())
    labels = core.store.counts()['labelled']
    assert labels > 0
    log = run / 'preferences' / 'preferences.log'
    before = log.read_bytes()
    (run / 'notes.pt').write_text('not a checkpoint')
    refused = {
        str(log): 'preference store', 'preferences/other.pt': 'preference store',
        str(tmp_path / 'elsewhere.pt'): 'only inside the run directory',
        '../escape.pt': 'only inside the run directory', 'summary.json': 'ends in .pt',
        'notes.pt': 'not a pref-rl checkpoint'}
    for path, reason in refused.items():
        with pytest.raises(CheckpointPathError, match=reason):
            core.checkpoint(path)
    assert log.read_bytes() == before and (run / 'notes.pt').read_text() == 'not a checkpoint'
    assert core.checkpoint('snapshots/s1.pt') == (run / 'snapshots' / 's1.pt').resolve()
    assert core.checkpoint('snapshots/s1.pt')  # overwriting its own checkpoint is fine
    core.close()
    again = LearnerCore(config(), PACE, run)
    assert again.store.counts()['labelled'] == labels  # every acknowledged label is there
    again.close()


def test_extreme_values_are_refused_and_the_run_keeps_training(tmp_path, segments):
    core = LearnerCore(config(), PACE, tmp_path)
    for k, segment in enumerate(segments[:40]):
        poisoned = segment.observations.copy()
        poisoned[0, 0] = 1e20 if k % 2 else -1e20
        with pytest.raises(SegmentRejectedError, match='max_input_magnitude'):
            core.ingest(dataclasses.replace(segment, observations=poisoned))
    bad_action = segments[0].actions.copy()
    bad_action[0, 0] = 3.0
    with pytest.raises(SegmentRejectedError, match=r'outside \[-1, 1\]'):
        core.ingest(dataclasses.replace(segments[0], actions=bad_action))
    with pytest.raises(SegmentRejectedError, match='characters'):
        core.ingest(dataclasses.replace(segments[0], segment_id='x' * 1_000_000))
    feed(core, segments[:120], teacher=Teacher())  # the same segments, unpoisoned, go in
    assert core.status().env_steps == 1200 and core.agent.num_updates > 0
    assert core.learning.finite()
    core.checkpoint()
    core.close()
    resumed = LearnerCore(config(), PACE, tmp_path)
    assert resumed.resumed and resumed.status().env_steps == 1200 and not resumed.notes
    resumed.close()


def test_non_finite_updates_are_rolled_back_never_published_or_saved(tmp_path):
    segments = rollout(3000, seed=0)
    core = LearnerCore(config(), PACE, tmp_path)
    feed(core, segments[:120], teacher=Teacher())
    assert core.learning.verify_agent()
    core.take_weights()
    with torch.no_grad():  # what a diverged gradient step leaves behind
        next(core.agent.actor.parameters()).fill_(float('nan'))
    feed(core, segments[120:300], teacher=Teacher())  # the worker goes on updating
    assert core.learning.rollbacks['sac'] == 1 and core.learning.finite()
    weights = core.take_weights()
    assert weights is not None  # learning went on from the last finite state
    for name, tensor in weights.tensors.items():
        assert np.isfinite(tensor).all(), name
    core.checkpoint()  # and a checkpoint can be written and resumed
    core.close()
    LearnerCore(config(), PACE, tmp_path).close()
    core = LearnerCore(config(), PACE, tmp_path)
    # A diverging reward fit is undone too: the model and its version stay.
    version = core.reward_model.version
    original = core.learning.preferences.trainer.train

    def diverge(train, val=None):
        report = original(train, val)
        with torch.no_grad():
            next(core.reward_model.parameters()).fill_(float('inf'))
        return report

    core.learning.preferences.trainer.train = diverge
    assert core.learning.fit_reward(core.store) is None
    assert core.reward_model.version == version and core.learning.rollbacks['reward'] == 1
    assert core.learning.finite()
    core.close()


def test_an_unusable_newest_checkpoint_resumes_from_the_previous_one(tmp_path, segments):
    core = LearnerCore(config(), PACE, tmp_path)
    feed(core, segments[:60], teacher=Teacher())
    core.checkpoint()
    steps = core.status().env_steps
    feed(core, segments[60:90], teacher=Teacher())
    core.checkpoint()  # the first one is kept as checkpoint.previous.pt
    core.close()
    newest = tmp_path / CHECKPOINT_NAME
    assert previous_path(newest).exists()
    newest.write_bytes(newest.read_bytes()[:1000])  # torn by a crash or a bad disk
    resumed = LearnerCore(config(), PACE, tmp_path)
    assert resumed.status().env_steps == steps
    assert any('resumed from the previous one' in note for note in resumed.notes)
    resumed.close()
    previous_path(newest).write_bytes(b'garbage')
    with pytest.raises(CheckpointError, match='previous checkpoint'):
        LearnerCore(config(), PACE, tmp_path)


def test_partial_files_of_killed_saves_are_removed_and_the_first_checkpoint_is_early(
        tmp_path, segments):
    stale = tmp_path / f'.{CHECKPOINT_NAME}.tmp-999999'
    tmp_path.mkdir(exist_ok=True)
    stale.write_bytes(b'half a checkpoint')
    core = LearnerCore(config(), PACE, tmp_path)
    assert not stale.exists() and 'partial checkpoint' in core.notes[0]
    assert not core.early_checkpoint_due()
    feed(core, segments[:31])  # 310 env steps: past the 300 seed steps
    assert core.early_checkpoint_due()
    core.checkpoint()
    assert not core.early_checkpoint_due()
    core.close()


FLOOD = textwrap.dedent('''
    import json, resource, sys
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    from test_learner_core import PACE, config
    from pref_rl_learner.learner import LearnerCore
    from pref_rl_learner.types import Segment

    core = LearnerCore(config(total_steps=10_000_000), PACE, sys.argv[2])
    rng = np.random.default_rng(0)
    refused, length = 0, 1000

    def segment(i, ident):
        obs = rng.uniform(-1, 1, (length + 1, 4)).astype(np.float32)
        return Segment(segment_id=ident, task='point_mass', observations=obs[:-1],
                       actions=rng.uniform(-1, 1, (length, 2)).astype(np.float32),
                       next_observations=obs[1:], terminated=np.zeros(length, bool),
                       truncated=np.zeros(length, bool),
                       rewards=rng.normal(size=length).astype(np.float32),
                       source_id='flood', episode=i, start_step=0)

    for i in range(3000):  # the worker never runs: pacing holds everything back
        try:
            core.ingest(segment(i, f'seg{i}'))
        except Exception:
            refused += 1
    for i in range(300):
        try:
            core.ingest(segment(i, f'{i}-' + 'x' * 1_000_000))
        except Exception:
            refused += 1
    core.checkpoint()
    status = core.status()
    core.close()
    print(json.dumps({'refused': refused, 'env_steps': status.env_steps,
                      'backlog_full': core.intake.refused_backlog_full,
                      'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
''')


def test_a_flood_of_valid_segments_stays_within_its_memory_budget(tmp_path):
    """3,000 valid 1,000-step segments and 300 with 1 MB ids (the attack that took the
    learner to 2.5 GB): held back or refused, peak RSS under the 1 GB budget."""
    test_dir = str(__import__('pathlib').Path(__file__).parent)
    result = subprocess.run([sys.executable, '-c', FLOOD, test_dir, str(tmp_path / 'run')],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures['refused'] >= 3300 - 25 and figures['backlog_full'] >= 2970
    assert figures['peak_rss_mb'] < 1024, figures
    assert (tmp_path / 'run' / CHECKPOINT_NAME).stat().st_size < 100 * 2**20
    np.testing.assert_array_less(0, figures['env_steps'])
