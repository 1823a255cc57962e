"""Message types for bags: the stack's ``.msg`` files registered with rosbags, and the
complete message definitions rosbag2 stores in each MCAP schema.

No ROS import: ``.msg`` files are found in the share directories of the ament prefixes on
``AMENT_PREFIX_PATH`` (``<prefix>/share/<package>/msg/<Name>.msg``), which is where both a
colcon install and the Kilted/Jazzy wheels put them. ``std_msgs`` and ``builtin_interfaces``
types come from rosbags' own Kilted store (identical to Jazzy's for the types used here).

The complete definition follows rosbag2's ``ros2msg`` encoding (rosbag2
``docs/message_definition_encoding.md`` and its ``LocalMessageDefinitionSource``): the
top-level ``.msg`` text verbatim, then every dependency not yet written, depth first in sorted
order, each after a line of 80 ``=`` and a line ``MSG: <type as spelled in the field>``.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from rosbags.interfaces import MessageDefinitionFormat
from rosbags.typesys import (
    Stores,
    TypesysError,
    get_types_from_idl,
    get_types_from_msg,
    get_typestore,
)
from rosbags.typesys.store import Typestore

from pref_rl_learner.bag.errors import MessageDefinitionError

STACK_PACKAGE = 'pref_rl_msgs'
"""The interface package whose messages the recorder writes."""

BASE_STORE = Stores.ROS2_KILTED
"""rosbags store supplying ``std_msgs`` and ``builtin_interfaces`` (the wheels' distro)."""

DELIMITER = '=' * 80 + '\n'

# A field's type at the start of a line, as rosbag2 finds dependencies ("pkg/Type" in
# "pkg/Type[] name"); primitive types are skipped, bare names belong to the same package.
_FIELD_TYPE = re.compile(r'(?:^|\n)\s*([a-zA-Z0-9_/]+)(?:\[[^\]]*\])?\s+')
_PRIMITIVES = frozenset({'bool', 'byte', 'char', 'float32', 'float64', 'int8', 'uint8', 'int16',
                         'uint16', 'int32', 'uint32', 'int64', 'uint64', 'string'})


def normalize_type(name: str) -> str:
    """``pkg/Name`` or ``pkg/msg/Name`` -> ``pkg/msg/Name``."""
    parts = name.split('/')
    if len(parts) == 2:
        return f'{parts[0]}/msg/{parts[1]}'
    if len(parts) == 3:
        return name
    raise MessageDefinitionError(f'{name!r} is not a message type name (pkg/msg/Name)')


def msg_dependencies(text: str, package: str) -> set[str]:
    """Types a ``.msg`` text refers to, spelled as rosbag2 spells them (``pkg/Name``)."""
    deps = set()
    for match in _FIELD_TYPE.finditer(text):
        name = match.group(1)
        if name in _PRIMITIVES:
            continue
        deps.add(name if '/' in name else f'{package}/{name}')
    return deps


def share_directories(extra: Iterable[str | Path] = ()) -> list[Path]:
    """``<prefix>/share`` of every prefix on ``AMENT_PREFIX_PATH``, after ``extra``."""
    prefixes = [p for p in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep) if p]
    return [Path(p) for p in extra] + [Path(p) / 'share' for p in prefixes]


def find_msg_file(typename: str, shares: Sequence[Path]) -> Path | None:
    """The ``.msg`` file of ``typename`` in the first share directory that has it."""
    package, _, name = normalize_type(typename).split('/')
    for share in shares:
        path = share / package / 'msg' / f'{name}.msg'
        if path.is_file():
            return path
    return None


