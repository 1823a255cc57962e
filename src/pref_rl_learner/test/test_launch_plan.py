"""Parsing launch files into plans: substitutions, args, includes, and clear errors."""

from pathlib import Path

import pytest

from pref_rl_learner.errors import LaunchFileError
from pref_rl_learner.launcher import find_package_share, load_launch_file


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_args_lets_params_remaps_and_substitutions(tmp_path, test_prefix, monkeypatch):
    monkeypatch.setenv('PREF_RL_TEST_ENV', 'from-env')
    params = write(tmp_path / 'params.yaml', '/**:\n  ros__parameters: {a: 1}\n')
    launch = write(tmp_path / 'a.launch.xml', '''<launch>
  <arg name="greeting" default="hello" description="what to say"/>
  <arg name="ns" default="robots"/>
  <let name="topic" value="$(var ns)/chatter"/>
  <node pkg="launch_test_pkg" exec="echo_args" name="talker" namespace="$(var ns)"
        output="screen" args="--flag $(var greeting)">
    <param name="greeting" value="$(var greeting) world"/>
    <param name="home" value="$(env PREF_RL_TEST_ENV)"/>
    <param name="fallback" value="$(env PREF_RL_UNSET_VARIABLE dflt)"/>
    <param name="share" value="$(find-pkg-share launch_test_pkg)"/>
    <param from="$(dirname)/params.yaml"/>
    <remap from="chatter" to="$(var topic)"/>
  </node>
</launch>''')
    plan = load_launch_file(launch, {'greeting': 'hi'})
    (node,) = plan.nodes
    assert node.name == 'talker' and node.output == 'screen' and not node.shutdown_on_exit
    assert node.command[0] == str(test_prefix / 'lib' / 'launch_test_pkg' / 'echo_args')
    assert node.command[1:3] == ('--flag', 'hi')
    ros_args = node.command[node.command.index('--ros-args') + 1:]
    assert ros_args == (
        '-r', '__node:=talker', '-r', '__ns:=/robots',
        '-p', 'greeting:=hi world', '-p', 'home:=from-env', '-p', 'fallback:=dflt',
        '-p', f"share:={test_prefix / 'share' / 'launch_test_pkg'}",
        '--params-file', str(params), '-r', 'chatter:=robots/chatter')
    assert [(a.name, a.default, a.description) for a in plan.arguments] == [
        ('greeting', 'hello', 'what to say'), ('ns', 'robots', '')]


def test_include_passes_args_and_if_unless_select_actions(tmp_path, test_prefix):
    write(tmp_path / 'child.launch.xml', '''<launch>
  <arg name="who"/>
  <node pkg="launch_test_pkg" exec="echo_args" name="$(var who)" on_exit="shutdown"/>
</launch>''')
    launch = write(tmp_path / 'parent.launch.xml', '''<launch>
  <arg name="use_child" default="true"/>
  <include file="$(dirname)/child.launch.xml" if="$(var use_child)">
    <arg name="who" value="kid"/>
  </include>
  <node pkg="launch_test_pkg" exec="sleeper" name="never" unless="$(var use_child)"/>
</launch>''')
    (node,) = load_launch_file(launch).nodes
    assert node.name == 'kid' and node.shutdown_on_exit
    (node,) = load_launch_file(launch, {'use_child': 'false'}).nodes
    assert node.name == 'never'


