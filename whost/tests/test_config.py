"""whost's configuration file: what is written is read back the same, a wrong
file is refused in one line naming the key, the secret stays root-only."""

import stat
from pathlib import Path

import pytest

from whost import config as cfg
from whost.config import Config, ConfigError, SlotEntry


def whole(tmp_path: Path) -> Config:
    return Config(
        api_url="https://imager.example.org/base",
        username="host-1",
        password_file=tmp_path / "password",
        host="host-1.workshop",
        data_dir=tmp_path / "data",
        space_per_slot="128G",
        reserve="3G",
        runner="docker",
        slots={
            "slot-1": SlotEntry(
                "slot-1",
                "pci-0000:00:14.0-usb-0:2:1.0-scsi-0:0:0:0",
                reader="05e3:0751 000000000819",
                model="Generic STORAGE DEVICE",
                lun="0:0",
            ),
            # A name TOML must quote, a quote and a backslash in a value.
            "left.é": SlotEntry(
                "left.é", "/devices/virtual/block/loop203", model='a"b\\c'
            ),
        },
    )


def test_a_configuration_written_is_read_back_the_same(tmp_path):
    config = whole(tmp_path)

    cfg.save(config, tmp_path / "whost.toml")

    assert cfg.load(tmp_path / "whost.toml") == config
    assert list(cfg.load(tmp_path / "whost.toml").slots) == ["slot-1", "left.é"]


def test_the_password_is_kept_in_its_own_file_readable_by_root_only(tmp_path):
    config = whole(tmp_path)
    config.password_file = tmp_path / "etc" / "password"

    cfg.save_password(config, "s3cret pass")
    cfg.save(config, tmp_path / "whost.toml")

    mode = stat.S_IMODE(config.password_file.stat().st_mode)
    assert mode == 0o600
    assert config.password() == "s3cret pass"
    assert "s3cret" not in (tmp_path / "whost.toml").read_text()
    assert stat.S_IMODE((tmp_path / "whost.toml").stat().st_mode) == 0o644


def test_writing_replaces_the_file_whole_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "whost.toml"
    path.write_text("old")
    inode = path.stat().st_ino

    cfg.save(whole(tmp_path), path)

    assert path.stat().st_ino != inode  # a rename, not a rewrite in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["whost.toml"]


def test_loop_slots_are_their_loop_devices_and_usb_slots_their_by_path_links():
    usb = SlotEntry("a", "pci-0000:00:14.0-usb-0:2:1.0-scsi-0:0:0:1")
    loop = SlotEntry("b", "/devices/virtual/block/loop203")

    assert usb.device == "/dev/disk/by-path/pci-0000:00:14.0-usb-0:2:1.0-scsi-0:0:0:1"
    assert loop.device == "/dev/loop203"


GOOD = """
[api]
url = "http://127.0.0.1:8000"
username = "host-1"
[host]
name = "host-1"
"""


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("", "api.url: missing; run whost init"),
        ("[api\nurl=1", "not valid TOML: "),
        (GOOD.replace('"http:', '"ftp:'), "api.url: must start with http://"),
        (GOOD.replace('username = "host-1"', "username = 7"), "api.username: must be"),
        (GOOD + 'nmae = "x"\n', "host.nmae: unknown key (known: "),
        (GOOD + "[hots]\n", "hots: unknown section"),
        (GOOD + 'space_per_slot = "lots"\n', "host.space_per_slot: 'lots' is not a"),
        (GOOD + 'data_dir = "srv"\n', "host.data_dir: must be an absolute path"),
        (GOOD + 'runner = "cron"\n', "host.runner: 'cron' is not one of"),
        (GOOD.replace('name = "host-1"', 'name = "host 1"'), "host.name: letters"),
        (GOOD + "[slots.a]\n", "slots.a.path: missing"),
        (GOOD + '[slots."a b"]\npath = "x"\n', 'slots."a b": a slot name has'),
        (GOOD + '[slots.a]\npath = "x"\nport = "y"\n', "slots.a.port: unknown key"),
        (GOOD + '[slots.a]\npath = "/dev/sdb"\n', "slots.a.path: /dev/sdb is a"),
        (
            GOOD + '[slots.a]\npath = "x"\n[slots.b]\npath = "x"\n',
            "slots.b.path: the same reader as slots.a",
        ),
    ],
)
def test_a_bad_file_is_refused_in_one_line_naming_the_key(tmp_path, text, complaint):
    path = tmp_path / "whost.toml"
    path.write_text(text)

    with pytest.raises(ConfigError) as caught:
        cfg.load(path)

    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert complaint in message


def test_a_missing_file_says_to_run_init(tmp_path):
    with pytest.raises(ConfigError, match=r"does not exist: run whost init"):
        cfg.load(tmp_path / "nothing.toml")
