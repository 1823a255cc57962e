"""The launcher running real processes: sessions, required nodes, signals, exit statuses."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from pref_rl_learner.testing import process_alive


def launch(path: Path, *arguments: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(['pref-rl', 'launch', str(path), *arguments, '--stop-timeout', '1'],
                          capture_output=True, text=True, timeout=timeout, env=os.environ)


def read_pids(directory: Path, count: int, timeout: float = 20.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids_file = directory / 'pids'
        if pids_file.exists():
            pids = [int(x) for x in pids_file.read_text().split()]
            if len(pids) >= count:
                return pids
        time.sleep(0.05)
    raise AssertionError(f'processes did not record {count} pids in {directory}')


@pytest.mark.slow
def test_two_ros_nodes_from_xml_with_args_params_remaps_and_include(tmp_path):
    """fake_robot publishes on a remapped topic; session_monitor (from an include) counts."""
    summary = tmp_path / 'summary.json'
    (tmp_path / 'monitor.launch.xml').write_text('''<launch>
  <arg name="topic"/>
  <arg name="count"/>
  <node pkg="pref_rl_learner" exec="session_monitor" name="monitor" output="screen"
        on_exit="shutdown">
    <param name="max_segments" value="$(var count)"/>
    <param name="summary_path" value="$(var summary)"/>
    <param name="report_period_s" value="0.5"/>
    <remap from="segments" to="$(var topic)"/>
  </node>
</launch>''')
    (tmp_path / 'session.launch.xml').write_text(f'''<launch>
  <arg name="segments" default="100"/>
  <arg name="summary" default="{summary}"/>
  <let name="topic" value="test/robot_segments"/>
  <node pkg="pref_rl_robot" exec="fake_robot" name="robot_a" output="screen">
    <param name="rate_hz" value="1000.0"/>
    <param name="segment_length" value="10"/>
    <remap from="segments" to="$(var topic)"/>
  </node>
  <include file="$(dirname)/monitor.launch.xml">
    <arg name="topic" value="$(var topic)"/>
    <arg name="count" value="$(var segments)"/>
  </include>
</launch>''')
    result = launch(tmp_path / 'session.launch.xml', 'segments:=15')
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(summary.read_text())
    assert data['segments'] == 15 and data['env_steps'] == 150  # remap + params took effect
    assert data['sources'] == ['/robot_a']  # the name given in the launch file
    assert '[robot_a] ' in result.stdout and '[monitor] ' in result.stdout
    assert 'monitor exited and is marked on_exit="shutdown"' in result.stdout
    assert 'process has finished cleanly' in result.stdout


def test_required_node_dying_ends_the_session_with_failure(tmp_path, test_prefix):
    (tmp_path / 'a.launch.xml').write_text(f'''<launch>
  <node pkg="launch_test_pkg" exec="sleeper" name="bystander" args="{tmp_path}"/>
  <node pkg="launch_test_pkg" exec="crasher" name="vital" output="screen" on_exit="shutdown"/>
</launch>''')
    started = time.monotonic()
    result = launch(tmp_path / 'a.launch.xml')
    assert result.returncode == 1
    assert time.monotonic() - started < 30
    assert '[vital] crashing now' in result.stdout
    assert 'process has died' in result.stdout and 'exit code 3' in result.stdout
    assert 'failed: vital (exit code 3)' in result.stdout
    for pid in read_pids(tmp_path, 2):
        assert not process_alive(pid), pid


def test_unrequired_node_failing_still_fails_the_session(tmp_path, test_prefix):
    (tmp_path / 'a.launch.xml').write_text('''<launch>
  <node pkg="launch_test_pkg" exec="crasher" name="flaky"/>
  <node pkg="launch_test_pkg" exec="echo_args" name="fine"/>
</launch>''')
    result = launch(tmp_path / 'a.launch.xml')
    assert result.returncode == 1
    assert 'failed: flaky (exit code 3)' in result.stdout


def test_clean_exit_of_all_nodes_is_success(tmp_path, test_prefix):
    (tmp_path / 'a.launch.xml').write_text('''<launch>
  <node pkg="launch_test_pkg" exec="echo_args" name="one" output="screen" args="x y"/>
  <node pkg="launch_test_pkg" exec="echo_args" name="one" output="log"/>
</launch>''')
    log_dir = tmp_path / 'logs'
    result = subprocess.run(['pref-rl', 'launch', str(tmp_path / 'a.launch.xml'),
                             '--log-dir', str(log_dir)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout
    assert '[one] ARGS: x y --ros-args -r __node:=one' in result.stdout
    assert '[one-2]' not in result.stdout  # output="log": file only
    assert (log_dir / 'one-2.log').read_text().startswith('ARGS: --ros-args')


def test_a_node_dying_at_start_shows_its_stderr_with_the_default_output(tmp_path,
                                                                       test_prefix):
    """launch logging/__init__.py:370-373: output="log" (the default) still prints stderr."""
    (tmp_path / 'a.launch.xml').write_text('''<launch>
  <node pkg="launch_test_pkg" exec="fails_at_start" name="broken"/>
</launch>''')
    log_dir = tmp_path / 'logs'
    result = subprocess.run(['pref-rl', 'launch', str(tmp_path / 'a.launch.xml'),
                             '--log-dir', str(log_dir)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1
    out = result.stdout
    assert '[broken] ModuleNotFoundError: No module named nope' in out
    assert out.index('No module named nope') < out.index('process has died')
    assert 'ModuleNotFoundError' in (log_dir / 'broken.log').read_text()


def test_respawn_starts_a_node_again_until_its_retries_are_spent(tmp_path, test_prefix):
    """execute_local.py:602-620: respawn on exit while the launch runs, after the delay, at
    most respawn_max_retries times."""
    (tmp_path / 'a.launch.xml').write_text(f'''<launch>
  <node pkg="launch_test_pkg" exec="counter" name="again" args="{tmp_path}" respawn="true"
        respawn_delay="0.2" respawn_max_retries="2"/>
</launch>''')
    result = subprocess.run(['pref-rl', 'launch', str(tmp_path / 'a.launch.xml'),
                             '--log-dir', str(tmp_path / 'logs')], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout
    assert (tmp_path / 'runs').read_text().split() == ['run'] * 3
    assert result.stdout.count('respawning again in 0.2 s') == 2
    assert (tmp_path / 'logs' / 'again.log').read_text().split() == ['counted'] * 3
    # on_exit="shutdown" wins: the first exit ends the session (launch's OnProcessExit).
    (tmp_path / 'runs').unlink()
    (tmp_path / 'b.launch.xml').write_text(f'''<launch>
  <node pkg="launch_test_pkg" exec="counter" name="once" args="{tmp_path}" respawn="true"
        on_exit="shutdown"/>
</launch>''')
    result = subprocess.run(['pref-rl', 'launch', str(tmp_path / 'b.launch.xml'),
                             '--log-dir', str(tmp_path / 'logs')], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0 and 'respawning' not in result.stdout, result.stdout
    assert (tmp_path / 'runs').read_text().split() == ['run']


def test_executables_get_their_environment_and_working_directory(tmp_path, monkeypatch):
    monkeypatch.setenv('PREF_RL_DROPPED', 'present')
    (tmp_path / 'a.launch.xml').write_text(f'''<launch>
  <set_env name="PREF_RL_SET" value="launch-wide"/>
  <unset_env name="PREF_RL_DROPPED"/>
  <executable cmd="bash -c 'echo $PREF_RL_SET/$PREF_RL_OWN/${{PREF_RL_DROPPED:-gone}}/$PWD'"
              name="show" cwd="{tmp_path}" output="screen">
    <env name="PREF_RL_OWN" value="own"/>
  </executable>
</launch>''')
    result = subprocess.run(['pref-rl', 'launch', str(tmp_path / 'a.launch.xml'),
                             '--log-dir', str(tmp_path / 'logs')], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f'[show] launch-wide/own/gone/{tmp_path}' in result.stdout


def test_sigint_leaves_no_process_behind(tmp_path, test_prefix):
    (tmp_path / 'a.launch.xml').write_text(f'''<launch>
  <node pkg="launch_test_pkg" exec="sleeper" name="s1" args="{tmp_path}"/>
  <node pkg="launch_test_pkg" exec="sleeper" name="s2" args="{tmp_path}"/>
  <node pkg="launch_test_pkg" exec="stubborn" name="deaf" args="{tmp_path}"/>
</launch>''')
    proc = subprocess.Popen(['pref-rl', 'launch', str(tmp_path / 'a.launch.xml'),
                             '--stop-timeout', '0.5'], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    pids = read_pids(tmp_path, 5)  # 2 sleepers + their grandchildren + the stubborn one
    assert all(process_alive(pid) for pid in pids)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert 'shutting down: received SIGINT' in out
    assert 'sending SIGTERM to deaf' in out and 'sending SIGKILL to deaf' in out
    deadline = time.monotonic() + 5
    while any(process_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [p for p in pids if process_alive(p)] == []
    assert proc.returncode == 0


def test_cli_reports_unsupported_tag_with_line(tmp_path):
    (tmp_path / 'a.launch.xml').write_text('<launch>\n\n  <timer period="1"/>\n</launch>\n')
    result = subprocess.run(['pref-rl', 'launch', str(tmp_path / 'a.launch.xml')],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"{tmp_path / 'a.launch.xml'}:3: unsupported tag <timer>" in result.stderr


def test_cli_show_args_and_print(tmp_path, test_prefix):
    (tmp_path / 'a.launch.xml').write_text('''<launch>
  <arg name="speed" default="2" description="how fast"/>
  <node pkg="launch_test_pkg" exec="echo_args" name="n" on_exit="shutdown">
    <param name="speed" value="$(var speed)"/>
  </node>
</launch>''')
    shown = subprocess.run(['pref-rl', 'launch', str(tmp_path / 'a.launch.xml'), '-s'],
                           capture_output=True, text=True, timeout=60)
    assert "speed (default: '2')\n    how fast" in shown.stdout
    printed = subprocess.run(['pref-rl', 'launch', str(tmp_path / 'a.launch.xml'), 'speed:=5',
                              '-p'], capture_output=True, text=True, timeout=60)
    assert printed.returncode == 0
    assert '[on_exit=shutdown]' in printed.stdout and '-p speed:=5' in printed.stdout


@pytest.mark.slow
def test_node_with_invalid_parameter_fails_with_a_clear_message(tmp_path):
    (tmp_path / 'a.launch.xml').write_text('''<launch>
  <node pkg="pref_rl_robot" exec="fake_robot" name="bad" output="screen">
    <param name="rate_hz" value="0.0"/>
  </node>
</launch>''')
    result = launch(tmp_path / 'a.launch.xml')
    assert result.returncode == 1
    assert 'ConfigError: segment_length (25) must be >= 1 and rate_hz (0.0) > 0' in result.stdout
    assert 'Traceback' not in result.stdout
    assert 'failed: bad (exit code 2)' in result.stdout
