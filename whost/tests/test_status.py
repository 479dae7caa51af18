"""``whost status`` reads what the API knows of this host with the host's own
writer account: each slot, the card in it, the copy it writes and how far."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from apps.accounts.testing import PASSWORD
from apps.scheduler.testing import World
from apps.scheduler.testing import order as place_order
from tests.hosting import downloaded_to, make_image, verified_image
from whost import config as cfg
from whost.tests.cards import ROOT, whost
from workers.common.api import ApiClient

pytestmark = pytest.mark.django_db(transaction=True)


def configured(root: Path, url: str, password: str = PASSWORD) -> None:
    config = cfg.Config(
        api_url=url,
        username="writer-host",
        password_file=root / "etc/whost/password",
        host="host-1",
        data_dir=root / "srv/whost",
        slots={
            name: cfg.SlotEntry(name, f"pci-0000:00:14.0-usb-0:{port}:1.0-scsi-0:0:0:0")
            for port, name in enumerate(["slot-1", "slot-2", "slot-3"], start=1)
        },
    )
    cfg.save(config, root / "etc/whost/whost.toml")
    cfg.save_password(config, password)


def test_status_shows_each_slot_its_card_and_the_copy_it_writes(live_server, tmp_path):
    world = World()  # host-1's writer has slot-1 and slot-2; slot-3 is new
    order = place_order(world.client, quantity=2)
    files = make_image(tmp_path / "built")
    verified_image(world, order, files)
    downloaded_to(order, "host-1", tmp_path / "images", files)
    # The writer's own calls: a card in slot-1 claims a copy and is 45% written.
    api = ApiClient(live_server.url, "writer-host", PASSWORD)
    writer = str(world.writer.pk)
    task = api.post(
        "api/v1/tasks/claim/",
        {"worker": writer, "slot": "slot-1", "card_capacity": 31_914_983_424},
    )["task"]
    api.post(
        f"api/v1/tasks/{task['id']}/renew/",
        {"lease_id": task["lease_id"], "phase": "writing", "percent": 45},
    )
    api.post(
        f"api/v1/workers/{writer}/slots/slot-1/",
        {
            "state": "writing",
            "percent": 45,
            "card_capacity": 31_914_983_424,
            "message": "Writing: do not remove the card.",
        },
    )
    configured(tmp_path, live_server.url)

    done = whost("status", "--root", str(tmp_path))

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"host host-1, API {live_server.url}"
    assert lines[3].startswith("downloader: online, last seen ")
    assert lines[4].startswith("writer: online, last seen ")
    rows = [line.split() for line in lines[5:]]
    assert rows[0] == ["slot", "state", "card", "task", "progress", "message"]
    copy = f"{task['copy_number']} of order {str(order.pk)[:8]}"
    assert " ".join(rows[1]) == (
        f"slot-1 writing 31.9 GB copy {copy} 45% Writing: do not remove the card."
    )
    assert rows[2][:3] == ["slot-2", "empty", "-"]
    assert " ".join(rows[3]) == (
        "slot-3 unknown - - - the writer has not reported it (whost start, or "
        "whost restart after naming it)"
    )


def test_status_with_a_refused_password_says_what_to_do_in_one_line(
    live_server, tmp_path
):
    World()
    configured(tmp_path, live_server.url, password="wrong")

    done = whost("status", "--root", str(tmp_path))

    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "whost: the API refused writer-host's password: check it (whost init), or "
        "give the account a new one on the central site (manage.py create_account "
        "writer-host --update --write-password FILE)"
    ]


def test_status_watch_keeps_a_bar_per_slot_until_ctrl_c(live_server, tmp_path):
    World()
    configured(tmp_path, live_server.url)
    watching = subprocess.Popen(
        [sys.executable, "-m", "whost", "status", "--watch", "0.2",
         "--root", str(tmp_path)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(3)
    watching.send_signal(signal.SIGINT)
    out, bars = watching.communicate(timeout=30)

    assert watching.returncode == 0, bars
    assert "slot-1 empty" in bars
    assert "slot-3 unknown" in bars
    assert out.splitlines()[0] == f"host host-1, API {live_server.url}"
