"""Turn an XML launch file (and its includes) into a :class:`LaunchPlan`: the resolved list of
node processes to start. Nothing is started here; every error is raised before any process
runs, as a :class:`LaunchFileError` naming the file, line and tag."""

from __future__ import annotations

import shlex
import xml.parsers.expat
from dataclasses import dataclass, field
from pathlib import Path

from pref_rl_learner.errors import LaunchFileError
from pref_rl_learner.launcher.ament_index import PackageNotFoundError, find_executable
from pref_rl_learner.launcher.substitutions import SubstitutionError, as_bool, substitute

# tag -> attributes it may carry (beyond if/unless on actions).
_NODE_ATTRS = {'pkg', 'exec', 'name', 'namespace', 'output', 'args', 'on_exit'}
_ACTION_TAGS = {'arg', 'let', 'node', 'include'}
_OUTPUTS = {'screen', 'log', 'both'}


@dataclass
class _Element:
    tag: str
    attrs: dict[str, str]
    line: int
    children: list[_Element] = field(default_factory=list)


def _parse_xml(path: Path) -> _Element:
    """Parse with expat, keeping each element's line number for error messages."""
    root: list[_Element] = []
    stack: list[_Element] = []
    parser = xml.parsers.expat.ParserCreate()

    def start(tag: str, attrs: dict[str, str]) -> None:
        element = _Element(tag, attrs, parser.CurrentLineNumber)
        (stack[-1].children if stack else root).append(element)
        stack.append(element)

    parser.StartElementHandler = start
    parser.EndElementHandler = lambda tag: stack.pop()
    try:
        parser.Parse(path.read_bytes(), True)
    except xml.parsers.expat.ExpatError as err:
        raise LaunchFileError(f'{path}:{err.lineno}: not well-formed XML: {err}') from None
    except OSError as err:
        raise LaunchFileError(f'cannot read launch file {path}: {err.strerror}') from None
    return root[0]


@dataclass(frozen=True)
class ArgSpec:
    """A declared launch argument."""

    name: str
    default: str | None
    description: str


@dataclass(frozen=True)
class NodeSpec:
    """One node process, fully resolved."""

    package: str
    """Package holding the executable."""
    executable: str
    """Executable name inside ``lib/<package>``."""
    command: tuple[str, ...]
    """argv to start: the executable path, ``args`` and the ``--ros-args`` section."""
    name: str
    """Node name (``__node``) or, when unset, the executable name; also the output prefix."""
    output: str
    """``screen`` (print and log), ``log`` (log file only) or ``both`` (as screen)."""
    shutdown_on_exit: bool
    """``on_exit="shutdown"``: the session ends when this node exits."""
    source: str
    """``file:line`` of the ``<node>`` tag, for messages."""


@dataclass(frozen=True)
class LaunchPlan:
    """Everything a launch file asks for, in order."""

    nodes: tuple[NodeSpec, ...]
    arguments: tuple[ArgSpec, ...]
    """Arguments declared by the file and its includes."""


