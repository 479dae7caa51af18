"""Reading back the unit files whost writes: the tests run their ExecStart
lines as plain processes (no systemd runs here)."""

import shlex
from pathlib import Path


def unescape(word: str) -> str:
    return word.replace("%%", "%").replace("$$", "$")


def service(unit: Path) -> tuple[list[str], dict[str, str], str]:
    """(argv of ExecStart, Environment= variables, WorkingDirectory)."""
    argv, env, cwd = [], {}, "/"
    for line in unit.read_text().splitlines():
        key, _, value = line.partition("=")
        if key == "ExecStart":
            # systemd's quoting, as whost writes it, is the shell's double quotes.
            argv = [unescape(word) for word in shlex.split(value)]
        elif key == "Environment":
            for item in shlex.split(value):
                name, _, setting = item.partition("=")
                env[name] = unescape(setting)
        elif key == "WorkingDirectory":
            cwd = unescape(shlex.split(value)[0])
    return argv, env, cwd
