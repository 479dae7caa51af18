"""The whost command line: --help everywhere, exit 2 for bad usage, one line
for each error and no traceback."""

import stat

import pytest

from whost import config as cfg
from whost.tests.cards import whost

GOOD = """
[api]
url = "http://127.0.0.1:8000"
username = "host-1"
[host]
name = "host-1"
"""

COMMANDS = [
    ["init"],
    ["slots"],
    ["slots", "identify"],
    ["slots", "list"],
    ["slots", "check"],
    ["slots", "rename"],
    ["slots", "remove"],
    ["network"],
    ["network", "dhcp"],
    ["network", "static"],
    ["start"],
    ["stop"],
    ["restart"],
    ["status"],
    ["logs"],
    ["doctor"],
]


@pytest.mark.parametrize(
    "command", [[], *COMMANDS], ids=lambda c: " ".join(c) or "whost"
)
def test_every_command_has_help(command):
    done = whost(*command, "--help")

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: whost {' '.join(command)}".rstrip())
    assert "Exit codes: 0 done, 1 failed, 2 bad usage." in done.stdout


@pytest.mark.parametrize(
    ("args", "line"),
    [
        ([], "whost: give a command (see whost --help)"),
        (["slots"], "whost slots: give a command (see whost slots --help)"),
        (["network"], "whost network: give a command (see whost network --help)"),
        (
            ["slots", "identify", "--bogus", "--root", "."],
            "whost: unrecognized arguments: --bogus (see whost --help)",
        ),
        (
            ["network", "static", "eth0"],
            "whost network static: the following arguments are required: --address "
            "(see whost network static --help)",
        ),
        (
            ["slots", "identify", "a b"],
            "whost: 'a b': a slot name has 1-50 letters, digits, '.', '_', '-' (see "
            "whost --help)",
        ),
        (
            ["slots", "identify", "a", "a"],
            "whost: a slot name is given twice (see whost --help)",
        ),
        (
            ["init", "--no-check", "--root", "ROOT"],
            "whost: --api is required (or run whost init in a terminal) (see whost "
            "--help)",
        ),
    ],
)
def test_bad_usage_exits_2_with_one_line(tmp_path, args, line):
    args = [str(tmp_path) if arg == "ROOT" else arg for arg in args]

    done = whost(*args, input="")

    assert done.returncode == 2
    assert done.stderr.splitlines() == [line]
    assert done.stdout == ""
    assert not (tmp_path / "etc").exists()


def test_a_command_that_fails_exits_1_with_one_line_and_no_traceback(tmp_path):
    done = whost("status", "--root", str(tmp_path))

    assert done.returncode == 1
    assert done.stderr == (
        f"whost: {tmp_path}/etc/whost/whost.toml does not exist: run whost init\n"
    )


def test_whost_config_and_whost_root_come_from_the_environment(tmp_path):
    done = whost("slots", "check", WHOST_ROOT=str(tmp_path))
    other = whost("slots", "check", WHOST_CONFIG=str(tmp_path / "x.toml"))

    assert f"{tmp_path}/etc/whost/whost.toml does not exist" in done.stderr
    assert f"{tmp_path}/x.toml does not exist" in other.stderr


def test_the_cli_says_what_is_wrong_with_the_file_in_one_line_and_exits_1(tmp_path):
    path = tmp_path / "whost.toml"
    path.write_text(GOOD + 'nmae = "x"\n')

    done = whost("slots", "check", "--config", str(path))

    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"whost: {path}: host.nmae: unknown key (known: data_dir, name, reserve, "
        "runner, space_per_slot)"
    ]


def test_init_writes_the_file_and_the_secret_without_logging_in(tmp_path):
    done = whost(
        "init", "--root", str(tmp_path), "--api", "http://127.0.0.1:9",
        "--username", "host-1", "--host", "host-1", "--password-stdin",
        "--space-per-slot", "1G", "--no-check", input="pw\n",
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    config = cfg.load(tmp_path / "etc/whost/whost.toml")
    assert (config.api_url, config.username, config.host) == (
        "http://127.0.0.1:9", "host-1", "host-1",
    )  # fmt: skip
    assert config.data_dir == tmp_path / "srv/whost"
    assert (tmp_path / "srv/whost/images").is_dir()
    assert config.password() == "pw"
    assert stat.S_IMODE(config.password_file.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--api", "ftp://x"], "whost: --api: must start with http:// or https://"),
        (["--space-per-slot", "big"], "whost: --space-per-slot: 'big' is not a size"),
        (["--host", "a b"], "whost: --host: letters, digits"),
    ],
)
def test_init_refuses_a_bad_value_in_one_line_naming_the_option(
    tmp_path, args, complaint
):
    base = {"--api": "http://127.0.0.1:9", "--host": "h", "--space-per-slot": "1G"}
    base.update(dict(zip(args[::2], args[1::2], strict=True)))
    done = whost(
        "init", "--root", str(tmp_path), "--username", "u", "--password-stdin",
        "--no-check", *(item for pair in base.items() for item in pair),
        input="pw\n",
    )  # fmt: skip

    assert done.returncode == 2
    assert len(done.stderr.splitlines()) == 1
    assert done.stderr.startswith(complaint)
    assert not (tmp_path / "etc/whost/whost.toml").exists()
