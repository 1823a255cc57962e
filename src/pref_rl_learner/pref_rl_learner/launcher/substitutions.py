"""Launch-file substitutions: the grammar of ``$(...)`` and what each one expands to.

The grammar is ``ros2/launch``'s (``launch/share/launch/frontend/grammar.lark``): a value is
text and ``$(name arg arg ...)`` substitutions, nested freely; arguments are separated by
single spaces; an argument is unquoted (no spaces, quotes or parentheses), or quoted with
``'...'`` or ``"..."`` (spaces allowed, ``''`` is the empty string); a backslash escapes the
next character (``\\$(`` is literal text). Supported substitutions, with ``ros2 launch``'s
meaning:

- ``$(var NAME [DEFAULT])``: a launch configuration (``<arg>``, ``<let>``, include ``<arg>``);
- ``$(env NAME [DEFAULT])``: an environment variable of the launch (``<set_env>`` included);
- ``$(find-pkg-share PKG)``, ``$(find-pkg-prefix PKG)``: from the ament index;
- ``$(dirname)``, ``$(filename)``: the current launch file's folder and path, as given
  (absolute, symlinks not resolved: ``os.path.abspath``, launch
  ``actions/include_launch_description.py``);
- ``$(anon NAME)``: a name unique to this launch, the same for every use of ``NAME`` in one
  scope (launch ``substitutions/anon_name.py``);
- ``$(eval EXPR [math])``: a Python expression, evaluated safely (see
  :mod:`~pref_rl_learner.launcher.expression`).
"""

from __future__ import annotations

import os
import random
import shlex
import socket
import sys
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pref_rl_learner.launcher.ament_index import (
    PackageNotFoundError,
    find_package_prefix,
    find_package_share,
)
from pref_rl_learner.launcher.expression import ExpressionError, eval_to_text


class SubstitutionError(ValueError):
    """A substitution is unknown, malformed or cannot be resolved (the caller adds the line)."""


@dataclass(frozen=True)
class Sub:
    """One ``$(name args...)``; each argument is a sequence of parts."""

    name: str
    args: tuple[tuple[Part, ...], ...]


Part = str | Sub
"""Literal text, or a substitution."""


class Context(Protocol):
    """What substitutions read: the launch configurations, environment and current file."""

    variables: MutableMapping[str, str]
    environment: Mapping[str, str]
    launch_file: Path


# ---- parsing ---------------------------------------------------------------------------


class _Parser:
    """Recursive descent over the launch grammar; positions in errors are 0-based."""

    def __init__(self, text: str) -> None:
        self.text, self.pos = text, 0

    def error(self, what: str) -> SubstitutionError:
        return SubstitutionError(f'{what} at column {self.pos + 1} of {self.text!r}')

    def peek(self, ahead: int = 0) -> str:
        i = self.pos + ahead
        return self.text[i] if i < len(self.text) else ''

    def template(self) -> tuple[Part, ...]:
        """Top level: text with substitutions; text may hold spaces and quotes."""
        parts: list[Part] = []
        text: list[str] = []
        while self.pos < len(self.text):
            if self.peek() == '\\' and self.peek(1):
                text.append(self.peek(1))
                self.pos += 2
            elif self.text.startswith('$(', self.pos):
                _flush(text, parts)
                parts.append(self.substitution(quote=''))
            else:
                text.append(self.peek())
                self.pos += 1
        _flush(text, parts)
        return tuple(parts)

    def substitution(self, quote: str) -> Sub:
        self.pos += 2
        start = self.pos
        while self.peek().isalnum() or self.peek() in '_-':
            self.pos += 1
        name = self.text[start:self.pos]
        if not name or not name[0].isalpha():
            raise self.error('a substitution name (letters, digits, _ and -) is expected')
        args: list[tuple[Part, ...]] = []
        while self.peek() == ' ':
            self.pos += 1
            args.append(self.argument(quote))
        if self.peek() != ')':
            raise self.error(f'$({name} ...: ")" or a single space before the next argument '
                             'is expected' if self.peek() else f'$({name} ...: unclosed')
        self.pos += 1
        return Sub(name, tuple(args))

    def argument(self, quote: str) -> tuple[Part, ...]:
        char = self.peek()
        if char in ('"', "'") and char != quote and not quote:
            return self.quoted(char)
        parts: list[Part] = []
        text: list[str] = []
        while True:
            char = self.peek()
            if char == '\\' and self.peek(1):
                text.append(self.peek(1))
                self.pos += 2
            elif self.text.startswith('$(', self.pos):
                _flush(text, parts)
                parts.append(self.substitution(quote))
            elif char and char not in ' ()\'"':
                text.append(char)
                self.pos += 1
            else:
                break
        _flush(text, parts)
        if not parts:
            raise self.error('an argument is expected (quote an empty one as \'\')')
        return tuple(parts)

    def quoted(self, quote: str) -> tuple[Part, ...]:
        self.pos += 1
        parts: list[Part] = []
        text: list[str] = []
        while self.peek() != quote:
            char = self.peek()
            if not char:
                raise self.error(f'unclosed {quote} quote')
            if char == '\\' and self.peek(1):
                text.append(self.peek(1))
                self.pos += 2
            elif self.text.startswith('$(', self.pos):
                _flush(text, parts)
                parts.append(self.substitution(quote))
            else:
                text.append(char)
                self.pos += 1
        self.pos += 1
        _flush(text, parts)
        return tuple(parts)


def _flush(text: list[str], parts: list[Part]) -> None:
    if text:
        parts.append(''.join(text))
        text.clear()


