"""Read settings from environment variables without crashing on bad values.

A bad value is recorded in ``ERRORS`` and a safe fallback is returned, so Django can
finish loading and report every problem at once through the system check framework
(``apps.common.checks``) with an id and a hint, instead of one traceback at a time.
"""

import os
from dataclasses import dataclass
from pathlib import Path

TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class EnvError:
    id: str
    variable: str
    msg: str
    hint: str


ERRORS: list[EnvError] = []


def error(check_id: str, variable: str, msg: str, hint: str) -> None:
    ERRORS.append(EnvError(check_id, variable, msg, hint))


def raw(name: str) -> str | None:
    """The variable's value, or None when it is unset or empty."""
    value = os.environ.get(name, "").strip()
    return value or None


def string(name: str, default: str = "") -> str:
    return raw(name) or default


def boolean(name: str, default: bool) -> bool:
    value = raw(name)
    if value is None:
        return default
    if value.lower() in TRUE:
        return True
    if value.lower() in FALSE:
        return False
    error(
        "imager.E001",
        name,
        f"{name}={value!r} is not a boolean.",
        f"Set {name} to one of: true, false, 1, 0, yes, no, on, off.",
    )
    return default


def integer(name: str, default: int, minimum: int = 0) -> int:
    value = raw(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        number = None
    if number is None or number < minimum:
        error(
            "imager.E002",
            name,
            f"{name}={value!r} is not a whole number of at least {minimum}.",
            f"Set {name} to a whole number such as {default}.",
        )
        return default
    return number


def choice(name: str, default: str, choices: list[str]) -> str:
    value = raw(name)
    if value is None:
        return default
    if value.upper() in (c.upper() for c in choices):
        return value.upper() if default.isupper() else value.lower()
    error(
        "imager.E004",
        name,
        f"{name}={value!r} is not one of the accepted values.",
        f"Set {name} to one of: {', '.join(choices)}.",
    )
    return default


def csv(name: str, default: list[str]) -> list[str]:
    value = raw(name)
    if value is None:
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


def directory(name: str, default: Path) -> Path:
    value = raw(name)
    path = Path(value).expanduser().resolve() if value else default
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        error(
            "imager.E003",
            name,
            f"{name}: cannot create the folder {path} ({exc.strerror}).",
            f"Point {name} to a folder this process may write to.",
        )
    return path
