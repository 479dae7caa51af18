"""Request parsers that refuse what would crash the server."""

import json

from django.conf import settings
from rest_framework import parsers
from rest_framework.exceptions import ParseError

#: Deepest nesting of arrays and objects a request body may have. Our bodies nest
#: three levels at most; Python's parser itself overflows near 1,000.
MAX_DEPTH = 32


def depth(value) -> int:
    """How deep arrays and objects nest in ``value`` (without recursion)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            item = item.values()
        elif not isinstance(item, list):
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in item)
    return deepest


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, with a 400 (not a 500) for bodies nested too deep and
    for numbers or text Python cannot read."""

    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = stream.read().decode(encoding)
        except UnicodeDecodeError as exc:
            raise ParseError(f"The body is not {encoding} text.") from exc
        try:
            data = json.loads(text, parse_constant=_refuse_constant)
        except RecursionError:
            data = None
            nested = True
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from exc
        else:
            nested = depth(data) > MAX_DEPTH
        if nested:
            raise ParseError(
                f"JSON nested deeper than {MAX_DEPTH} levels; send a flatter body."
            )
        return data


def _refuse_constant(name: str):
    # NaN and Infinity are not JSON; Python accepts them unless told otherwise.
    raise ValueError(f"{name} is not a JSON value")
