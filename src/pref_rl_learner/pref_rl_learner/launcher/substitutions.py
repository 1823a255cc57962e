"""Evaluation of launch-file substitutions: ``$(var)``, ``$(env)``, ``$(find-pkg-share)``,
``$(dirname)``, nested as in ``$(var $(env NAME))``."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

from pref_rl_learner.launcher.ament_index import PackageNotFoundError, find_package_share


class SubstitutionError(ValueError):
    """A substitution is unknown, malformed or cannot be resolved (the caller adds the line)."""


def _var(args: list[str], variables: Mapping[str, str], launch_file: Path) -> str:
    if len(args) != 1:
        raise SubstitutionError(f'$(var) takes one name, got {args}')
    if args[0] not in variables:
        known = ', '.join(sorted(variables)) or 'none'
        raise SubstitutionError(f"$(var {args[0]}): no such argument or let (known: {known})")
    return variables[args[0]]


def _env(args: list[str], variables: Mapping[str, str], launch_file: Path) -> str:
    if len(args) not in (1, 2):
        raise SubstitutionError(f'$(env) takes a name and an optional default, got {args}')
    value = os.environ.get(args[0], args[1] if len(args) == 2 else None)
    if value is None:
        raise SubstitutionError(f'$(env {args[0]}): environment variable not set, no default')
    return value


def _find_pkg_share(args: list[str], variables: Mapping[str, str], launch_file: Path) -> str:
    if len(args) != 1:
        raise SubstitutionError(f'$(find-pkg-share) takes one package name, got {args}')
    try:
        return str(find_package_share(args[0]))
    except PackageNotFoundError as err:
        raise SubstitutionError(str(err)) from None


def _dirname(args: list[str], variables: Mapping[str, str], launch_file: Path) -> str:
    if args:
        raise SubstitutionError(f'$(dirname) takes no arguments, got {args}')
    return str(launch_file.resolve().parent)


_SUBSTITUTIONS: dict[str, Callable[[list[str], Mapping[str, str], Path], str]] = {
    'var': _var, 'env': _env, 'find-pkg-share': _find_pkg_share, 'dirname': _dirname,
}


def substitute(text: str, variables: Mapping[str, str], launch_file: Path) -> str:
    """Expand every ``$(...)`` in ``text``; inner substitutions are expanded first."""
    out, i = [], 0
    while i < len(text):
        start = text.find('$(', i)
        if start < 0:
            out.append(text[i:])
            break
        out.append(text[i:start])
        end = _matching_paren(text, start + 1)
        inner = substitute(text[start + 2:end], variables, launch_file)
        if not inner.split():
            raise SubstitutionError('empty substitution $()')
        name, *args = inner.split()
        if name not in _SUBSTITUTIONS:
            supported = ', '.join(f'$({n})' for n in _SUBSTITUTIONS)
            raise SubstitutionError(f'unsupported substitution $({name}) (supported: {supported})')
        out.append(_SUBSTITUTIONS[name](args, variables, launch_file))
        i = end + 1
    return ''.join(out)


def _matching_paren(text: str, open_index: int) -> int:
    depth = 0
    for j in range(open_index, len(text)):
        if text[j] == '(':
            depth += 1
        elif text[j] == ')':
            depth -= 1
            if depth == 0:
                return j
    raise SubstitutionError(f'unclosed substitution in {text!r}')


def as_bool(text: str, what: str) -> bool:
    """Launch-file truth values: ``true``/``1`` and ``false``/``0`` (case-insensitive)."""
    lowered = text.strip().lower()
    if lowered in ('true', '1'):
        return True
    if lowered in ('false', '0'):
        return False
    raise SubstitutionError(f'{what}: {text!r} is not a boolean (true, false, 1, 0)')
