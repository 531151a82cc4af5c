"""Rules written in the config: filter expressions (``tiers.rule``) -> Polars expressions, never
eval'd, and the one table of comparison operators.

The text is parsed with Python's own parser (``ast``) but nothing is executed: the syntax
tree is walked and only a small whitelist becomes a ``pl.Expr``:

    monetary >= 5000 and recency_days <= 180
    rfm_segment in ["champions", "loyal"] or (frequency >= 10 and not pareto_class == "C")

Names must be output columns; values are numbers, strings, true/false; operators are
``and or not``, comparisons ``< <= > >= == !=`` (chains allowed), ``in`` / ``not in`` a list.
"""

from __future__ import annotations

import ast
import io
import operator
import tokenize
from collections.abc import Callable, Iterable
from typing import Any

import polars as pl

from segcli.errors import ConfigError

# The comparison operators of config rules, by the symbol a config writes: the one table, for
# tiers.rule (parsed here) and the vip_groups naming rules (segcli.config's ``Op`` names a subset)
COMPARISONS: dict[str, Callable[[Any, Any], Any]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq, "!=": operator.ne,
}
_SYMBOLS = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!="}


_WORDS = {"&": " and ", "|": " or "}


def _word_operators(text: str) -> str:
    """``&&`` / ``||`` -> ``and`` / ``or``, only where they are operators: a quoted value such
    as ``"a&&b"`` is one STRING token to Python's tokenizer, so it is left as written."""
    lines = text.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    spans: list[tuple[int, int, str]] = []
    prev: tokenize.TokenInfo | None = None
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        # two adjacent '&' (or '|') operator tokens make one '&&' (or '||')
        if (prev is not None and tok.type == tokenize.OP and tok.string in _WORDS and prev.string == tok.string
                and prev.type == tokenize.OP and prev.end == tok.start):
            spans.append((starts[prev.start[0] - 1] + prev.start[1], starts[tok.end[0] - 1] + tok.end[1],
                          _WORDS[tok.string]))
            prev = None
            continue
        prev = tok
    for begin, end, word in reversed(spans):
        text = text[:begin] + word + text[end:]
    return text


def parse_rule(text: str, columns: Iterable[str], *, key: str = "tiers.rule") -> pl.Expr:
    """Translate a rule into a boolean expression; a bad rule is a :class:`ConfigError`."""
    allowed = set(columns)
    try:
        normalized = _word_operators(text.strip())
        tree = ast.parse(normalized, mode="eval")
    except SyntaxError as exc:
        raise ConfigError(f"bad configuration value '{key}': cannot parse {text!r}: {exc.msg}") from None
    except tokenize.TokenError as exc:
        raise ConfigError(f"bad configuration value '{key}': cannot parse {text!r}: {exc.args[0]}") from None

    def fail(node: ast.AST, why: str) -> ConfigError:
        snippet = ast.get_source_segment(normalized, node) or type(node).__name__
        return ConfigError(f"bad configuration value '{key}': {why}: {snippet!r}",
                           [f"rule: {text}", f"columns: {', '.join(sorted(allowed))}"])

    def value(node: ast.AST) -> object:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool)):
            return node.value
        if isinstance(node, ast.Name) and node.id in ("true", "false"):
            return node.id == "true"
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            inner = value(node.operand)
            if isinstance(inner, (int, float)) and not isinstance(inner, bool):
                return -inner
        raise fail(node, "not allowed in a rule (expected a column, a number, a quoted string or true/false)")

    def operand(node: ast.AST) -> pl.Expr:
        if isinstance(node, ast.Name) and node.id not in ("true", "false"):
            if node.id not in allowed:
                raise fail(node, "unknown column")
            return pl.col(node.id)
        return pl.lit(value(node))

    def walk(node: ast.AST) -> pl.Expr:
        if isinstance(node, ast.BoolOp):
            parts = [walk(v) for v in node.values]
            return pl.all_horizontal(parts) if isinstance(node.op, ast.And) else pl.any_horizontal(parts)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return ~walk(node.operand)
        if isinstance(node, ast.Compare):
            terms = [node.left, *node.comparators]
            out: pl.Expr | None = None
            for op, left, right in zip(node.ops, terms, terms[1:]):
                if isinstance(op, (ast.In, ast.NotIn)):
                    if not isinstance(right, (ast.List, ast.Tuple, ast.Set)):
                        raise fail(right, "'in' needs a list such as [\"a\", \"b\"]")
                    expr = operand(left).is_in([value(v) for v in right.elts])
                    expr = ~expr if isinstance(op, ast.NotIn) else expr
                elif type(op) in _SYMBOLS:
                    expr = COMPARISONS[_SYMBOLS[type(op)]](operand(left), operand(right))
                else:
                    raise fail(node, "unsupported comparison")
                out = expr if out is None else out & expr
            assert out is not None
            return out
        if isinstance(node, ast.Name) and node.id in allowed:
            return pl.col(node.id).cast(pl.Boolean)
        raise fail(node, "not allowed in a rule")

    return walk(tree.body).fill_null(False)