class MessageDefinitions:
    """The stack's message types: a rosbags typestore, complete definitions and type hashes.

    Args:
        msg_dir: directory holding the stack's ``.msg`` files; default: found under
            ``share/pref_rl_msgs/msg`` of an ament prefix on ``AMENT_PREFIX_PATH``.
        shares: share directories searched for dependencies' ``.msg`` texts (default: from
            ``AMENT_PREFIX_PATH``); a dependency not found there is written from rosbags'
            store (same fields, without comments).

    Raises:
        MessageDefinitionError: no ``.msg`` files found, or one does not parse.
    """

    def __init__(self, msg_dir: str | Path | None = None,
                 shares: Sequence[Path] | None = None) -> None:
        self.shares = list(shares) if shares is not None else share_directories()
        if msg_dir is None:
            found = find_msg_file(f'{STACK_PACKAGE}/msg/Segment', self.shares)
            if found is None:
                raise MessageDefinitionError(
                    f'no {STACK_PACKAGE} .msg files under share/{STACK_PACKAGE}/msg of any '
                    'prefix on AMENT_PREFIX_PATH (source install/setup.bash, or pass msg_dir)')
            msg_dir = found.parent
        self.msg_dir = Path(msg_dir)
        self.texts: dict[str, str] = {}
        for path in sorted(self.msg_dir.glob('*.msg')):
            self.texts[f'{STACK_PACKAGE}/msg/{path.stem}'] = path.read_text(encoding='utf-8')
        if not self.texts:
            raise MessageDefinitionError(f'no .msg files in {self.msg_dir}')
        self.typestore = get_typestore(BASE_STORE)
        types: dict = {}
        for typename, text in self.texts.items():
            try:
                types.update(get_types_from_msg(text, typename))
            except Exception as err:  # rosbags raises its parser's own errors
                raise MessageDefinitionError(
                    f'{self.msg_dir / typename.rsplit("/", 1)[1]}.msg: {err}') from None
        register(self.typestore, types, str(self.msg_dir))
        self._full: dict[str, str] = {}

    @property
    def message_types(self) -> list[str]:
        """The stack's message type names (``pref_rl_msgs/msg/...``)."""
        return list(self.texts)

    def _text(self, typename: str) -> str:
        """The ``.msg`` text of one type: the stack's, a share dir's, or rosbags' store's."""
        normalized = normalize_type(typename)
        if normalized in self.texts:
            return self.texts[normalized]
        path = find_msg_file(normalized, self.shares)
        if path is not None:
            return path.read_text(encoding='utf-8')
        if normalized not in self.typestore.fielddefs:
            raise MessageDefinitionError(f'no definition of {typename!r} (no .msg file found)')
        return self.typestore.gendefhash(normalized, {}, ros_version=2)[0]

    def full_definition(self, typename: str) -> str:
        """rosbag2's complete ``ros2msg`` definition of ``typename`` (schema data)."""
        normalized = normalize_type(typename)
        if normalized not in self._full:
            seen: set[str] = set()

            def with_dependencies(name: str) -> str:
                text = self._text(name)
                for dep in sorted(msg_dependencies(text, name.split('/')[0])):
                    if dep not in seen:
                        seen.add(dep)
                        text += f'\n{DELIMITER}MSG: {dep}\n' + with_dependencies(dep)
                return text

            self._full[normalized] = with_dependencies(normalized)
        return self._full[normalized]

    def type_hash(self, typename: str) -> str:
        """The RIHS01 type description hash (equal to rosidl's for the same definition)."""
        return self.typestore.hash_rihs01(normalize_type(typename))


@functools.cache
def stack_definitions(msg_dir: str | None = None) -> MessageDefinitions:
    """A shared :class:`MessageDefinitions` (building one generates code: reuse it)."""
    return MessageDefinitions(msg_dir)


def register(typestore: Typestore, types: Mapping, where: str) -> None:
    """Register parsed types, turning rosbags' conflict error into a typed one."""
    try:
        typestore.register(dict(types))
    except TypesysError as err:
        raise MessageDefinitionError(f'{where}: {err}') from None


def typestore_from_schemas(schemas: Mapping[str, tuple[MessageDefinitionFormat, str]],
                           where: str) -> Typestore:
    """A typestore holding exactly the types a bag's schemas define (a bag describes itself,
    whatever distro recorded it).

    ``schemas`` maps a message type to the format and text of its stored definition; when a
    type has none, rosbags' base store supplies the standard types and
    :func:`stack_definitions` the stack's.
    """
    typestore = get_typestore(Stores.EMPTY)
    types: dict = {}
    for msgtype, (fmt, text) in schemas.items():
        try:
            if fmt == MessageDefinitionFormat.MSG and text:
                types.update(get_types_from_msg(text, msgtype))
            elif fmt == MessageDefinitionFormat.IDL and text:
                types.update(get_types_from_idl(text))
        except Exception as err:  # rosbags raises its parser's own errors
            raise MessageDefinitionError(
                f'{where}: stored definition of {msgtype} does not parse: {err}') from None
    missing = [t for t in schemas if t not in types and t not in typestore.fielddefs]
    if missing:
        typestore = get_typestore(BASE_STORE)
    if any(t.startswith(f'{STACK_PACKAGE}/') for t in missing):
        for typename, text in stack_definitions().texts.items():
            if typename not in types:
                types.update(get_types_from_msg(text, typename))
    register(typestore, types, where)
    return typestore
