"""Evaluate the actions of an XML launch file in order, with ``ros2 launch``'s semantics.

State is one :class:`Scope`, as launch keeps it in its ``LaunchContext``: the launch
configurations (``<arg>``, ``<let>``, an include's ``<arg>``), the environment
(``<set_env>``, ``<unset_env>``) and what ``launch_ros`` keeps among the configurations (the
pushed ROS namespace, ``<set_parameter>``'s global parameters, ``<set_remap>``'s rules).
The rules, each from the source that defines it:

- ``<include>``: its ``<arg>``s are ``SetLaunchConfiguration`` actions run in order in the
  *including* scope, then the file's actions run in that same scope: values (and the file's
  ``<let>``s) persist after it (launch ``actions/include_launch_description.py``,
  ``execute``); only ``$(dirname)``/``$(filename)`` are the included file's within it, its
  ``<arg>`` values included, since launch sets those locals before running them
  (ros2/launch#862 scopes them to the include). A relative ``file`` is taken from the
  working directory.
- ``<group scoped forwarding>`` (both default true): scoped pushes configurations and
  environment and pops them after; not forwarding starts from no configuration (but the
  ``<keep>``s) and the launch's initial environment; unscoped changes persist (launch
  ``actions/group_action.py``, ``get_sub_entities``).
- ``<arg>``: keeps a value already set (command line, include), else takes its default, else
  is an error; a value outside its ``<choice>``s is an error (launch
  ``actions/declare_launch_argument.py``, ``execute``).
- ``<push-ros-namespace>`` prefixes a relative namespace onto the current one (launch_ros
  ``actions/push_ros_namespace.py``, ``utilities/namespace_utils.py``); a ``<node>``
  namespace is prefixed likewise and made absolute; global parameters come before the
  node's, global remaps before the node's (launch_ros ``actions/node.py``,
  ``_perform_substitutions``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pref_rl_learner.errors import LaunchFileError
from pref_rl_learner.launcher.ament_index import PackageNotFoundError, find_executable
from pref_rl_learner.launcher.plan import ArgSpec, Element, LaunchPlan, NodeSpec, parse_xml
from pref_rl_learner.launcher.substitutions import (
    SubstitutionError,
    as_bool,
    split_command,
    substitute,
)

_OUTPUTS = {'screen', 'log', 'both'}
_CONDITIONS = {'if', 'unless'}
_PROCESS_ATTRS = {'name', 'output', 'on_exit', 'launch-prefix', 'respawn', 'respawn_delay',
                  'respawn_max_retries', 'cwd'}
_NODE_ATTRS = _PROCESS_ATTRS | {'pkg', 'exec', 'namespace', 'args', 'ros_args'}
_EXECUTABLE_ATTRS = _PROCESS_ATTRS | {'cmd'}
_NAMESPACE = re.compile(r'^/([A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*)?$')


@dataclass
class Scope:
    """What actions read and change (launch's ``LaunchContext``, for what XML reaches)."""

    variables: dict[str, str]
    environment: dict[str, str]
    launch_file: Path
    namespace: str | None = None
    global_params: list[tuple[str, str]] = field(default_factory=list)
    remaps: list[tuple[str, str]] = field(default_factory=list)

    def copy(self) -> Scope:
        """An independent copy (a pushed scope)."""
        return Scope(dict(self.variables), dict(self.environment), self.launch_file,
                     self.namespace, list(self.global_params), list(self.remaps))


def prefix_namespace(base: str | None, ns: str | None) -> str | None:
    """``ns`` under ``base`` unless absolute; trailing ``/`` dropped (launch_ros
    ``utilities/namespace_utils.py``, ``prefix_namespace``)."""
    if base is None and ns is None:
        return None
    if ns is None:
        combined = base
    elif not base or ns.startswith('/'):
        combined = ns
    else:
        combined = ('' if base == '/' else base) + '/' + ns
    assert combined is not None
    return combined if combined == '/' else combined.rstrip('/')


def absolute_namespace(ns: str | None) -> str | None:
    """``ns`` with a leading ``/`` (``make_namespace_absolute``)."""
    if ns is None:
        return None
    return ns if ns.startswith('/') else '/' + ns


class Loader:
    """Runs a launch file's actions; :attr:`nodes` and :attr:`arguments` hold the result."""

    def __init__(self, path: Path, given: dict[str, str]) -> None:
        self.path = path
        self.initial_environment = dict(os.environ)
        self.scope = Scope(dict(given), dict(self.initial_environment), path)
        self.nodes: list[NodeSpec] = []
        self.arguments: dict[str, ArgSpec] = {}
        self._actions: dict[str, Callable[[Element, Scope], None]] = {
            'arg': self._arg, 'let': self._let, 'include': self._include,
            'group': self._group, 'push-ros-namespace': self._push_ros_namespace,
            'push_ros_namespace': self._push_ros_namespace,
            'set_parameter': self._set_parameter, 'set_remap': self._set_remap,
            'set_env': self._set_env, 'unset_env': self._unset_env,
            'node': self._node, 'executable': self._executable,
        }

    def run(self) -> None:
        """Evaluate the top-level file."""
        self._file(self.path, self.scope)

    # ---- helpers -----------------------------------------------------------------------

    def where(self, scope: Scope, el: Element) -> str:
        return f'{scope.launch_file}:{el.line}'

    def sub(self, scope: Scope, el: Element, text: str, at: Path | None = None) -> str:
        """``text`` expanded; an error names ``el``'s line in ``at`` (default: the current
        file)."""
        try:
            return substitute(text, scope)
        except SubstitutionError as err:
            raise LaunchFileError(f'{at or scope.launch_file}:{el.line}: <{el.tag}>: {err}'
                                  ) from None

    def words(self, scope: Scope, el: Element, text: str) -> list[str]:
        try:
            return split_command(text, scope)
        except (SubstitutionError, ValueError) as err:
            raise LaunchFileError(f'{self.where(scope, el)}: <{el.tag}>: {err}') from None

    def flag(self, scope: Scope, el: Element, key: str, default: bool) -> bool:
        if key not in el.attrs:
            return default
        try:
            return as_bool(self.sub(scope, el, el.attrs[key]), f'<{el.tag} {key}>')
        except SubstitutionError as err:
            raise LaunchFileError(f'{self.where(scope, el)}: {err}') from None

    def check(self, scope: Scope, el: Element, allowed: set[str],
              required: frozenset | set = frozenset(), action: bool = True) -> None:
        allowed = allowed | (_CONDITIONS if action else set())
        unknown = sorted(set(el.attrs) - allowed)
        if unknown:
            raise LaunchFileError(
                f"{self.where(scope, el)}: unsupported attribute(s) {', '.join(unknown)} on "
                f"<{el.tag}> (supported: {', '.join(sorted(allowed)) or 'none'})")
        missing = sorted(set(required) - set(el.attrs))
        if missing:
            raise LaunchFileError(f"{self.where(scope, el)}: <{el.tag}> needs "
                                  f"{', '.join(missing)}")

    def no_children(self, scope: Scope, el: Element) -> None:
        if el.children:
            child = el.children[0]
            raise LaunchFileError(f'{scope.launch_file}:{child.line}: unsupported tag '
                                  f'<{child.tag}> inside <{el.tag}>')

    def existing_file(self, scope: Scope, el: Element, text: str, what: str) -> Path:
        """A path as ``ros2 launch`` opens it: a relative one from the working directory."""
        path = Path(os.path.abspath(text))
        if not path.is_file():
            hint = '' if Path(text).is_absolute() else (
                f' (a relative path is taken from the working directory {os.getcwd()}, as '
                'ros2 launch does: write $(dirname)/... for a file next to this one)')
            raise LaunchFileError(f'{self.where(scope, el)}: {what} {path} does not '
                                  f'exist{hint}')
        return path

    # ---- structure ---------------------------------------------------------------------

    def _file(self, path: Path, scope: Scope) -> None:
        root = parse_xml(path)
        if root.tag != 'launch':
            raise LaunchFileError(f'{path}:{root.line}: root tag is <{root.tag}>, not <launch>')
        self.check(scope, root, {'version'}, action=False)
        self._actions_of(root.children, scope)

    def _actions_of(self, elements: list[Element], scope: Scope) -> None:
        for el in elements:
            self._action(el, scope)

    def _action(self, el: Element, scope: Scope) -> None:
        if el.tag not in self._actions:
            supported = ', '.join(f'<{t}>' for t in self._actions)
            raise LaunchFileError(f'{self.where(scope, el)}: unsupported tag <{el.tag}> '
                                  f'(supported actions: {supported})')
        if self._condition(el, scope):
            self._actions[el.tag](el, scope)

    def _condition(self, el: Element, scope: Scope) -> bool:
        return (self.flag(scope, el, 'if', True)
                and not self.flag(scope, el, 'unless', False))

    # ---- launch actions ----------------------------------------------------------------

    def _arg(self, el: Element, scope: Scope) -> None:
        self.check(scope, el, {'name', 'default', 'description'}, required={'name'})
        choices = []
        for child in el.children:
            if child.tag != 'choice':
                raise LaunchFileError(f'{scope.launch_file}:{child.line}: unsupported tag '
                                      f'<{child.tag}> inside <arg> (only <choice value>)')
            self.check(scope, child, {'value'}, required={'value'}, action=False)
            choices.append(child.attrs['value'])
        name, default = el.attrs['name'], el.attrs.get('default')
        if name not in scope.variables:
            if default is None:
                how = f'pass {name}:=VALUE' if scope.launch_file == self.path else (
                    f'give <arg name="{name}" value="..."/> in the <include>, or pass '
                    f'{name}:=VALUE')
                raise LaunchFileError(
                    f'{self.where(scope, el)}: argument {name!r} has no default and was not '
                    f'given ({how})')
            scope.variables[name] = self.sub(scope, el, default)
        if choices and scope.variables[name] not in choices:
            raise LaunchFileError(
                f'{self.where(scope, el)}: argument {name!r} is '
                f'{scope.variables[name]!r}, not one of its choices {choices}')
        self.arguments.setdefault(name, ArgSpec(name, default, el.attrs.get('description', ''),
                                                tuple(choices)))

    def _let(self, el: Element, scope: Scope) -> None:
        self.check(scope, el, {'name', 'value'}, required={'name', 'value'})
        self.no_children(scope, el)
        scope.variables[el.attrs['name']] = self.sub(scope, el, el.attrs['value'])

    def _include(self, el: Element, scope: Scope) -> None:
        self.check(scope, el, {'file'}, required={'file'})
        for child in el.children:
            if child.tag != 'arg':
                raise LaunchFileError(
                    f'{scope.launch_file}:{child.line}: unsupported tag <{child.tag}> inside '
                    '<include> (only <arg name value>)')
            self.check(scope, child, {'name', 'value'}, required={'name', 'value'},
                       action=False)
        target = self.existing_file(scope, el, self.sub(scope, el, el.attrs['file']),
                                    'included file')
        including = scope.launch_file
        # launch sets the included file's locals first, then runs the <arg>s as
        # SetLaunchConfiguration actions, one after the other, in the including scope: so
        # $(dirname) in an <arg> value is already the included file's folder.
        scope.launch_file = target
        try:
            for child in el.children:
                name = self.sub(scope, child, child.attrs['name'], at=including)
                scope.variables[name] = self.sub(scope, child, child.attrs['value'],
                                                 at=including)
            self._file(target, scope)
        finally:
            scope.launch_file = including

    def _group(self, el: Element, scope: Scope) -> None:
        self.check(scope, el, {'scoped', 'forwarding'})
        scoped = self.flag(scope, el, 'scoped', True)
        forwarding = self.flag(scope, el, 'forwarding', True)
        keeps = [c for c in el.children if c.tag == 'keep']
        kept = {}
        for keep in keeps:
            self.check(scope, keep, {'name', 'value'}, required={'name', 'value'}, action=False)
            kept[self.sub(scope, keep, keep.attrs['name'])] = self.sub(scope, keep,
                                                                       keep.attrs['value'])
        body = [c for c in el.children if c.tag != 'keep']
        if not scoped:
            scope.variables.update(kept)
            self._actions_of(body, scope)
            return
        if forwarding:
            inner = scope.copy()
            inner.variables.update(kept)
        else:  # ResetLaunchConfigurations(keep) and ResetEnvironment: a clean slate
            inner = Scope(kept, dict(self.initial_environment), scope.launch_file)
        self._actions_of(body, inner)

    def _push_ros_namespace(self, el: Element, scope: Scope) -> None:
        self.check(scope, el, {'namespace'}, required={'namespace'})
        pushed = self.sub(scope, el, el.attrs['namespace'])
        namespace = absolute_namespace(prefix_namespace(scope.namespace, pushed))
        self._valid_namespace(scope, el, namespace)
        scope.namespace = namespace

    def _valid_namespace(self, scope: Scope, el: Element, namespace: str | None) -> None:
        if namespace is not None and not _NAMESPACE.match(namespace):
            raise LaunchFileError(f'{self.where(scope, el)}: namespace {namespace!r} is not a '
                                  'valid ROS namespace (/name/name: letters, digits, _)')

    def _set_parameter(self, el: Element, scope: Scope) -> None:
        self.check(scope, el, {'name', 'value'}, required={'name', 'value'})
        name, value = (self.sub(scope, el, el.attrs[k]) for k in ('name', 'value'))
        scope.global_params.append(('-p', f"{name}:={value or repr('')}"))

    def _set_remap(self, el: Element, scope: Scope) -> None:
        self.check(scope, el, {'from', 'to'}, required={'from', 'to'})
        scope.remaps.append((self.sub(scope, el, el.attrs['from']),
                             self.sub(scope, el, el.attrs['to'])))

    def _set_env(self, el: Element, scope: Scope) -> None:
        self.check(scope, el, {'name', 'value'}, required={'name', 'value'})
        scope.environment[self.sub(scope, el, el.attrs['name'])] = self.sub(
            scope, el, el.attrs['value'])

    def _unset_env(self, el: Element, scope: Scope) -> None:
        self.check(scope, el, {'name'}, required={'name'})
        scope.environment.pop(self.sub(scope, el, el.attrs['name']), None)

    # ---- processes ---------------------------------------------------------------------

    def _process_env(self, el: Element, scope: Scope, allowed: set[str]) -> dict[str, str]:
        """``<env name value>`` children (the process's additional environment)."""
        extra = {}
        for child in el.children:
            if child.tag not in allowed:
                raise LaunchFileError(
                    f'{scope.launch_file}:{child.line}: unsupported tag <{child.tag}> inside '
                    f"<{el.tag}> (only {', '.join(f'<{t}>' for t in sorted(allowed))})")
            if child.tag == 'env':
                self.check(scope, child, {'name', 'value'}, required={'name', 'value'},
                           action=False)
                extra[self.sub(scope, child, child.attrs['name'])] = self.sub(
                    scope, child, child.attrs['value'])
        return extra

    def _env_changes(self, scope: Scope, extra: dict[str, str]) -> dict[str, str | None]:
        environment = {**scope.environment, **extra}
        changes: dict[str, str | None] = {
            k: v for k, v in environment.items() if self.initial_environment.get(k) != v}
        changes.update({k: None for k in self.initial_environment if k not in environment})
        return changes

    def _process(self, el: Element, scope: Scope, attr: dict[str, str]) -> dict:
        """What ``<node>`` and ``<executable>`` share (launch ``ExecuteProcess.parse``)."""
        where = self.where(scope, el)
        output = attr.get('output', 'log')
        if output not in _OUTPUTS:
            raise LaunchFileError(f'{where}: output={output!r} is not one of {sorted(_OUTPUTS)}')
        on_exit = attr.get('on_exit')
        if on_exit not in (None, 'shutdown'):
            raise LaunchFileError(f"{where}: on_exit={on_exit!r}: only 'shutdown' is supported")
        try:
            delay = float(attr.get('respawn_delay', '0'))
            retries = int(attr.get('respawn_max_retries', '-1'))
        except ValueError as err:
            raise LaunchFileError(f'{where}: <{el.tag}> respawn settings: {err}') from None
        if delay < 0:
            raise LaunchFileError(f'{where}: respawn_delay={delay} must not be negative')
        return dict(output=output, shutdown_on_exit=on_exit == 'shutdown', source=where,
                    respawn=self.flag(scope, el, 'respawn', False), respawn_delay_s=delay,
                    respawn_max_retries=retries, cwd=attr.get('cwd'))

    def _node(self, el: Element, scope: Scope) -> None:
        self.check(scope, el, _NODE_ATTRS, required={'pkg', 'exec'})
        where = self.where(scope, el)
        plain = {'args', 'ros_args', 'launch-prefix', 'respawn'} | _CONDITIONS
        attr = {k: self.sub(scope, el, v) for k, v in el.attrs.items() if k not in plain}
        common = self._process(el, scope, attr)
        try:
            executable = find_executable(attr['pkg'], attr['exec'])
        except PackageNotFoundError as err:
            raise LaunchFileError(f'{where}: <node>: {err}') from None
        namespace = absolute_namespace(prefix_namespace(scope.namespace, attr.get('namespace')))
        self._valid_namespace(scope, el, namespace)
        parameters = list(scope.global_params)
        remaps = list(scope.remaps)
        for child in el.children:
            if child.tag == 'param':
                parameters += self._param(child, scope, '')
            elif child.tag == 'remap':
                self.check(scope, child, {'from', 'to'}, required={'from', 'to'}, action=False)
                self.no_children(scope, child)
                remaps.append((self.sub(scope, child, child.attrs['from']),
                               self.sub(scope, child, child.attrs['to'])))
        extra = self._process_env(el, scope, {'param', 'remap', 'env'})
        ros_args: list[str] = []
        if 'name' in attr:
            ros_args += ['-r', f"__node:={attr['name']}"]
        if namespace is not None:
            ros_args += ['-r', f'__ns:={namespace}']
        for flag, value in parameters:
            ros_args += [flag, value]
        for source, target in remaps:
            ros_args += ['-r', f'{source}:={target}']
        command = [*self.words(scope, el, el.attrs.get('launch-prefix', '')), str(executable),
                   *self.words(scope, el, el.attrs.get('args', ''))]
        if 'ros_args' in el.attrs:
            command += ['--ros-args', *self.words(scope, el, el.attrs['ros_args'])]
        if ros_args:
            command += ['--ros-args', *ros_args]
        self.nodes.append(NodeSpec(
            package=attr['pkg'], executable=attr['exec'], command=tuple(command),
            name=attr.get('name', attr['exec']), node_name=attr.get('name'),
            namespace=namespace, parameters=tuple(parameters), remaps=tuple(remaps),
            env=self._env_changes(scope, extra), **common))

    def _param(self, el: Element, scope: Scope, prefix: str) -> list[tuple[str, str]]:
        """One ``<param>``: ``name value``, nested ``<param>``s under a ``name``, or
        ``from`` a parameter file (launch_ros ``Node.parse_nested_parameters``)."""
        where = self.where(scope, el)
        self.check(scope, el, {'name', 'value', 'from'}, action=False)
        if 'from' in el.attrs:
            if set(el.attrs) != {'from'} or prefix or el.children:
                raise LaunchFileError(f'{where}: <param from> takes no name, value or children')
            path = self.existing_file(scope, el, self.sub(scope, el, el.attrs['from']),
                                      'parameter file')
            return [('--params-file', str(path))]
        if 'name' not in el.attrs:
            raise LaunchFileError(f'{where}: <param> needs name and value, or from')
        name = prefix + self.sub(scope, el, el.attrs['name'])
        if el.children:
            if 'value' in el.attrs:
                raise LaunchFileError(f'{where}: <param> has a value and nested <param>s')
            out = []
            for child in el.children:
                if child.tag != 'param':
                    raise LaunchFileError(f'{scope.launch_file}:{child.line}: unsupported tag '
                                          f'<{child.tag}> inside <param>')
                out += self._param(child, scope, name + '.')
            return out
        if 'value' not in el.attrs:
            raise LaunchFileError(f'{where}: <param> needs name and value, or from')
        value = self.sub(scope, el, el.attrs['value'])
        # rcl reads the value as YAML: an empty one must be spelled '' to be a string.
        return [('-p', f"{name}:={value or repr('')}")]

    def _executable(self, el: Element, scope: Scope) -> None:
        self.check(scope, el, _EXECUTABLE_ATTRS, required={'cmd'})
        plain = {'cmd', 'launch-prefix', 'respawn'} | _CONDITIONS
        attr = {k: self.sub(scope, el, v) for k, v in el.attrs.items() if k not in plain}
        common = self._process(el, scope, attr)
        words = self.words(scope, el, el.attrs['cmd'])
        if not words:
            raise LaunchFileError(f'{self.where(scope, el)}: <executable cmd> is empty')
        extra = self._process_env(el, scope, {'env'})
        command = [*self.words(scope, el, el.attrs.get('launch-prefix', '')), *words]
        self.nodes.append(NodeSpec(
            package='', executable=words[0], command=tuple(command),
            name=attr.get('name', os.path.basename(words[0])),
            env=self._env_changes(scope, extra), **common))


def load_launch_file(path: str | Path, arguments: dict[str, str] | None = None) -> LaunchPlan:
    """Resolve ``path`` with command-line ``arguments`` (``name:=value`` pairs, parsed).

    Raises:
        LaunchFileError: malformed XML, a file of another frontend, an unsupported
            tag/attribute/substitution, a missing argument, file, package or executable, a
            value outside an argument's choices, or an argument no file declares.
    """
    path = Path(path)
    if not path.is_file():
        raise LaunchFileError(f'launch file {path} does not exist')
    given = dict(arguments or {})
    loader = Loader(path, given)
    loader.run()
    undeclared = sorted(set(given) - set(loader.arguments))
    if undeclared:
        raise LaunchFileError(
            f"{path}: argument(s) {', '.join(undeclared)} not declared by the launch file "
            f"(declared: {', '.join(sorted(loader.arguments)) or 'none'})")
    return LaunchPlan(nodes=tuple(loader.nodes), arguments=tuple(loader.arguments.values()))
