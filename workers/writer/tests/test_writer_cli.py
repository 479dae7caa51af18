"""The writer's command line: bad slot options fail in one line with status 2."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def writer(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "workers.writer", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], **env},
        check=False,
    )


API = ("--api", "http://127.0.0.1:9", "--username", "host-1")


@pytest.mark.parametrize(
    ("args", "env", "complaint"),
    [
        (API, {"IMAGER_PASSWORD": "x"}, "give at least one --slot NAME=/dev/"),
        ((*API, "--slot", "a"), {"IMAGER_PASSWORD": "x"}, "--slot 'a': write NAME="),
        (
            (*API, "--slot", "a=/dev/null", "--slot", "b=/dev/null"),
            {"IMAGER_PASSWORD": "x"},
            "--slot b and a are the same device /dev/null",
        ),
        (
            API,
            {"IMAGER_PASSWORD": "x", "WRITER_SLOTS": "a=/dev/x,a=/dev/y"},
            "slot 'a' is given twice",
        ),
        (("--slot", "a=/dev/x"), {}, "--api (or IMAGER_API_URL) is required"),
        (
            (*API, "--slot", "a=file:cards/a"),
            {"IMAGER_PASSWORD": "x"},
            "--slot 'a=file:cards/a': a file slot needs an absolute path",
        ),
        (
            (*API, "--slot", "a=file:/tmp/s/../a", "--slot", "b=file:/tmp/a"),
            {"IMAGER_PASSWORD": "x"},
            "--slot b and a are the same file file:/tmp/a",
        ),
        (
            (*API, "--slot", "a=cards/a"),
            {"IMAGER_PASSWORD": "x"},
            "(or start with file: for a file slot)",
        ),
    ],
)
def test_bad_options_are_refused_in_one_line_saying_what_to_do(args, env, complaint):
    done = writer(*args, **env)

    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("python -m workers.writer: ")
    assert complaint in lines[0]
