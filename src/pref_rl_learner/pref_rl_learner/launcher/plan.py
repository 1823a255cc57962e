"""What a launch file resolves to (:class:`LaunchPlan`: the processes to start), and reading
the file itself. Nothing is started here; every error is raised before any process runs, as
a :class:`LaunchFileError` naming the file and line. The actions are evaluated by
:mod:`pref_rl_learner.launcher.actions` (``load_launch_file``)."""

from __future__ import annotations

import shlex
import xml.parsers.expat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pref_rl_learner.errors import LaunchFileError


@dataclass
class Element:
    """One XML element, with the line it starts on (for messages)."""

    tag: str
    attrs: dict[str, str]
    line: int
    children: list[Element] = field(default_factory=list)


def _foreign_kind(path: Path, head: str) -> str:
    """What a file that is not an XML launch file looks like ('' when it may be XML)."""
    name = path.name.lower()
    stripped = head.lstrip()
    python = 'a Python launch file (.launch.py)'
    yaml_file = 'a YAML launch file (.launch.yaml)'
    if name.endswith('.py'):
        return python
    if name.endswith(('.yaml', '.yml')):
        return yaml_file
    if not stripped or stripped.startswith('<'):
        return ''
    if stripped.startswith('launch:'):
        return yaml_file
    if 'generate_launch_description' in head or stripped.startswith(('import ', 'from ')):
        return python
    return 'not an XML file'


def parse_xml(path: Path) -> Element:
    """Parse with expat, keeping each element's line number for error messages.

    Raises:
        LaunchFileError: the file is unreadable, not XML (a Python or YAML launch file is
            named as such: only the XML frontend runs here), or malformed.
    """
    try:
        data = path.read_bytes()
    except OSError as err:
        raise LaunchFileError(f'cannot read launch file {path}: {err.strerror}') from None
    kind = _foreign_kind(path, data[:4096].decode('utf-8', errors='replace'))
    if kind:
        raise LaunchFileError(
            f'{path}: {kind}: pref-rl launch runs only the XML frontend (*.launch.xml); run '
            'it with `ros2 launch` on a full ROS 2 install, or write it in XML')
    root: list[Element] = []
    stack: list[Element] = []
    parser = xml.parsers.expat.ParserCreate()

    def start(tag: str, attrs: dict[str, str]) -> None:
        element = Element(tag, attrs, parser.CurrentLineNumber)
        (stack[-1].children if stack else root).append(element)
        stack.append(element)

    parser.StartElementHandler = start
    parser.EndElementHandler = lambda tag: stack.pop()
    try:
        parser.Parse(data, True)
    except xml.parsers.expat.ExpatError as err:
        raise LaunchFileError(f'{path}:{err.lineno}: not well-formed XML: {err}') from None
    return root[0]


@dataclass(frozen=True)
class ArgSpec:
    """A declared launch argument."""

    name: str
    default: str | None
    """The default as written (substitutions unexpanded); None: required."""
    description: str
    choices: tuple[str, ...] = ()
    """The values ``<choice>`` allows (empty: any)."""


@dataclass(frozen=True)
class NodeSpec:
    """One process (a ``<node>`` or an ``<executable>``), fully resolved."""

    package: str
    """Package holding the executable ('' for an ``<executable>``)."""
    executable: str
    """Executable name inside ``lib/<package>`` (an ``<executable>``'s first word)."""
    command: tuple[str, ...]
    """argv to start: launch prefix, executable, ``args``, ``ros_args``, ``--ros-args``."""
    name: str
    """Node name (``__node``) or, when unset, the executable name; also the output prefix."""
    output: str
    """``screen`` (print and log), ``log`` (log file; stderr printed too) or ``both``."""
    shutdown_on_exit: bool
    """``on_exit="shutdown"``: the session ends when this process exits."""
    source: str
    """``file:line`` of the tag, for messages."""
    node_name: str | None = None
    """The ``__node`` remapping (None: the node's own default name, or not a node)."""
    namespace: str | None = None
    """The ``__ns`` remapping, absolute (None: the node's default, ``/``)."""
    parameters: tuple[tuple[str, str], ...] = ()
    """In order: ``('-p', 'name:=value')`` or ``('--params-file', path)``, global first."""
    remaps: tuple[tuple[str, str], ...] = ()
    """``(from, to)`` rules, ``<set_remap>`` ones first."""
    env: Mapping[str, str | None] = field(default_factory=dict)
    """Environment changes against the launch's own environment (None: unset)."""
    cwd: str | None = None
    """Working directory (None: the launch's)."""
    respawn: bool = False
    """Start it again whenever it exits, until the session shuts down."""
    respawn_delay_s: float = 0.0
    """Seconds to wait before starting it again."""
    respawn_max_retries: int = -1
    """How many times to start it again (negative: no limit)."""

    def shell_command(self) -> str:
        """The command as one shell line: ``cd``, ``env`` changes, then argv, quoted."""
        words: list[str] = []
        if self.env:
            words.append('env')
            for key, value in self.env.items():
                words += ['-u', key] if value is None else [f'{key}={value}']
        words += self.command
        line = shlex.join(words)
        return f'cd {shlex.quote(self.cwd)} && {line}' if self.cwd else line


@dataclass(frozen=True)
class LaunchPlan:
    """Everything a launch file asks for, in order."""

    nodes: tuple[NodeSpec, ...]
    arguments: tuple[ArgSpec, ...]
    """Arguments declared by the file and its includes."""
