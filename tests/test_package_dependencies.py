"""The packages point one way and their package.xml files say so.

pref_rl_msgs <- pref_rl_learner <- pref_rl_robot, pref_rl_gui. A static scan of every source
file (imports, and strings naming a sibling package, which is how an ``importlib`` detour would
hide it) checks that no package reaches a package above it, and that every sibling a package
imports is an ``exec_depend`` of its package.xml.
"""

from __future__ import annotations

import ast
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / 'src'
STACK = ('pref_rl_msgs', 'pref_rl_learner', 'pref_rl_robot', 'pref_rl_gui')
ABOVE = {'pref_rl_learner': ('pref_rl_robot', 'pref_rl_gui'),
         'pref_rl_robot': ('pref_rl_gui',), 'pref_rl_gui': ()}
"""Packages each package must never reach (they depend on it). pref_rl_gui's screenshot tool
starts the robot node, so pref_rl_gui may name pref_rl_robot (and declares it)."""


def _sources(package: str) -> list[Path]:
    return sorted((SRC / package / package).rglob('*.py'))


def _imported(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding='utf-8'), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split('.')[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split('.')[0])
    return names & set(STACK)


_MODULE_PATH = re.compile(r'(pref_rl_\w+)(\.\w+)*(:\w+)?')


def _named_in_code(path: Path) -> set[str]:
    """Sibling packages named by a string that is a module path (what an importlib detour
    or a plugin list passes: ``'pref_rl_robot.tasks'``), docstrings aside."""
    tree = ast.parse(path.read_text(encoding='utf-8'), filename=str(path))
    docstrings = {id(node.value) for node in ast.walk(tree)
                  if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)}
    found = set()
    for node in ast.walk(tree):
        if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                and id(node) not in docstrings):
            match = _MODULE_PATH.fullmatch(node.value)
            if match:
                found.add(match.group(1))
    return found & set(STACK)


def _exec_depends(package: str) -> set[str]:
    root = ET.parse(SRC / package / 'package.xml').getroot()
    return {e.text.strip() for tag in ('exec_depend', 'depend') for e in root.iter(tag)}


@pytest.mark.parametrize('package', sorted(ABOVE))
def test_no_package_reaches_a_package_above_it(package):
    offending = {}
    for path in _sources(package):
        bad = (_imported(path) | _named_in_code(path)) & set(ABOVE[package])
        if bad:
            offending[str(path.relative_to(SRC))] = sorted(bad)
    assert not offending, offending


@pytest.mark.parametrize('package', sorted(ABOVE))
def test_package_xml_declares_every_sibling_it_imports(package):
    imported = set().union(*(_imported(path) | _named_in_code(path)
                             for path in _sources(package))) - {package}
    assert imported, f'{package}: the scan found no sibling imports at all'
    assert imported <= _exec_depends(package), (package, sorted(imported),
                                                 sorted(_exec_depends(package)))


def test_the_scan_sees_an_importlib_detour(tmp_path):
    sample = tmp_path / 'sample.py'
    sample.write_text("import importlib\nm = importlib.import_module('pref_rl_robot.tasks')\n")
    assert _named_in_code(sample) == {'pref_rl_robot'}
    sample.write_text("PLUGINS = ('pref_rl_gui.label_cli',)\n")
    assert _named_in_code(sample) == {'pref_rl_gui'}
    sample.write_text('"""Uses ``pref_rl_robot`` tasks."""\nx = "see pref_rl_gui docs"\n')
    assert _named_in_code(sample) == set()
    sample.write_text('from pref_rl_gui import label_cli\n')
    assert _imported(sample) == {'pref_rl_gui'}


def test_task_suite_and_commands_are_entry_points():
    robot = (SRC / 'pref_rl_robot' / 'setup.py').read_text()
    gui = (SRC / 'pref_rl_gui' / 'setup.py').read_text()
    assert re.search(r"'pref_rl\.task_suites':\s*\['default = pref_rl_robot\.tasks'\]", robot)
    assert re.search(r"'pref_rl\.commands':\s*\['label = pref_rl_gui\.label_cli:register'\]",
                     gui)
    from pref_rl_learner.pebble.tasks import task_suite

    assert 'point_mass' in task_suite().task_names()
