"""What every step of a build shares: the tools it runs (sfdisk, mke2fs,
debugfs, mtools, skopeo: found in the sbin folders too, as they need no root on
an image file), and how it fails (BuildError) or stops (BuildCanceled)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping

from workers.common.progress import Cancel, Canceled

TOOLS = {
    "sfdisk": "fdisk",
    "mke2fs": "e2fsprogs",
    "debugfs": "e2fsprogs",
    "mcopy": "mtools",
}
#: needed only by recipes with OCI images
OCI_TOOLS = {"skopeo": "skopeo"}
#: Debian keeps sfdisk and mke2fs in the sbin folders, which are not on an
#: ordinary user's PATH, though on an image file they need no root.
SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")


class BuildError(Exception):
    """The image could not be built; the message says what to change."""


class BuildCanceled(Canceled):
    """cancel() returned True; every file of the build was removed."""


def tool_path() -> str:
    """PATH, then the sbin folders it lacks: a tool earlier on PATH still wins."""
    path = os.environ.get("PATH", os.defpath).split(os.pathsep)
    return os.pathsep.join(path + [folder for folder in SBIN if folder not in path])


def run(
    command: list[str],
    *,
    what: str,
    stdin: str | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess:
    result = subprocess.run(
        command,
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": tool_path(), "LC_ALL": "C", **(env or {})},
        check=False,
    )
    if result.returncode != 0:
        message = (result.stderr or result.stdout).strip()
        raise BuildError(f"could not {what}: {command[0]} failed: {message}")
    return result


def check_tools(*, oci: bool = False) -> None:
    tools = {**TOOLS, **(OCI_TOOLS if oci else {})}
    missing = [tool for tool in tools if shutil.which(tool, path=tool_path()) is None]
    if missing:
        packages = " ".join(sorted({tools[tool] for tool in missing}))
        raise BuildError(
            f"{', '.join(missing)} not found on PATH nor in {', '.join(SBIN)}: "
            f"install the {packages} "
            "package(s) (Debian: apt-get install " + packages + ")"
        )


def check_cancel(cancel: Cancel | None) -> None:
    if cancel is not None and cancel():
        raise BuildCanceled("image build canceled")