class _Loader:
    def __init__(self) -> None:
        self.nodes: list[NodeSpec] = []
        self.arguments: dict[str, ArgSpec] = {}

    def load(self, path: Path, variables: dict[str, str]) -> None:
        root = _parse_xml(path)
        if root.tag != 'launch':
            raise LaunchFileError(f'{path}:{root.line}: root tag is <{root.tag}>, not <launch>')
        _check_attrs(path, root, set())
        for element in root.children:
            self._action(path, element, variables)

    def _action(self, path: Path, el: _Element, variables: dict[str, str]) -> None:
        where = f'{path}:{el.line}'
        if el.tag not in _ACTION_TAGS:
            raise LaunchFileError(
                f'{where}: unsupported tag <{el.tag}> (supported: <launch>, '
                f"{', '.join(f'<{t}>' for t in sorted(_ACTION_TAGS))}, <param>, <remap>)")
        if not self._condition(path, el, variables):
            return
        getattr(self, '_' + el.tag)(path, el, variables)

    def _condition(self, path: Path, el: _Element, variables: dict[str, str]) -> bool:
        result = True
        for key, want in (('if', True), ('unless', False)):
            if key in el.attrs:
                value = _sub(path, el, el.attrs[key], variables)
                try:
                    result = result and as_bool(value, f'<{el.tag} {key}>') == want
                except SubstitutionError as err:
                    raise LaunchFileError(f'{path}:{el.line}: {err}') from None
        return result

    def _arg(self, path: Path, el: _Element, variables: dict[str, str]) -> None:
        _check_attrs(path, el, {'name', 'default', 'description'}, required={'name'})
        _no_children(path, el)
        name = el.attrs['name']
        default = el.attrs.get('default')
        if name not in variables:
            if default is None:
                raise LaunchFileError(
                    f'{path}:{el.line}: argument {name!r} has no default and was not given '
                    f'(pass {name}:=VALUE)')
            variables[name] = _sub(path, el, default, variables)
        self.arguments.setdefault(name, ArgSpec(name, default, el.attrs.get('description', '')))

    def _let(self, path: Path, el: _Element, variables: dict[str, str]) -> None:
        _check_attrs(path, el, {'name', 'value'}, required={'name', 'value'})
        _no_children(path, el)
        variables[el.attrs['name']] = _sub(path, el, el.attrs['value'], variables)

    def _include(self, path: Path, el: _Element, variables: dict[str, str]) -> None:
        _check_attrs(path, el, {'file'}, required={'file'})
        child_vars = dict(variables)
        for child in el.children:
            if child.tag != 'arg':
                raise LaunchFileError(
                    f'{path}:{child.line}: unsupported tag <{child.tag}> inside <include> '
                    '(only <arg name value>)')
            _check_attrs(path, child, {'name', 'value'}, required={'name', 'value'})
            child_vars[child.attrs['name']] = _sub(path, child, child.attrs['value'], variables)
        target = Path(_sub(path, el, el.attrs['file'], variables))
        if not target.is_absolute():
            target = path.parent / target
        if not target.is_file():
            raise LaunchFileError(f'{path}:{el.line}: included file {target} does not exist')
        self.load(target, child_vars)

    def _node(self, path: Path, el: _Element, variables: dict[str, str]) -> None:
        _check_attrs(path, el, _NODE_ATTRS, required={'pkg', 'exec'})
        where = f'{path}:{el.line}'
        attr = {k: _sub(path, el, v, variables) for k, v in el.attrs.items()}
        output = attr.get('output', 'log')
        if output not in _OUTPUTS:
            raise LaunchFileError(f'{where}: output={output!r} is not one of {sorted(_OUTPUTS)}')
        on_exit = attr.get('on_exit')
        if on_exit not in (None, 'shutdown'):
            raise LaunchFileError(f"{where}: on_exit={on_exit!r}: only 'shutdown' is supported")
        try:
            executable = find_executable(attr['pkg'], attr['exec'])
        except PackageNotFoundError as err:
            raise LaunchFileError(f'{where}: <node>: {err}') from None
        ros_args: list[str] = []
        if 'name' in attr:
            ros_args += ['-r', f"__node:={attr['name']}"]
        if 'namespace' in attr:
            ros_args += ['-r', f"__ns:=/{attr['namespace'].strip('/')}"]
        for child in el.children:
            ros_args += self._node_child(path, child, variables)
        command = [str(executable), *shlex.split(attr.get('args', ''))]
        if ros_args:
            command += ['--ros-args', *ros_args]
        self.nodes.append(NodeSpec(
            package=attr['pkg'], executable=attr['exec'], command=tuple(command),
            name=attr.get('name', attr['exec']), output=output,
            shutdown_on_exit=on_exit == 'shutdown', source=where))

    def _node_child(self, path: Path, el: _Element, variables: dict[str, str]) -> list[str]:
        where = f'{path}:{el.line}'
        _no_children(path, el)
        if el.tag == 'remap':
            _check_attrs(path, el, {'from', 'to'}, required={'from', 'to'})
            return ['-r', f"{_sub(path, el, el.attrs['from'], variables)}:="
                          f"{_sub(path, el, el.attrs['to'], variables)}"]
        if el.tag != 'param':
            raise LaunchFileError(
                f'{where}: unsupported tag <{el.tag}> inside <node> (only <param>, <remap>)')
        _check_attrs(path, el, {'name', 'value', 'from'})
        if 'from' in el.attrs:
            if set(el.attrs) != {'from'}:
                raise LaunchFileError(f'{where}: <param from> takes no name or value')
            params_file = Path(_sub(path, el, el.attrs['from'], variables))
            if not params_file.is_absolute():
                params_file = path.parent / params_file
            if not params_file.is_file():
                raise LaunchFileError(f'{where}: parameter file {params_file} does not exist')
            return ['--params-file', str(params_file)]
        if set(el.attrs) != {'name', 'value'}:
            raise LaunchFileError(f'{where}: <param> needs name and value, or from')
        name, value = (_sub(path, el, el.attrs[k], variables) for k in ('name', 'value'))
        # rcl reads the value as YAML: an empty one must be spelled '' to be a string.
        return ['-p', f"{name}:={value or repr('')}"]


def _sub(path: Path, el: _Element, text: str, variables: dict[str, str]) -> str:
    try:
        return substitute(text, variables, path)
    except SubstitutionError as err:
        raise LaunchFileError(f'{path}:{el.line}: <{el.tag}>: {err}') from None


def _check_attrs(path: Path, el: _Element, allowed: set[str],
                 required: frozenset | set = frozenset()) -> None:
    allowed = allowed | ({'if', 'unless'} if el.tag in _ACTION_TAGS else set())
    unknown = sorted(set(el.attrs) - allowed)
    if unknown:
        raise LaunchFileError(
            f"{path}:{el.line}: unsupported attribute(s) {', '.join(unknown)} on <{el.tag}> "
            f"(supported: {', '.join(sorted(allowed)) or 'none'})")
    missing = sorted(set(required) - set(el.attrs))
    if missing:
        raise LaunchFileError(f"{path}:{el.line}: <{el.tag}> needs {', '.join(missing)}")


def _no_children(path: Path, el: _Element) -> None:
    if el.children:
        child = el.children[0]
        raise LaunchFileError(
            f'{path}:{child.line}: unsupported tag <{child.tag}> inside <{el.tag}>')


def load_launch_file(path: str | Path, arguments: dict[str, str] | None = None) -> LaunchPlan:
    """Resolve ``path`` with command-line ``arguments`` (``name:=value`` pairs, parsed).

    Raises:
        LaunchFileError: malformed XML, an unsupported tag/attribute/substitution, a missing
            argument, file, package or executable, or an argument no file declares.
    """
    path = Path(path)
    if not path.is_file():
        raise LaunchFileError(f'launch file {path} does not exist')
    loader = _Loader()
    given = dict(arguments or {})
    loader.load(path, dict(given))
    undeclared = sorted(set(given) - set(loader.arguments))
    if undeclared:
        raise LaunchFileError(
            f"{path}: argument(s) {', '.join(undeclared)} not declared by the launch file "
            f"(declared: {', '.join(sorted(loader.arguments)) or 'none'})")
    return LaunchPlan(nodes=tuple(loader.nodes), arguments=tuple(loader.arguments.values()))
