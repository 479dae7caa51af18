"""Structured log lines: one per login, refusal and transfer, in logfmt
(``event=transfer user=creator-1 bytes=1048576 seconds=0.52 ...``) on the
``ftp.audit`` logger, so they are easy to grep and to parse."""

import logging
import re
import shlex

logger = logging.getLogger("ftp.audit")

_PLAIN = re.compile(r"^[A-Za-z0-9_.:/@+-]+$")


def _value(value) -> str:
    if value is None:
        return '""'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        value = f"{value:.3f}"
    text = str(value)
    if _PLAIN.match(text):
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")
    return f'"{escaped}"'


def format_line(event: str, **fields) -> str:
    return " ".join(
        [f"event={_value(event)}"] + [f"{k}={_value(v)}" for k, v in fields.items()]
    )


def parse_line(line: str) -> dict:
    """The fields of a line written by ``format_line`` (anything before
    ``event=`` is ignored)."""
    start = line.find("event=")
    fields = {}
    for token in shlex.split(line[start:]):
        key, _, value = token.partition("=")
        fields[key] = value
    return fields


def record(event: str, level: int = logging.INFO, **fields) -> None:
    logger.log(level, format_line(event, **fields))
