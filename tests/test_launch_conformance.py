"""Launch conformance: the files in ``tests/launch_conformance/`` against what ``ros2 launch``
would produce, derived from the ``ros2/launch`` and ``ros2/launch_ros`` sources (the file and
line of each rule are cited next to its expected value; line numbers are those of the
rolling branch read on 2026-12-01, launch 02595ba, launch_ros f9ab937).

Each file is resolved by ``pref-rl launch FILE -p``, whose shell-quoted lines are parsed
back into node name, namespace, effective parameters (parameter files, then ``-p`` rules, in
command-line order, as rcl applies them), remaps, argv and environment. The include and
namespaces files also run, as real rclpy nodes that write down the name, namespace,
parameters and resolved topic names rcl gave them: the running graph must agree with the
same expectations.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from pref_rl_learner import cli

HERE = Path(__file__).resolve().parent / 'launch_conformance'
PACKAGE = 'conformance_pkg'

PROBE = '''
import json, os, sys
import rclpy
from rclpy.node import Node

rclpy.init(args=sys.argv)
node = Node('probe', automatically_declare_parameters_from_overrides=True)
names = [n for n in node.list_parameters([], 0).names
         if n not in ('use_sim_time', 'start_type_description_service')]
out = {
    'name': node.get_name(), 'namespace': node.get_namespace(),
    'parameters': {n: node.get_parameter(n).value for n in sorted(names)},
    'topics': {t: node.resolve_topic_name(t) for t in ('chatter', 'scan')},
}
path = os.path.join(os.environ['PROBE_DIR'], node.get_fully_qualified_name().replace('/', '_')
                    + '.json')
with open(path, 'w') as f:
    json.dump(out, f)
node.destroy_node()
rclpy.try_shutdown()
'''


@pytest.fixture
def prefix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An ament prefix with ``conformance_pkg`` and its ``probe`` node (a real rclpy node)."""
    prefix = tmp_path / 'prefix'
    index = prefix / 'share' / 'ament_index' / 'resource_index' / 'packages'
    index.mkdir(parents=True)
    (index / PACKAGE).touch()
    (prefix / 'share' / PACKAGE).mkdir()
    (prefix / 'lib' / PACKAGE).mkdir(parents=True)
    probe = prefix / 'lib' / PACKAGE / 'probe'
    probe.write_text(f'#!{sys.executable}\n{PROBE}')
    probe.chmod(probe.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv('AMENT_PREFIX_PATH',
                       f"{prefix}{os.pathsep}{os.environ.get('AMENT_PREFIX_PATH', '')}")
    return prefix


@dataclass
class Process:
    """One line of ``pref-rl launch -p``, parsed back."""

    label: str
    flags: str
    argv: list[str]
    cwd: str | None = None
    env: dict[str, str | None] = field(default_factory=dict)
    node_name: str | None = None
    namespace: str = '/'
    parameters: dict = field(default_factory=dict)
    remaps: list[tuple[str, str]] = field(default_factory=list)


def _flatten(mapping: dict, prefix: str = '') -> dict:
    out = {}
    for key, value in mapping.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f'{prefix}{key}.'))
        else:
            out[prefix + key] = value
    return out


def parse_line(line: str) -> Process:
    label, _, command = line.partition(': ')
    name, _, flags = label.partition(' ')
    words = shlex.split(command)
    process = Process(name, flags, [])
    if words[0] == 'cd':
        process.cwd, words = words[1], words[3:]
    if words[0] == 'env':
        words = words[1:]
        while words[0] == '-u' or '=' in words[0]:
            if words[0] == '-u':
                process.env[words[1]], words = None, words[2:]
            else:
                key, _, value = words[0].partition('=')
                process.env[key], words = value, words[1:]
    process.argv = words
    ros = False
    i = 0
    while i < len(words):
        word = words[i]
        if word == '--ros-args':
            ros = True
        elif ros and word == '-r':
            source, _, target = words[i + 1].partition(':=')
            if source == '__node':
                process.node_name = target
            elif source == '__ns':
                process.namespace = target
            else:
                process.remaps.append((source, target))
            i += 1
        elif ros and word == '-p':
            key, _, value = words[i + 1].partition(':=')
            # launch utilities/type_utils.py:234-255: an untyped <param value> is read with
            # yaml.safe_load (launch_ros writes it to a parameter file); rcl reads -p as YAML.
            process.parameters[key] = yaml.safe_load(value)
            i += 1
        elif ros and word == '--params-file':
            for _, section in yaml.safe_load(Path(words[i + 1]).read_text()).items():
                process.parameters.update(_flatten(section['ros__parameters']))
            i += 1
        i += 1
    return process