def parse(text: str) -> tuple[Part, ...]:
    """The parts of an attribute value."""
    return _Parser(text).template()


# ---- evaluation ------------------------------------------------------------------------


def _count(name: str, args: list[str], low: int, high: int, usage: str) -> None:
    if not low <= len(args) <= high:
        raise SubstitutionError(f'$({name}) takes {usage}, got {len(args)} argument(s): '
                                f'{args}')


def _var(args: list[str], ctx: Context) -> str:
    _count('var', args, 1, 2, 'a name and an optional default')
    if args[0] in ctx.variables:
        return ctx.variables[args[0]]
    if len(args) == 2:
        return args[1]
    known = ', '.join(sorted(k for k in ctx.variables if not k.startswith('anon'))) or 'none'
    raise SubstitutionError(f'$(var {args[0]}): no such argument or let (known: {known})')


def _env(args: list[str], ctx: Context) -> str:
    _count('env', args, 1, 2, 'a name and an optional default')
    value = ctx.environment.get(args[0], args[1] if len(args) == 2 else None)
    if value is None:
        raise SubstitutionError(f'$(env {args[0]}): environment variable not set, no default '
                                f"(give one: $(env {args[0]} '') for empty)")
    return value


def _package(lookup: Callable[[str], Path], name: str) -> Callable[[list[str], Context], str]:
    def expand(args: list[str], ctx: Context) -> str:
        _count(name, args, 1, 1, 'one package name')
        try:
            return str(lookup(args[0]))
        except PackageNotFoundError as err:
            raise SubstitutionError(str(err)) from None
    return expand


def _dirname(args: list[str], ctx: Context) -> str:
    _count('dirname', args, 0, 0, 'no arguments')
    return os.path.dirname(os.path.abspath(ctx.launch_file))


def _filename(args: list[str], ctx: Context) -> str:
    _count('filename', args, 0, 0, 'no arguments')
    return os.path.abspath(ctx.launch_file)


def anonymous_name(base: str) -> str:
    """``base`` made unique to this process, as launch's ``AnonName.compute_name``."""
    name = f'{base}_{socket.gethostname()}_{os.getpid()}_{random.randint(0, sys.maxsize)}'
    return name.replace('.', '_').replace('-', '_').replace(':', '_')


def _anon(args: list[str], ctx: Context) -> str:
    _count('anon', args, 1, 1, 'one name')
    key = 'anon' + args[0]  # where launch keeps it: a launch configuration, scoped like one
    if key not in ctx.variables:
        ctx.variables[key] = anonymous_name(args[0])
    return ctx.variables[key]


def _eval(args: list[str], ctx: Context) -> str:
    _count('eval', args, 1, 2, "an expression (quote it: $(eval '1 + 2')) and optional modules")
    if len(args) == 2 and [m.strip() for m in args[1].split(',') if m.strip()] != ['math']:
        raise SubstitutionError(f'$(eval): modules {args[1]!r}: only math is available here')
    try:
        return eval_to_text(args[0])
    except ExpressionError as err:
        raise SubstitutionError(str(err)) from None


SUBSTITUTIONS: dict[str, Callable[[list[str], Context], str]] = {
    'var': _var, 'env': _env,
    'find-pkg-share': _package(find_package_share, 'find-pkg-share'),
    'find-pkg-prefix': _package(find_package_prefix, 'find-pkg-prefix'),
    'dirname': _dirname, 'filename': _filename, 'anon': _anon, 'eval': _eval,
}


def perform(part: Part, ctx: Context) -> str:
    """The text of one part (a substitution's arguments are expanded first, in order)."""
    if isinstance(part, str):
        return part
    if part.name not in SUBSTITUTIONS:
        supported = ', '.join(f'$({n})' for n in SUBSTITUTIONS)
        raise SubstitutionError(f'unsupported substitution $({part.name}) (supported: '
                                f'{supported})')
    args = [''.join(perform(p, ctx) for p in arg) for arg in part.args]
    return SUBSTITUTIONS[part.name](args, ctx)


def substitute(text: str, ctx: Context) -> str:
    """Expand every substitution of an attribute value."""
    return ''.join(perform(p, ctx) for p in parse(text))


def split_command(text: str, ctx: Context) -> list[str]:
    """A command line (``cmd``, ``args``, ``ros_args``, ``launch-prefix``) as argv, the way
    launch's ``ExecuteProcess._parse_cmdline`` splits it: literal text is split like a shell
    (``shlex``), a substitution's value is never split (a value with spaces stays one
    argument), and text touching a substitution joins the same argument."""
    result: list[str] = []
    arg: list[str] = []

    def close() -> None:
        if arg:
            result.append(''.join(arg))
            arg.clear()

    for part in parse(text):
        if isinstance(part, Sub):
            arg.append(perform(part, ctx))
            continue
        tokens = shlex.split(part)
        if not tokens:
            close()
            continue
        if part[0].isspace():
            close()
        arg.append(tokens[0])
        if len(tokens) > 1:
            close()
            result.extend(tokens[1:-1])
            arg.append(tokens[-1])
        if part[-1].isspace():
            close()
    close()
    return result


def as_bool(text: str, what: str) -> bool:
    """Launch-file truth values: ``true``/``1`` and ``false``/``0`` (case-insensitive), as
    launch's ``evaluate_condition_expression``."""
    lowered = text.strip().lower()
    if lowered in ('true', '1'):
        return True
    if lowered in ('false', '0'):
        return False
    raise SubstitutionError(f'{what}: {text!r} is not a boolean (true, false, 1, 0)')
