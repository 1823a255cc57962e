"""Fixtures for launcher tests: a throw-away ament prefix holding small test executables."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from pref_rl_learner.testing import one_torch_thread

TEST_PACKAGE = 'launch_test_pkg'

# name -> bash script. $1 is the directory where processes record their pids.
EXECUTABLES = {
    # Prints its arguments, so tests can see what the launcher passed.
    'echo_args': 'echo "ARGS: $*"\n',
    # Exits with status 3 after a moment.
    'crasher': 'sleep 0.5\necho "crashing now"\nexit 3\n',
    # Runs until signalled, with a grandchild (background jobs of a script ignore SIGINT).
    'sleeper': 'sleep 1000 &\necho $! >> "$1/pids"\necho $$ >> "$1/pids"\necho ready\nwait\n',
    # Dies at start like a Python node with a bad import: traceback on stderr, exit 2.
    'fails_at_start': 'echo "Traceback (most recent call last):" >&2\n'
                      'echo "ModuleNotFoundError: No module named nope" >&2\nexit 2\n',
    # Notes each start in $1/runs, then exits cleanly.
    'counter': 'echo run >> "$1/runs"\necho "counted"\n',
    # Ignores SIGINT and SIGTERM: only SIGKILL ends it.
    'stubborn': "trap '' INT TERM\necho $$ >> \"$1/pids\"\necho ready\n"
                'while true; do sleep 0.1; done\n',
}


@pytest.fixture
def test_prefix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An ament prefix with package ``launch_test_pkg``, prepended to AMENT_PREFIX_PATH."""
    prefix = tmp_path / 'prefix'
    index = prefix / 'share' / 'ament_index' / 'resource_index' / 'packages'
    index.mkdir(parents=True)
    (index / TEST_PACKAGE).touch()
    (prefix / 'share' / TEST_PACKAGE).mkdir()
    lib = prefix / 'lib' / TEST_PACKAGE
    lib.mkdir(parents=True)
    for name, body in EXECUTABLES.items():
        path = lib / name
        path.write_text('#!/bin/bash\n' + body)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv('AMENT_PREFIX_PATH',
                       f"{prefix}{os.pathsep}{os.environ.get('AMENT_PREFIX_PATH', '')}")
    return prefix


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Learning tests run on one torch thread: reproducible figures, and no oversubscription
    of CI's two cores (pytest may share them with a node process)."""
    with one_torch_thread():
        yield