def resolve(path: Path, capsys, *arguments: str) -> dict[str, Process]:
    assert cli.main(['launch', str(path), '-p', *arguments]) == 0
    out = capsys.readouterr().out
    processes = [parse_line(line) for line in out.splitlines()]
    return {p.label: p for p in processes}


INCLUDED = str(HERE / 'included')
INCLUDE_ARGS = {
    # include_launch_description.py:179-185: each <arg> becomes SetLaunchConfiguration(name,
    # value), run in order before the included description: a later <arg> sees an earlier
    # one (shade = dark_ + the new color), so inside: blue / dark_blue.
    # frontend: ThisLaunchFileDir = current_launch_file_directory, scoped to the included
    # file (ros2/launch#862), so $(dirname) inside is included/.
    # Node.parse_nested_parameters (launch_ros node.py:243-300): a <param from> file's values.
    'paint': ('/', {'color': 'blue', 'shade': 'dark_blue', 'here': INCLUDED, 'coats': 2,
                    'brush.width': 0.5}, []),
    # No push/pop around an include (include_launch_description.py:184-185 returns the
    # actions into the current context): the include's values, the child's <let finish> and
    # its <arg who> default (declare_launch_argument.py:203-215 sets the default into the
    # context) persist after it. include_launch_description.py:150-155 set the included
    # file's locals before the SetLaunchConfiguration actions run (:181-185): $(dirname) in
    # an <arg> value is the included file's folder.
    'after_include': ('/', {'color': 'blue', 'shade': 'dark_blue', 'finish': 'dark_blue_gloss',
                            'who': 'paint', 'from_dir': INCLUDED}, []),
    'grouped_paint': ('/', {'color': 'green', 'shade': 'light_green', 'here': INCLUDED,
                            'coats': 2, 'brush.width': 0.5}, []),
    # group_action.py:117-126: a <group> (scoped, forwarding by default, :72-73) pushes the
    # launch configurations and pops them after: green and grouped_paint are gone.
    'after_group': ('/', {'color': 'blue', 'who': 'paint', 'here': str(HERE)}, []),
}


def check_nodes(nodes: dict[str, Process], expected: dict) -> None:
    assert list(nodes) == list(expected)
    for name, (namespace, parameters, remaps) in expected.items():
        node = nodes[name]
        assert (node.node_name, node.namespace, node.parameters, node.remaps) == (
            name, namespace, parameters, remaps), name


def test_include_arguments_are_set_in_the_including_scope(prefix, capsys):
    check_nodes(resolve(HERE / 'include_args.launch.xml', capsys), INCLUDE_ARGS)


NAMESPACES = {
    # launch_ros node.py:397-404: no namespace anywhere -> no __ns (the node's default, /).
    'root_node': ('/', {'level': 0}, []),
    # push_ros_namespace.py:67-82 prefixes 'robot' onto no namespace and makes it absolute;
    # set_parameter.py:86-91 appends to global_params, node.py:426-440 passes them first, in
    # order (-p level:=0 then -p level:=1: the last wins); set_remap.py:85-91 and
    # node.py:468-481: global remaps first.
    'driver': ('/robot', {'level': 1}, [('chatter', 'robot_chatter')]),
    # node.py:400-402: a relative node namespace goes under the pushed one
    # (namespace_utils.py prefix_namespace:59-83) ...
    'arm': ('/robot/left', {'level': 1}, [('chatter', 'robot_chatter')]),
    # ... an absolute one replaces it.
    'absolute': ('/elsewhere', {'level': 1}, [('chatter', 'robot_chatter')]),
    # A nested push adds a level; the node's own <param> and <remap> come after the global
    # ones (node.py:443-481).
    'cam': ('/robot/camera', {'level': 2}, [('chatter', 'robot_chatter'), ('scan', '/points')]),
    # The inner group popped its push (push_ros_namespace.py:42: popped by a scoped group).
    'after_inner': ('/robot', {'level': 1}, [('chatter', 'robot_chatter')]),
    'outside': ('/', {'level': 0}, []),
    # group_action.py:137-140: scoped="false" pushes nothing: the namespace leaks out.
    'leaky': ('/leaked', {'level': 0}, []),
    # group_action.py:127-136: forwarding="false" resets the launch configurations (where
    # launch_ros keeps ros_namespace and global_params) to just the <keep>s.
    'fresh': ('/', {'kept': 'from_keep'}, []),
}