@pytest.mark.parametrize('body, line, expected', [
    ('<launch>\n  <arg name="a" default="1"/>\n  <timer period="1">\n  </timer>\n</launch>', 3,
     'unsupported tag <timer>'),
    ('<launch>\n  <node pkg="launch_test_pkg" exec="echo_args">\n    <foo name="A"/>\n'
     '  </node>\n</launch>', 3, 'unsupported tag <foo> inside <node>'),
    ('<launch>\n\n  <node pkg="launch_test_pkg" exec="echo_args" emulate_tty="true"/>\n'
     '</launch>', 3, 'unsupported attribute(s) emulate_tty on <node>'),
    ('<launch>\n  <let name="x" value="$(command ls)"/>\n</launch>', 2,
     'unsupported substitution $(command)'),
    ('<launch>\n  <let name="x" value="$(var nope)"/>\n</launch>', 2,
     '$(var nope): no such argument'),
    ('<launch>\n  <arg name="needed"/>\n</launch>', 2, "argument 'needed' has no default"),
    ('<launch>\n  <node pkg="no_such_pkg" exec="x"/>\n</launch>', 2,
     "package 'no_such_pkg' not found"),
    ('<launch>\n  <node pkg="launch_test_pkg" exec="nope"/>\n</launch>', 2,
     "has no executable 'nope'"),
    ('<launch>\n  <node pkg="launch_test_pkg" exec="echo_args" if="maybe"/>\n</launch>', 2,
     "'maybe' is not a boolean"),
    ('<launch>\n  <node pkg="launch_test_pkg" exec="echo_args">\n'
     '    <param from="missing.yaml"/>\n  </node>\n</launch>', 3, 'missing.yaml does not exist'),
    ('<launch>\n  <node pkg="launch_test_pkg" exec="echo_args"\n</launch>', 3,
     'not well-formed XML'),
    ('<launch>\n  <include file="other.launch.xml"/>\n</launch>', 2, 'does not exist'),
    ('<root/>', 1, 'root tag is <root>'),
])
def test_errors_name_the_problem_and_the_line(tmp_path, test_prefix, body, line, expected):
    launch = write(tmp_path / 'bad.launch.xml', body)
    with pytest.raises(LaunchFileError) as info:
        load_launch_file(launch)
    message = str(info.value)
    assert f'{launch}:{line}:' in message
    assert expected in message


def test_undeclared_command_line_argument_is_an_error(tmp_path, test_prefix):
    launch = write(tmp_path / 'a.launch.xml', '<launch><arg name="speed" default="1"/></launch>')
    with pytest.raises(LaunchFileError, match=r'argument\(s\) sped not declared.*speed'):
        load_launch_file(launch, {'sped': '2'})


def test_find_package_share_uses_the_ament_index(test_prefix):
    assert find_package_share('launch_test_pkg') == test_prefix / 'share' / 'launch_test_pkg'


@pytest.mark.parametrize('name, text, kind', [
    ('x.launch.xml', 'import launch\n\ndef generate_launch_description(): ...\n',
     'a Python launch file'),
    ('x.launch.xml', 'launch:\n- arg: {name: a}\n', 'a YAML launch file'),
    ('x.launch.xml', 'hello\n', 'not an XML file'),
])
def test_files_of_other_frontends_are_named_by_content(tmp_path, name, text, kind):
    launch = write(tmp_path / name, text)
    with pytest.raises(LaunchFileError, match=f'{kind}.*: pref-rl launch runs only the XML'):
        load_launch_file(launch)


def test_an_xml_file_mentioning_python_launch_files_is_still_xml(tmp_path, test_prefix):
    launch = write(tmp_path / 'a.launch.xml', '<!-- not generate_launch_description -->\n'
                   '<launch><node pkg="launch_test_pkg" exec="echo_args"/></launch>')
    assert [n.name for n in load_launch_file(launch).nodes] == ['echo_args']


def test_show_args_lists_choices_and_a_missing_include_arg_says_where_to_give_it(
        tmp_path, test_prefix, capsys):
    from pref_rl_learner import cli

    child = write(tmp_path / 'child.launch.xml', '<launch><arg name="who"/></launch>')
    launch = write(tmp_path / 'a.launch.xml', f'''<launch>
  <arg name="mode" default="sim" description="where"><choice value="sim"/><choice value="real"/>
  </arg>
  <include file="{child}" if="$(eval &quot;'$(var mode)' == 'real'&quot;)"/>
</launch>''')
    assert cli.main(['launch', str(launch), '-s']) == 0
    assert "mode (default: 'sim', one of: sim, real)\n    where" in capsys.readouterr().out
    with pytest.raises(LaunchFileError, match=r'child\.launch\.xml:1: argument .who. has no '
                       r'default and was not given \(give <arg name="who" value="..."/> in the '
                       r'<include>, or pass who:=VALUE\)'):
        load_launch_file(launch, {'mode': 'real'})


def test_an_error_in_an_include_arg_names_the_including_file(tmp_path, test_prefix):
    (tmp_path / 'sub').mkdir()
    child = write(tmp_path / 'sub' / 'child.launch.xml', '<launch/>')
    launch = write(tmp_path / 'a.launch.xml', f'''<launch>
  <include file="{child}">
    <arg name="x" value="$(var nope)"/>
  </include>
</launch>''')
    with pytest.raises(LaunchFileError, match=rf'{launch}:3: <arg>: \$\(var nope\)'):
        load_launch_file(launch)
