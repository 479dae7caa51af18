"""Runs a page benchmark's measuring half once per database backend.

The catalog and operators' page benches load a fresh database per backend (a
SQLite file, or a PostgreSQL database dropped afterwards) and measure in a child
process with its own settings; the child prints ``RESULT|...`` lines, the parent
collects them and passes every other line through.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def postgres(sql: str) -> None:
    subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qc", sql],
        check=True,
        capture_output=True,
    )


def p95(times: list[float]) -> float:
    """The 95th percentile of ``times``, sorted in place."""
    times.sort()
    return times[int(len(times) * 0.95) - 1]


def run_backend(
    script: str, backend: str, child_args: list[str], pg_database: str, **env_extra
) -> list[list[str]]:
    """Run ``script --child BACKEND *child_args`` on a fresh database of
    ``backend``; return its RESULT rows (the fields after ``RESULT``)."""
    # DEBUG off, as in production (and Django then keeps no list of queries).
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "imager_site.settings",
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50),
        **env_extra,
    }
    folder = Path(tempfile.mkdtemp(prefix=f"{Path(script).stem}-"))
    env["IMAGER_DATA_DIR"] = str(folder)
    env.pop("REDIS_URL", None)
    if backend == "sqlite":
        env["DATABASE_URL"] = f"sqlite:///{folder}/bench.sqlite3"
    else:
        postgres(f"DROP DATABASE IF EXISTS {pg_database}")
        postgres(f"CREATE DATABASE {pg_database}")
        env["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{pg_database}"
    print(f"{backend}:", flush=True)
    try:
        done = subprocess.run(
            [sys.executable, script, "--child", backend, *child_args],
            env=env, cwd=ROOT, capture_output=True, text=True,
        )  # fmt: skip
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if backend == "postgres":
            postgres(f"DROP DATABASE IF EXISTS {pg_database}")
    if done.returncode:
        raise SystemExit(f"{backend} failed:\n{done.stdout}\n{done.stderr}")
    rows = []
    for line in done.stdout.splitlines():
        if line.startswith("RESULT|"):
            rows.append(line.split("|")[1:])
        else:
            print(line)
    return rows
