"""A safe evaluator for ``$(eval EXPR)``: the comparisons, arithmetic and tests people write.

``ros2 launch`` runs ``eval(EXPR, {}, vars(math))`` (launch
``substitutions/python_expression.py``): any Python. Here the expression is parsed with
:mod:`ast` and only these node kinds are evaluated, with Python's own semantics (so the
result and its ``str()`` are what ``ros2 launch`` gives): literals (numbers, strings,
``True``/``False``/``None``, tuples, lists), ``+ - * / // % **`` (exponents capped),
unary ``- + not``, ``and``/``or``, comparisons (``== != < <= > >= in not in is is not``),
``x if c else y``, the names and functions of :mod:`math` (bare, as ``ros2 launch`` allows,
or as ``math.name``), the builtins ``abs min max round int float str bool len``, and the
string methods ``lower upper strip startswith endswith``. Anything else (attribute access
beyond those, subscripts, lambdas, comprehensions, other calls) is refused with a
:class:`ExpressionError`, never run.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any


class ExpressionError(ValueError):
    """The expression does not parse, uses a construct outside the safe subset, or fails."""


_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type, Callable[[Any], Any]] = {
    ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Not: operator.not_,
}
_COMPARE: dict[type, Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge, ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b, ast.Is: operator.is_, ast.IsNot: operator.is_not,
}
_MATH = {name: value for name, value in vars(math).items() if not name.startswith('_')}
_BUILTINS: dict[str, Any] = {'abs': abs, 'min': min, 'max': max, 'round': round, 'int': int,
                             'float': float, 'str': str, 'bool': bool, 'len': len}
_NAMES: dict[str, Any] = {**_MATH, **_BUILTINS, 'True': True, 'False': False, 'None': None}
_STR_METHODS = frozenset({'lower', 'upper', 'strip', 'startswith', 'endswith'})
_MAX_EXPONENT = 1000
_MAX_SEQUENCE = 100_000
_MAX_BITS = 100_000
_BOUNDED = frozenset({'factorial', 'comb', 'perm'})
"""math functions whose cost grows with their integer arguments: those are capped."""


def evaluate(expression: str) -> Any:
    """The value of ``expression`` (see the module docstring for what is allowed).

    Raises:
        ExpressionError: it does not parse, is not in the safe subset, or raises.
    """
    try:
        tree = ast.parse(expression.strip(), mode='eval')
    except SyntaxError as err:
        raise ExpressionError(f'$(eval {expression!r}): not a Python expression: '
                              f'{err.msg}') from None
    try:
        return _eval(tree.body, expression)
    except ExpressionError:
        raise
    except Exception as err:  # what Python itself raises: ZeroDivisionError, TypeError, ...
        raise ExpressionError(f'$(eval {expression!r}): {type(err).__name__}: {err}') from None


def _refuse(node: ast.AST, expression: str, what: str = '') -> ExpressionError:
    shown = ast.get_source_segment(expression.strip(), node) or type(node).__name__
    return ExpressionError(
        f'$(eval {expression!r}): {what or type(node).__name__} in {shown!r} is not '
        'evaluated here (comparisons, arithmetic, and/or/not, x if c else y, math, and a few '
        'builtins are; see the README launch section)')


def _eval(node: ast.AST, expression: str) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Tuple | ast.List):
        items = [_eval(e, expression) for e in node.elts]
        return tuple(items) if isinstance(node, ast.Tuple) else items
    if isinstance(node, ast.Name):
        if node.id not in _NAMES:
            raise _refuse(node, expression, f'the name {node.id!r}')
        return _NAMES[node.id]
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left, expression), _eval(node.right, expression)
        if isinstance(node.op, ast.Pow) and isinstance(right, int | float) and (
                abs(right) > _MAX_EXPONENT or isinstance(left, int) and
                left.bit_length() * abs(right) > _MAX_BITS):
            raise _refuse(node, expression, 'a power that large')
        if isinstance(node.op, ast.Mult) and any(
                isinstance(x, str | list | tuple) for x in (left, right)) and any(
                isinstance(x, int) and x > _MAX_SEQUENCE for x in (left, right)):
            raise _refuse(node, expression, 'a repetition that long')
        return _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand, expression))
    if isinstance(node, ast.BoolOp):
        value = _eval(node.values[0], expression)
        for operand in node.values[1:]:  # Python's short circuit: returns an operand
            if (isinstance(node.op, ast.And) and not value) or \
                    (isinstance(node.op, ast.Or) and value):
                return value
            value = _eval(operand, expression)
        return value
    if isinstance(node, ast.Compare):
        left = _eval(node.left, expression)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = _eval(comparator, expression)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.IfExp):
        chosen = node.body if _eval(node.test, expression) else node.orelse
        return _eval(chosen, expression)
    if isinstance(node, ast.Attribute):
        if isinstance(node.value, ast.Name) and node.value.id == 'math' and \
                node.attr in _MATH:
            return _MATH[node.attr]
        raise _refuse(node, expression, f'the attribute {node.attr!r}')
    if isinstance(node, ast.Call) and not node.keywords:
        return _call(node, expression)
    raise _refuse(node, expression)


def _call(node: ast.Call, expression: str) -> Any:
    args = [_eval(a, expression) for a in node.args]
    func = node.func
    if isinstance(func, ast.Attribute) and func.attr in _STR_METHODS and not (
            isinstance(func.value, ast.Name) and func.value.id == 'math'):
        target = _eval(func.value, expression)
        if not isinstance(target, str):
            raise _refuse(node, expression, f'.{func.attr}() on a {type(target).__name__}')
        return getattr(target, func.attr)(*args)
    function = _eval(func, expression)
    name = getattr(function, '__name__', '')
    if name in _BOUNDED and any(isinstance(a, int) and a > _MAX_SEQUENCE for a in args):
        raise _refuse(node, expression, f'{name}() of an argument that large')
    if not callable(function):
        raise _refuse(node, expression, 'calling a non-function')
    return function(*args)


def eval_to_text(expression: str) -> str:
    """``str()`` of the value, as ``ros2 launch`` substitutes it (``True``, ``3``, ``2.0``)."""
    return str(evaluate(expression))
