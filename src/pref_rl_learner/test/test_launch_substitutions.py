"""Substitution grammar, command-line splitting and the safe ``$(eval)`` evaluator."""

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pref_rl_learner.errors import LaunchFileError
from pref_rl_learner.launcher import load_launch_file
from pref_rl_learner.launcher.expression import ExpressionError, eval_to_text
from pref_rl_learner.launcher.substitutions import (
    Sub,
    SubstitutionError,
    parse,
    split_command,
    substitute,
)


@dataclass
class Ctx:
    variables: dict = field(default_factory=lambda: {'x': 'a b', 'n': '4'})
    environment: dict = field(default_factory=lambda: {'HOME': '/home/me'})
    launch_file: Path = Path('/somewhere/link/file.launch.xml')


@pytest.mark.parametrize('text, expected', [
    ("x$(env UNSET '')y", 'xy'),
    ("$(env UNSET 'two words')", 'two words'),
    ('$(env UNSET "double (quoted)")', 'double (quoted)'),
    ('$(env HOME)/ws', '/home/me/ws'),
    ('$(var x)', 'a b'),
    ('$(var missing fallback)', 'fallback'),
    ('$(var $(env NAME x))', 'a b'),  # inner first: $(env NAME x) -> 'x'
    (r'\$(var x) is literal', '$(var x) is literal'),
    ("$(eval '$(var n) * 2')", '8'),
    ('$(eval "\'$(var x)\' == \'a b\'")', 'True'),
    ('$(dirname)', '/somewhere/link'),
    ('$(filename)', '/somewhere/link/file.launch.xml'),
    ('plain text (with parens) and \'quotes\'', "plain text (with parens) and 'quotes'"),
])
def test_substitutions_expand_as_the_launch_grammar_says(text, expected):
    assert substitute(text, Ctx()) == expected


def test_parse_tree_and_anon_is_stable_per_scope():
    assert parse("a$(var b 'c d')") == ('a', Sub('var', (('b',), ('c d',))))
    ctx = Ctx()
    first = substitute('$(anon node)', ctx)
    assert first == substitute('$(anon node)', ctx) != substitute('$(anon node)', Ctx())
    assert first.startswith('node_') and '-' not in first and '.' not in first


@pytest.mark.parametrize('text, message', [
    ('$(var x', 'unclosed'),
    ('$(var  x)', 'an argument is expected'),
    ("$(env 'unclosed)", 'unclosed'),
    ('$(command ls)', 'unsupported substitution $(command)'),
    ('$(var nope)', '$(var nope): no such argument'),
    ('$(env UNSET)', 'not set, no default'),
    ('$(eval 1 + 2)', "quote it: $(eval '1 + 2')"),
    ("$(eval '1' os)", 'only math'),
])
def test_bad_substitutions_are_named(text, message):
    with pytest.raises(SubstitutionError, match=None) as info:
        substitute(text, Ctx())
    assert message in str(info.value)


def test_command_lines_split_text_but_never_a_substitution():
    ctx = Ctx()
    assert split_command('--flag $(var x) tail', ctx) == ['--flag', 'a b', 'tail']
    assert split_command("pre$(var x)post 'quoted arg' z", ctx) == [
        'prea bpost', 'quoted arg', 'z']
    assert split_command('$(var n) $(var n)', ctx) == ['4', '4']
    assert split_command('', ctx) == []


@pytest.mark.parametrize('expression, expected', [
    ('1 + 2 * 3', '7'), ('7 / 2', '3.5'), ('7 // 2', '3'), ('2 ** 10', '1024'),
    ('-3 % 5', '2'), ("'sim' == 'sim'", 'True'), ("'a' in ('a', 'b')", 'True'),
    ('1 < 2 <= 2 < 1', 'False'), ('not 0', 'True'), ("0 or 'x'", 'x'), ('1 and 0', '0'),
    ("'yes' if 3 > 2 else 'no'", 'yes'), ('pi > 3.14 and math.floor(e) == 2', 'True'),
    ('max(1, 5) + abs(-2) + int("3") + round(2.6)', '13'), ("'ABC'.lower()", 'abc'),
    ("len('four') == 4", 'True'), ('sqrt(16)', '4.0'), ('None', 'None'),
])
def test_eval_computes_what_python_would(expression, expected):
    assert eval_to_text(expression) == expected
    assert str(eval(expression, {}, {**vars(__import__('math')),
                                      'math': __import__('math')})) == expected


@pytest.mark.parametrize('expression', [
    "__import__('os').system('true')", '().__class__.__bases__', 'open("/etc/passwd")',
    '(lambda: 1)()', '[x for x in (1, 2)]', "'a'.__class__", 'globals()',
    '9 ** 9 ** 9', "'x' * 10 ** 9", 'factorial(10 ** 7)', '1 +', '1 / 0',
])
def test_eval_refuses_what_is_not_in_the_safe_subset(expression):
    with pytest.raises(ExpressionError):
        eval_to_text(expression)


def test_eval_error_names_file_and_line(tmp_path):
    launch = tmp_path / 'a.launch.xml'
    launch.write_text('<launch>\n  <let name="x" value="$(eval \'open(1)\')"/>\n</launch>')
    with pytest.raises(LaunchFileError, match=r'a\.launch\.xml:2: <let>: \$\(eval'):
        load_launch_file(launch)
