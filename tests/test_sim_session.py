"""The session launch file users run (README command 1), end to end as separate processes."""

import itertools
import json
import os
import subprocess
from pathlib import Path

import pytest

from pref_rl_learner.bag import check_bag, read_segments

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_sim_session_launch_file_runs_to_completion(tmp_path):
    result = subprocess.run(
        ['pref-rl', 'launch', str(ROOT / 'launch' / 'sim_session.launch.xml'), 'segments:=40',
         f'run_dir:={tmp_path}'], capture_output=True, text=True, timeout=180, env=os.environ)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((tmp_path / 'summary.json').read_text())
    assert summary['segments'] == 40
    assert summary['env_steps'] == 40 * 10  # the point mass's segment length
    assert summary['malformed_segments'] == 0
    assert summary['sources'] == ['/robot']
    assert '[robot]' in result.stdout and '[session_monitor]' in result.stdout

    # The recorder closed the bag cleanly: it checks OK and holds at least every segment the
    # monitor counted, contiguous within each episode, from the point-mass task.
    assert check_bag(tmp_path / 'bag').ok
    segments = list(read_segments(tmp_path / 'bag'))
    assert len(segments) >= 40
    assert {s.task for s in segments} == {'point_mass'}
    for before, after in itertools.pairwise(segments):
        if after.episode == before.episode:
            assert after.start_step == before.start_step + before.length


def test_sim_session_declares_its_documented_arguments():
    result = subprocess.run(
        ['pref-rl', 'launch', str(ROOT / 'launch' / 'sim_session.launch.xml'), '--show-args'],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for name in ('run_dir', 'segments', 'task', 'config'):
        assert f'{name} (default:' in result.stdout