def test_namespaces_global_parameters_and_remaps(prefix, capsys):
    check_nodes(resolve(HERE / 'namespaces.launch.xml', capsys), NAMESPACES)


@pytest.mark.slow
@pytest.mark.parametrize('name, expected', [('include_args', INCLUDE_ARGS),
                                            ('namespaces', NAMESPACES)])
def test_files_as_a_running_graph(prefix, tmp_path, name, expected):
    """The same expectations, as rcl resolved them in real nodes."""
    probes = tmp_path / 'probes'
    probes.mkdir()
    env = dict(os.environ, PROBE_DIR=str(probes))
    run = subprocess.run(['pref-rl', 'launch', str(HERE / f'{name}.launch.xml'),
                          '--log-dir', str(tmp_path / 'log')],
                         capture_output=True, text=True, timeout=240, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert len(list(probes.iterdir())) == len(expected)
    for node, (namespace, parameters, remaps) in expected.items():
        fqn = namespace.rstrip('/') + '/' + node
        report = json.loads((probes / (fqn.replace('/', '_') + '.json')).read_text())
        assert report['name'] == node and report['namespace'] == namespace, fqn
        assert report['parameters'] == parameters, fqn
        rules = dict(remaps)
        expected_chatter = rules.get('chatter', 'chatter')
        expected_scan = rules.get('scan', 'scan')
        base = namespace.rstrip('/')
        for topic, target in (('chatter', expected_chatter), ('scan', expected_scan)):
            want = target if target.startswith('/') else f'{base}/{target}'
            assert report['topics'][topic] == want, (fqn, topic)


def test_substitutions_arguments_and_conditions(prefix, capsys, tmp_path, monkeypatch):
    monkeypatch.delenv('PREF_RL_CONFORMANCE_UNSET', raising=False)
    # A symlinked launch file (colcon --symlink-install): $(dirname) is the link's folder,
    # include_launch_description.py:113-124 (os.path.abspath, which keeps symlinks).
    linked = tmp_path / 'linked'
    linked.mkdir()
    (linked / 'substitutions.launch.xml').symlink_to(HERE / 'substitutions.launch.xml')
    nodes = resolve(linked / 'substitutions.launch.xml', capsys)
    # if/unless (condition of every action): 'sim' is not 'real', 3 > 2.
    assert list(nodes) == ['subs']
    params = nodes['subs'].parameters
    anon = params.pop('anon')
    assert params == {
        # grammar.lark:30: '' is a quoted template with no fragment: the empty string;
        # environment_variable.py:88-98: the default when unset.
        'empty': 'xy',
        # grammar.lark:12,30: a quoted argument keeps its spaces.
        'spaced': 'two words',
        # launch_configuration.py:68-76: $(var name default).
        'fallback': 'var default',
        # parse_substitution.py:33-35: a backslash escapes the next character.
        'escaped': '$(var mode)',
        # python_expression.py:118: str(eval(...)), math names bare or as math.X (:107-111).
        'product': 7.5, 'is_sim': True, 'floor': 4,
        # launch_ros substitutions/find_package.py: share/<pkg> and the prefix.
        'share': str(prefix / 'share' / PACKAGE), 'prefix': str(prefix),
        'here': str(linked),
        # anon_name.py:59-64: one name per id in the launch configurations.
        'anon_again': anon,
        # node.py:247-275: nested <param>s are joined with '.'.
        'nested.depth': 2,
    }
    # anon_name.py:66-77: id_host_pid_random, '.', '-', ':' replaced by '_'.
    assert re.fullmatch(r'cam_[A-Za-z0-9_]+_\d+_\d+', anon)
    nodes = resolve(HERE / 'substitutions.launch.xml', capsys, 'mode:=real', 'scale:=1')
    assert list(nodes) == ['subs', 'only_real', 'small_scale']
    assert nodes['subs'].parameters['product'] == 2.5
    # declare_launch_argument.py:216-223: a value outside the choices is an error.
    assert cli.main(['launch', str(HERE / 'substitutions.launch.xml'), '-p', 'mode:=sail']) == 2
    err = capsys.readouterr().err
    assert "argument 'mode' is 'sail', not one of its choices ['sim', 'real']" in err


def test_process_attributes_command_lines_and_environment(prefix, capsys, monkeypatch):
    monkeypatch.setenv('PREF_RL_CONFORMANCE_PRESET', 'before')
    monkeypatch.delenv('PREF_RL_CONFORMANCE_SET', raising=False)
    nodes = resolve(HERE / 'processes.launch.xml', capsys)
    talker, echoer, after = nodes['talker'], nodes['echoer'], nodes['after']
    # execute_process.py:243-302: literal text is split like a shell, a substitution's value
    # stays one argument ('hello world'); node.py:201-213: exe, args, --ros-args ros_args,
    # then the node's own --ros-args; execute_local.py: launch-prefix goes first.
    assert talker.argv == ['nice', '-n', '5', str(prefix / 'lib' / PACKAGE / 'probe'),
                           '--flag', 'hello world', 'tail', '--ros-args', '--log-level', 'warn',
                           '--ros-args', '-r', '__node:=talker']
    # execute_process.py:354-373 respawn / respawn_delay.
    assert talker.flags == '[respawn, delay 2.5 s]'
    # set_environment_variable.py:67-70 and unset: the launch's environment; <env> adds to
    # one process only (execute_process.py:405-416).
    assert talker.env == {'PREF_RL_CONFORMANCE_SET': 'launch-wide',
                          'PREF_RL_CONFORMANCE_NODE': 'only-me',
                          'PREF_RL_CONFORMANCE_PRESET': None}
    assert echoer.argv == ['echo', 'hello world'] and echoer.cwd == '/tmp'
    # group_action.py:117-126: a scoped group pushes and pops the environment too.
    assert echoer.env == {'PREF_RL_CONFORMANCE_SET': 'grouped', 'A': '1',
                          'PREF_RL_CONFORMANCE_PRESET': None}
    assert after.env == {'PREF_RL_CONFORMANCE_SET': 'launch-wide',
                         'PREF_RL_CONFORMANCE_PRESET': None}
    assert after.flags == '[on_exit=shutdown]'
    # An argument after -p (`pref-rl launch FILE -p greeting:=hi`).
    assert resolve(HERE / 'processes.launch.xml', capsys, 'greeting:=hi')['echoer'].argv == [
        'echo', 'hi']


def test_relative_paths_are_taken_from_the_working_directory(prefix, tmp_path, monkeypatch,
                                                             capsys):
    """include_launch_description.py:113-114: os.path.abspath(location), i.e. from the
    working directory, not from the including file."""
    launch = tmp_path / 'relative.launch.xml'
    launch.write_text('<launch><include file="included/paint.launch.xml">'
                      '<arg name="color" value="c"/></include></launch>')
    monkeypatch.chdir(HERE)
    assert list(resolve(launch, capsys)) == ['paint']
    monkeypatch.chdir(tmp_path)
    assert cli.main(['launch', str(launch), '-p']) == 2
    err = capsys.readouterr().err
    assert f'included file {tmp_path}/included/paint.launch.xml does not exist' in err
    assert 'taken from the working directory' in err and '$(dirname)' in err


@pytest.mark.parametrize('name, text, kind', [
    ('robot.launch.py', 'from launch import LaunchDescription\n', 'a Python launch file'),
    ('robot.launch.yaml', 'launch:\n- node: {pkg: a, exec: b}\n', 'a YAML launch file'),
])
def test_other_frontends_are_named(tmp_path, capsys, name, text, kind):
    path = tmp_path / name
    path.write_text(text)
    included = tmp_path / 'outer.launch.xml'
    included.write_text(f'<launch><include file="{path}"/></launch>')
    for target in (path, included):
        assert cli.main(['launch', str(target), '-p']) == 2
        err = capsys.readouterr().err
        assert f'{path}: {kind}' in err and 'only the XML frontend' in err, err


@pytest.mark.parametrize('name', ['sim_session', 'real_session'])
def test_this_repositorys_launch_files_resolve_alike_from_any_directory(name, tmp_path,
                                                                        monkeypatch, capsys):
    """They reach their includes and parameter files through $(dirname), so `ros2 launch`
    (relative paths from the working directory) and this runner agree wherever they run."""
    launch = HERE.parent.parent / 'launch' / f'{name}.launch.xml'
    outputs = []
    for cwd in (launch.parent.parent, tmp_path):
        monkeypatch.chdir(cwd)
        assert cli.main(['launch', str(launch), '-p', 'run_dir:=/tmp/x']) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] and outputs[0].count('\n') == 4
