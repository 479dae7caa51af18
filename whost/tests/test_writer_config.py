"""``python -m workers.writer --config``: the writer takes its slots from
whost's configuration (``--slot`` stays for tests and the demo)."""

import os
import subprocess
import sys
from pathlib import Path

from whost import config as cfg

ROOT = Path(__file__).resolve().parents[2]
API = ("--api", "http://127.0.0.1:9", "--username", "host-1")


def writer(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "workers.writer", *API, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], "IMAGER_PASSWORD": "x"},
        check=False,
    )


def saved(tmp_path: Path, **slots: str) -> Path:
    config = cfg.Config(api_url="http://127.0.0.1:9", username="host-1", host="h")
    config.slots = {name: cfg.SlotEntry(name, path) for name, path in slots.items()}
    cfg.save(config, tmp_path / "whost.toml")
    return tmp_path / "whost.toml"


def test_the_writer_gets_one_slot_per_named_slot_on_its_stable_device(tmp_path):
    path = saved(
        tmp_path,
        left="pci-0000:00:14.0-usb-0:2:1.0-scsi-0:0:0:0",
        right="/devices/virtual/block/loop203",
    )

    assert cfg.writer_slots(path) == {
        "left": "/dev/disk/by-path/pci-0000:00:14.0-usb-0:2:1.0-scsi-0:0:0:0",
        "right": "/dev/loop203",
    }


def test_a_configuration_without_slots_is_refused_in_one_line(tmp_path):
    path = saved(tmp_path)

    done = writer("--config", str(path))

    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"python -m workers.writer: --config {path}: no slot is named yet; run "
        "whost slots identify"
    ]


def test_a_broken_configuration_names_the_key(tmp_path):
    path = tmp_path / "whost.toml"
    path.write_text('[api]\nurl = "http://x"\nusername = "u"\n[host]\nname = 3\n')

    done = writer("--config", str(path))

    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"python -m workers.writer: --config {path}: host.name: must be a string in "
        "double quotes"
    ]


def test_slots_and_a_configuration_together_are_refused(tmp_path):
    done = writer("--slot", "a=/dev/loop1", "--config", str(saved(tmp_path, a="x")))

    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "python -m workers.writer: give --slot or --config, not both"
    ]
