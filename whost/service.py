"""Running the host's workers: the downloader and the writer (one process for
every named slot) as systemd units whost writes and enables, so they come back
after a reboot or a power cut; or, with ``--docker``, the writer-host compose
file of ``docker/``.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from whost.config import Config, Paths, write_atomic

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "docker" / "compose.writer-host.yml"
DOWNLOADER = "whost-downloader.service"
WRITER = "whost-writer.service"
UNITS = (DOWNLOADER, WRITER)
PROJECT = "whost"  # the compose project name: its containers are whost-…
CONTAINER_UID = 10001  # the worker image's user (docker/Dockerfile.worker)


class ServiceError(Exception):
    """A service manager failed or is missing; the message says what to do."""


# --- systemd ----------------------------------------------------------------------

SAFE = re.compile(r"^[A-Za-z0-9_@+=:,./-]+$")


def quote(arg: str) -> str:
    """One argument of an ExecStart line: systemd splits on spaces, honours
    double quotes with backslash escapes, and expands % specifiers and $
    variables, so those are doubled."""
    arg = arg.replace("%", "%%").replace("$", "$$")
    if SAFE.match(arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def commands(config: Config, paths: Paths, python: str | None = None) -> dict:
    """The command line of each unit."""
    python = python or sys.executable
    common = [
        "--api",
        config.api_url,
        "--username",
        config.username,
        "--password-file",
        str(config.password_file),
        "--host",
        config.host,
        "--image-dir",
        str(config.image_dir),
        "--progress",
        "log",
    ]
    return {
        DOWNLOADER: [
            python,
            "-m",
            "workers.downloader",
            *common,
            "--reserve",
            config.reserve,
        ],
        WRITER: [
            python,
            "-m",
            "workers.writer",
            *common,
            "--config",
            str(paths.config),
        ],
    }


def unit_files(config: Config, paths: Paths, python: str | None = None) -> dict:
    """``{unit name: text}`` for both workers."""
    lines = commands(config, paths, python)
    what = {
        DOWNLOADER: (
            f"downloader (images for {config.host})",
            # A transfer resumes after a restart: no need to wait for it.
            "60",
        ),
        WRITER: (
            f"writer ({len(config.slots)} slot(s) of {config.host})",
            # On SIGTERM a slot that is writing finishes its card first.
            "45min",
        ),
    }
    files = {}
    for unit, argv in lines.items():
        description, stop = what[unit]
        files[unit] = "\n".join(
            [
                f"# Written by whost start from {paths.config}; whost start rewrites",
                "# it: change the configuration, then whost restart.",
                "[Unit]",
                f"Description=Imager writer host: {description}",
                "Wants=network-online.target",
                "After=network-online.target systemd-udevd.service",
                # Never give up: after a power cut the API may come back last.
                "StartLimitIntervalSec=0",
                "",
                "[Service]",
                "Type=exec",
                "ExecStart=" + " ".join(quote(arg) for arg in argv),
                f"WorkingDirectory={quote(str(REPO))}",
                "Environment=PYTHONUNBUFFERED=1",
                "Restart=always",
                "RestartSec=10",
                f"TimeoutStopSec={stop}",
                "",
                "[Install]",
                "WantedBy=multi-user.target",
                "",
            ]
        )
    return files


def systemd_running() -> bool:
    """sd_booted(): systemd is the init system of this machine."""
    return Path("/run/systemd/system").is_dir()


def run(command: list[str], what: str, *, capture=False) -> subprocess.CompletedProcess:
    try:
        done = subprocess.run(command, capture_output=capture, text=True, check=False)
    except FileNotFoundError:
        raise ServiceError(
            f"{command[0]} is not installed: it is needed to {what}"
        ) from None
    if done.returncode != 0:
        detail = (done.stderr or "").strip().splitlines()
        raise ServiceError(
            f"{' '.join(command)} failed ({detail[-1] if detail else done.returncode})"
        )
    return done


class Systemd:
    name = "systemd"

    def __init__(self, config: Config, paths: Paths):
        self.config = config
        self.paths = paths

    def systemctl(self, *args: str, capture=False) -> subprocess.CompletedProcess:
        base = ["systemctl"]
        if not self.paths.live:
            base.append(f"--root={self.paths.root}")
        return run([*base, *args], "manage the workers' units", capture=capture)

    def require_systemd(self) -> None:
        if self.paths.live and not systemd_running():
            raise ServiceError(
                "systemd is not running on this machine (no /run/systemd/system): "
                "use whost start --docker, or run the workers by hand (README)"
            )

    def write_units(self) -> list[Path]:
        written = []
        for unit, text in unit_files(self.config, self.paths).items():
            path = self.paths.units / unit
            write_atomic(path, text, 0o644)
            written.append(path)
        return written

    def start(self) -> str:
        self.require_systemd()
        written = self.write_units()
        if not self.paths.live:
            self.systemctl("enable", *UNITS)
            return (
                f"wrote and enabled {', '.join(str(p) for p in written)} under "
                f"{self.paths.root}; not started (an offline root)"
            )
        self.systemctl("daemon-reload")
        self.systemctl("enable", *UNITS)
        # restart, not start: a unit that runs already must take the new
        # command line (a slot that is writing finishes its card first).
        self.systemctl("restart", *UNITS)
        return f"started and enabled {', '.join(UNITS)}: they start at boot"

    def stop(self) -> str:
        self.require_systemd()
        if not self.paths.live:
            self.systemctl("disable", *UNITS)
            return f"disabled {', '.join(UNITS)} under {self.paths.root}"
        self.systemctl("disable", "--now", *UNITS)
        return (
            f"stopped and disabled {', '.join(UNITS)}: they stay stopped after a "
            "reboot until whost start (a slot that was writing finished its card)"
        )

    def restart(self) -> str:
        self.require_systemd()
        self.write_units()
        if not self.paths.live:
            return f"rewrote the units under {self.paths.root}; not started"
        self.systemctl("daemon-reload")
        self.systemctl("restart", *UNITS)
        return f"restarted {', '.join(UNITS)}"

    def states(self) -> dict[str, str]:
        if self.paths.live and not systemd_running():
            return dict.fromkeys(UNITS, "systemd not running")
        found = {}
        for unit in UNITS:
            if not (self.paths.units / unit).exists():
                found[unit] = "not installed (whost start)"
                continue
            # An offline root runs nothing: whether it would start at boot.
            args = ["is-active", unit] if self.paths.live else ["is-enabled", unit]
            base = ["systemctl"] + (
                [] if self.paths.live else [f"--root={self.paths.root}"]
            )
            try:
                done = subprocess.run(
                    [*base, *args], capture_output=True, text=True, check=False
                )
                found[unit] = done.stdout.strip() or "unknown"
            except FileNotFoundError:
                found[unit] = "systemctl missing"
        return found

    def logs(self, lines: int, follow: bool) -> list[str]:
        command = ["journalctl", "--no-pager", "-n", str(lines)]
        for unit in UNITS:
            command += ["-u", unit]
        if not self.paths.live:
            command.append(f"--root={self.paths.root}")
        if follow:
            command.append("--follow")
        return command


# --- docker -----------------------------------------------------------------------


def compose_command() -> list[str]:
    """``docker compose`` (v2) where it works, else ``docker-compose`` (1.29)."""
    if shutil.which("docker"):
        done = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, check=False
        )
        if done.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise ServiceError(
        "neither docker compose nor docker-compose is installed: "
        "apt-get install docker.io docker-compose"
    )


def disk_gid() -> int:
    import grp

    try:
        return grp.getgrnam("disk").gr_gid
    except KeyError:
        return 6


def compose_env(config: Config, paths: Paths) -> str:
    """The values docker/compose.writer-host.yml substitutes (its .env)."""
    slots = ",".join(f"{name}={slot.device}" for name, slot in config.slots.items())
    values = {
        "IMAGER_API_URL": config.api_url,
        "IMAGER_USERNAME": config.username,
        "IMAGER_HOST": config.host,
        "WRITER_SLOTS": slots,
        "DISK_GID": str(disk_gid()),
        "DOWNLOADER_RESERVE": config.reserve,
        "HOST_PASSWORD_FILE": str(paths.docker_password),
    }
    lines = [f"# Written by whost start --docker from {paths.config}."]
    lines += [f"{key}={value}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


class Docker:
    name = "docker"

    def __init__(self, config: Config, paths: Paths):
        self.config = config
        self.paths = paths

    def base(self) -> list[str]:
        return [
            *compose_command(),
            "--project-name",
            PROJECT,
            "--env-file",
            str(self.paths.compose_env),
            "--file",
            str(COMPOSE_FILE),
        ]

    def prepare(self) -> None:
        if not self.config.slots:
            raise ServiceError("no slot is named yet: run whost slots identify")
        write_atomic(
            self.paths.compose_env, compose_env(self.config, self.paths), 0o600
        )
        # The containers run as uid 10001: they get a copy of the password
        # readable by that user alone (and root).
        password = self.config.password()
        write_atomic(self.paths.docker_password, password + "\n", 0o400)
        if os.geteuid() == 0:
            os.chown(self.paths.docker_password, CONTAINER_UID, -1)

    def start(self) -> str:
        self.prepare()
        run([*self.base(), "up", "-d", "--build"], "start the containers")
        return (
            f"started the compose project {PROJECT} ({COMPOSE_FILE.name}); "
            "restart: unless-stopped brings it back after a reboot"
        )

    def stop(self) -> str:
        run([*self.base(), "down"], "stop the containers")
        return f"stopped the compose project {PROJECT}"

    def restart(self) -> str:
        self.prepare()
        run([*self.base(), "up", "-d", "--force-recreate"], "restart the containers")
        return f"restarted the compose project {PROJECT}"

    def states(self) -> dict[str, str]:
        try:
            done = run([*self.base(), "ps"], "list the containers", capture=True)
        except ServiceError as exc:
            return {"docker": str(exc)}
        return {"docker": "\n" + done.stdout.rstrip()}

    def logs(self, lines: int, follow: bool) -> list[str]:
        command = [*self.base(), "logs", "--tail", str(lines)]
        return [*command, "--follow"] if follow else command


def manager(config: Config, paths: Paths, docker: bool | None = None):
    use = docker if docker is not None else config.runner == "docker"
    return (Docker if use else Systemd)(config, paths)
