"""Serializer fields for numbers and free-form data the databases can keep.

Every backend stores integers in 64 bits (PostgreSQL bigint, MongoDB int64,
SQLite's integers): a bigger number in a request must be a 400 naming the field,
not a 500 from the database driver.
"""

from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

INT64_MAX = 2**63 - 1


class ByteCount(serializers.IntegerField):
    """A size in bytes: a whole number from 0 (or ``min_value``) to 2**63-1."""

    def __init__(self, **kwargs):
        kwargs.setdefault("min_value", 0)
        kwargs.setdefault("max_value", INT64_MAX)
        super().__init__(**kwargs)


def _unstorable(value):
    """Why the databases cannot keep ``value`` (a message), or None.

    Beside the 64-bit numbers: PostgreSQL's jsonb refuses the NUL character, and
    a lone surrogate (JSON's ``"\\ud800"``) is not UTF-8 any database can take.
    Serializer CharFields refuse both; free-form data is checked here."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, int) and not -INT64_MAX - 1 <= item <= INT64_MAX:
            return _("Numbers here must be between -2**63 and 2**63-1.")
        elif isinstance(item, str):
            if "\x00" in item:
                return _("Text here may not contain the NUL character (\\x00).")
            if any(0xD800 <= ord(char) <= 0xDFFF for char in item):
                return _("Text here must be valid Unicode: remove the lone surrogates.")
    return None


class StoredDict(serializers.DictField):
    """A JSON object kept as it is, whose numbers fit in 64 bits and whose text
    every backend stores."""

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        problem = _unstorable(value)
        if problem:
            raise serializers.ValidationError(problem)
        return value
