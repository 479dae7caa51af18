"""The workers' systemd units as whost writes them: systemd-analyze accepts
them, their command lines survive systemd's quoting, ``systemctl --root``
enables them for boot; the writer-host compose file takes whost's values."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from whost import config as cfg
from whost import service
from whost.tests.cards import whost
from whost.tests.units import service as read_service

ROOT = Path(__file__).resolve().parents[2]


def host(tmp_path: Path, data: str = "srv/whost") -> cfg.Config:
    config = cfg.Config(
        api_url="https://imager.example.org",
        username="host-1",
        password_file=tmp_path / "etc/whost/password",
        host="host-1",
        data_dir=tmp_path / data,
        slots={
            "slot-1": cfg.SlotEntry(
                "slot-1", "pci-0000:00:14.0-usb-0:2:1.0-scsi-0:0:0:0", "05e3:0751 1"
            ),
            "slot-2": cfg.SlotEntry("slot-2", "/devices/virtual/block/loop203"),
        },
    )
    cfg.save(config, tmp_path / "etc/whost/whost.toml")
    cfg.save_password(config, "pw")
    return config


def written(tmp_path: Path, config: cfg.Config) -> dict[str, Path]:
    paths = cfg.Paths(tmp_path)
    files = {}
    for unit, text in service.unit_files(config, paths).items():
        files[unit] = tmp_path / unit
        files[unit].write_text(text)
    return files


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="needs systemd-analyze (Debian package systemd, in TEST_PACKAGES)",
)
@pytest.mark.parametrize("data", ["srv/whost", "srv/my images 100%/$HOME"])
def test_systemd_analyze_verify_accepts_both_units(tmp_path, data):
    files = written(tmp_path, host(tmp_path, data))

    done = subprocess.run(
        ["systemd-analyze", "verify", *map(str, files.values())],
        capture_output=True,
        text=True,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    # Nothing to complain about, not even a warning (unknown keys are warnings).
    assert done.stderr.strip() == ""


def test_the_command_lines_survive_systemds_quoting(tmp_path):
    config = host(tmp_path, 'srv/my images 100%/$HOME "q" \\b')
    paths = cfg.Paths(tmp_path)
    lines = service.commands(config, paths)

    for unit, path in written(tmp_path, config).items():
        argv, env, cwd = read_service(path)

        assert argv == lines[unit]
        assert env == {"PYTHONUNBUFFERED": "1"}
        assert cwd == str(ROOT)
    assert lines[service.WRITER][:3] == [sys.executable, "-m", "workers.writer"]
    assert lines[service.WRITER][-2:] == ["--config", str(paths.config)]
    assert lines[service.DOWNLOADER][-2:] == ["--reserve", "2G"]
    assert "--image-dir" in lines[service.DOWNLOADER]
    image_dir = lines[service.DOWNLOADER].index("--image-dir") + 1
    assert lines[service.DOWNLOADER][image_dir] == str(config.image_dir)


def test_the_units_restart_for_ever_and_give_a_writing_slot_time_to_finish(tmp_path):
    files = written(tmp_path, host(tmp_path))
    writer = files[service.WRITER].read_text().splitlines()

    assert "Restart=always" in writer
    assert "StartLimitIntervalSec=0" in writer
    assert "TimeoutStopSec=45min" in writer
    assert "WantedBy=multi-user.target" in writer


@pytest.mark.skipif(
    shutil.which("systemctl") is None or shutil.which("journalctl") is None,
    reason="needs systemctl and journalctl (Debian package systemd)",
)
def test_start_enables_the_units_for_boot_logs_reads_them_stop_disables_them(
    tmp_path,
):
    host(tmp_path)
    wants = tmp_path / "etc/systemd/system/multi-user.target.wants"

    started = whost("start", "--root", str(tmp_path))

    assert started.returncode == 0, started.stderr
    assert "not started (an offline root)" in started.stdout
    assert sorted(p.name for p in wants.iterdir()) == [
        "whost-downloader.service",
        "whost-writer.service",
    ]
    assert (tmp_path / "srv/whost/images").is_dir()
    status = whost("status", "--root", str(tmp_path))
    assert "whost-writer.service: enabled" in status.stdout.splitlines()

    logs = whost("logs", "--root", str(tmp_path))
    assert (logs.returncode, logs.stdout) == (0, "-- No entries --\n")

    stopped = whost("stop", "--root", str(tmp_path))

    assert stopped.returncode == 0, stopped.stderr
    assert not wants.exists() or list(wants.iterdir()) == []


@pytest.mark.skipif(
    Path("/run/systemd/system").is_dir(),
    reason="systemd runs here: the test would start real units",
)
def test_start_without_systemd_says_what_to_do_in_one_line(tmp_path):
    host(tmp_path)

    done = whost("start", "--config", str(tmp_path / "etc/whost/whost.toml"))

    assert done.returncode == 1
    assert done.stderr == (
        "whost: systemd is not running on this machine (no /run/systemd/system): "
        "use whost start --docker, or run the workers by hand (README)\n"
    )
    assert not (tmp_path / "etc/systemd").exists()


def test_start_needs_a_named_slot(tmp_path):
    config = host(tmp_path)
    config.slots = {}
    cfg.save(config, tmp_path / "etc/whost/whost.toml")

    done = whost("start", "--root", str(tmp_path))

    assert (done.returncode, done.stderr) == (
        1,
        "whost: no slot is named yet: run whost slots identify first\n",
    )


@pytest.mark.skipif(
    shutil.which("docker-compose") is None,
    reason="needs docker-compose (Debian package docker-compose)",
)
def test_the_writer_host_compose_file_takes_whosts_values(tmp_path):
    config = host(tmp_path)
    paths = cfg.Paths(tmp_path)
    env = paths.compose_env
    env.write_text(service.compose_env(config, paths))

    done = subprocess.run(
        ["docker-compose", "--env-file", str(env), "-f",
         str(service.COMPOSE_FILE), "config"],
        capture_output=True, text=True, check=False,
        env={"PATH": os.environ["PATH"]},
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert (
        "WRITER_SLOTS: slot-1=/dev/disk/by-path/pci-0000:00:14.0-usb-0:2:1.0-scsi-"
        "0:0:0:0,slot-2=/dev/loop203" in done.stdout
    )
    assert f"file: {paths.docker_password}" in done.stdout
    assert "IMAGER_HOST: host-1" in done.stdout
