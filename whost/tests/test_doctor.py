"""``whost doctor`` against a live API, a warehouse FTP server that logs in
with API tokens, and a loop device as the named slot: every check passes, then
each one fails in turn, for a real reason, with its line and hint."""

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from apps.accounts.testing import PASSWORD
from apps.scheduler.testing import World
from tests.hosting import warehouse
from whost import config as cfg
from whost.tests.cards import needs_loop, whost
from whost.tests.cards import readers as readers  # fixture

pytestmark = [pytest.mark.django_db(transaction=True), needs_loop]
CHECKS = [
    "config",
    "root",
    "udev",
    "space",
    "api",
    "login",
    "warehouse",
    "slots",
    "clock",
]


@dataclass
class Host:
    root: Path
    world: World
    reader: object

    @property
    def config_path(self) -> Path:
        return self.root / "etc/whost/whost.toml"

    def config(self) -> cfg.Config:
        return cfg.load(self.config_path)

    def change(self, **values) -> None:
        config = self.config()
        for key, value in values.items():
            setattr(config, key, value)
        cfg.save(config, self.config_path)


@pytest.fixture
def host(live_server, tmp_path, readers):
    world = World()
    reader = readers()
    (tmp_path / "warehouse").mkdir()
    with warehouse(tmp_path / "warehouse", live_server.url) as ftp:
        world.warehouse.ftp_url = ftp.url
        world.warehouse.save(update_fields=["ftp_url"])
        root = tmp_path / "root"
        done = whost(
            "init", "--root", str(root), "--api", live_server.url,
            "--username", "writer-host", "--host", "host-1", "--password-stdin",
            "--space-per-slot", "1M", input=PASSWORD + "\n",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        host = Host(root, world, reader)
        config = host.config()
        loop = f"/devices/virtual/block/{Path(reader.device).name}"
        config.slots = {"slot-1": cfg.SlotEntry("slot-1", loop)}
        cfg.save(config, host.config_path)
        yield host


def doctor(host: Host, *prefix: str) -> tuple[int, dict[str, str]]:
    done = whost("doctor", "--root", str(host.root), prefix=prefix)
    lines = done.stdout.splitlines()
    assert done.stderr == ""
    found = {line.split(":")[0].split()[1]: line for line in lines}
    assert list(found) == CHECKS, lines
    return done.returncode, found


def failing(lines: dict[str, str]) -> list[str]:
    return [name for name, line in lines.items() if line.startswith("FAIL ")]


def test_a_host_ready_to_write_passes_every_check(host):
    code, lines = doctor(host)

    assert failing(lines) == []
    assert code == 0
    assert lines["login"] == "ok login: logged in as writer-host (role writer)"
    assert lines["warehouse"].startswith("ok warehouse: main at ftp://127.0.0.1:")
    assert lines["warehouse"].endswith(": logged in with a token")
    assert lines["slots"] == "ok slots: 1 named, every reader present"
    assert lines["udev"].startswith("ok udev: pyudev 0.24.5, ")
    assert lines["clock"].startswith("ok clock: ")


def test_a_password_file_others_may_read_fails_the_config_check(host):
    host.config().password_file.chmod(0o644)

    code, lines = doctor(host)

    assert (code, failing(lines)) == (1, ["config"])
    secret = host.config().password_file
    assert lines["config"] == (
        f"FAIL config: {secret} is mode 644, owner uid 0: others may read the "
        f"password (chown root {secret} && chmod 600 {secret})"
    )


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare")
def test_not_being_root_fails_the_root_check(host):
    # A user namespace without a mapping: whost runs as the overflow uid.
    code, lines = doctor(host, "unshare", "--user")

    assert code == 1
    assert lines["root"] == (
        "FAIL root: running as uid 65534: the workers open block devices and whost "
        "writes to /etc (run it with sudo)"
    )


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare")
def test_uevents_that_never_arrive_fail_the_udev_check(host):
    # A rootless container's namespaces: the kernel sends its uevents to the
    # host's, so the test event never comes back.
    code, lines = doctor(host, "unshare", "--user", "--map-root-user", "--net")

    assert code == 1
    assert lines["udev"].startswith(
        "FAIL udev: no kernel uevent came back within 3 s: cards would be seen "
        "late, by polling only (run on the host's network namespace"
    )


def test_too_little_free_space_fails_the_space_check(host):
    host.change(space_per_slot="100000T")

    code, lines = doctor(host)

    assert (code, failing(lines)) == (1, ["space"])
    assert (
        "102400000.0G wanted: 1 slot(s) at 100000T (free some space" in lines["space"]
    )


def test_an_api_that_does_not_answer_fails_the_api_check_and_what_needs_it(host):
    host.change(api_url="http://127.0.0.1:9")

    code, lines = doctor(host)

    assert (code, failing(lines)) == (1, ["api", "login", "warehouse", "clock"])
    assert lines["api"] == (
        "FAIL api: cannot reach http://127.0.0.1:9 (ConnectionError) (check api.url, "
        "the network (whost network) and the firewall)"
    )
    assert (
        lines["login"]
        == "FAIL login: not tried: the API is unreachable (see api above)"
    )


def test_a_wrong_password_fails_the_login_check(host):
    cfg.save_password(host.config(), "not-the-password")

    code, lines = doctor(host)

    assert (code, failing(lines)) == (1, ["login", "warehouse"])
    assert lines["login"].startswith(
        "FAIL login: writer-host: POST api/v1/auth/token/:"
    )
    assert "--update --write-password FILE)" in lines["login"]


def test_a_warehouse_this_host_cannot_reach_fails_the_warehouse_check(host):
    host.world.warehouse.ftp_url = "ftp://127.0.0.1:9"
    host.world.warehouse.save(update_fields=["ftp_url"])

    code, lines = doctor(host)

    assert (code, failing(lines)) == (1, ["warehouse"])
    assert lines["warehouse"].startswith(
        "FAIL warehouse: main at ftp://127.0.0.1:9: [Errno 111] Connection refused"
    )
    assert lines["warehouse"].endswith(
        "(open the warehouse's FTP port and passive ports to this host; a refused "
        "login means the warehouse cannot check tokens with the API)"
    )


def test_a_named_reader_that_is_gone_fails_the_slots_check(host):
    device = host.reader.device
    host.reader.close()  # unplugged

    code, lines = doctor(host)

    assert (code, failing(lines)) == (1, ["slots"])
    assert lines["slots"] == (
        f"FAIL slots: no reader for slot-1 ({device}) (plug the readers in; whost "
        "slots check says if one moved)"
    )


@pytest.mark.skipif(
    shutil.which("faketime") is None,
    reason="needs faketime (Debian package faketime, in TEST_PACKAGES)",
)
def test_a_clock_five_minutes_ahead_fails_the_clock_check(host):
    code, lines = doctor(host, "faketime", "-f", "+5m")

    assert (code, failing(lines)) == (1, ["clock"])
    assert lines["clock"].startswith("FAIL clock: 30")
    assert lines["clock"].endswith(
        " s ahead of the API's (set the time: apt-get install systemd-timesyncd "
        "(or chrony))"
    )
