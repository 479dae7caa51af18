"""No input makes the API fail: schemathesis against a live server, as each role.

Schemathesis (its command line, in its own process) reads the OpenAPI schema the
site serves, sends each operation generated requests, valid and invalid ones,
and fails on any 5xx answer or any answer that breaks the schema. Each role runs
in its own test, on a fresh database with one object of each kind: what one
caller deletes or disables (an admin may disable accounts) never starves the next.

Path parameters name those objects, so requests reach the code behind the
lookup instead of stopping at a 404. ``IMAGER_SCHEMATHESIS_EXAMPLES`` changes how
many cases each operation gets, ``IMAGER_SCHEMATHESIS_SEED`` the seed (fixed by
default, so a run is repeatable and a failure is the code's, not the dice's).
"""

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from django.utils import timezone

from apps.accounts.models import Role
from apps.accounts.testing import make_user
from apps.accounts.tokens import RefreshToken
from apps.orders.models import OrderKind
from apps.orders.pipeline import create_write_tasks, on_image_verified
from apps.scheduler.models import ImageState, Task, TaskKind, TaskStatus, WorkerKind
from apps.scheduler.services.claims import claim_task
from apps.scheduler.services.workers import register_worker
from apps.scheduler.testing import World, configuration, image, order

pytestmark = pytest.mark.django_db(transaction=True)

ROLES = [role.value for role in Role]
EXAMPLES = int(os.environ.get("IMAGER_SCHEMATHESIS_EXAMPLES", "3"))
SEED = int(os.environ.get("IMAGER_SCHEMATHESIS_SEED", "13"))
# Fuzzing only by default: the coverage phase (every boundary and wrong type of
# every field) sends about 4,500 requests per role, minutes each on 2 cores. Set
# "coverage,fuzzing" for a thorough run after changing the API.
PHASES = os.environ.get("IMAGER_SCHEMATHESIS_PHASES", "fuzzing")
# A 5xx, or a documented answer whose body or content type the schema does not
# describe. status_code_conformance is not among them: drf-spectacular documents
# success answers only, so every 400, 401, 403 and 404 would count against it.
CHECKS = "not_a_server_error,response_schema_conformance,content_type_conformance"


def built(world, an_order):
    """``an_order`` as if its image had been built, uploaded and verified."""
    Task.objects.filter(order=an_order, kind=TaskKind.CREATE).update(
        status=TaskStatus.SUCCEEDED, finished_at=timezone.now()
    )
    on_image_verified(image(an_order, world.warehouse))
    an_order.refresh_from_db()
    return an_order


def objects(role: str):
    """One object of each kind, in the states the API acts on. Returns ``role``'s
    account and the object each path parameter names in its requests."""
    world = World()
    accounts = {
        Role.CLIENT: world.client,
        Role.MANAGER: world.manager,
        Role.CREATOR: world.creator_account,
        Role.WRITER: world.host_account,
        Role.WAREHOUSE: world.warehouse_account,
        Role.ADMIN: make_user(Role.ADMIN, "admin", email="admin@example.org"),
        Role.DOWNLOADER: make_user(Role.DOWNLOADER, "downloader"),
    }
    downloader = register_worker(
        account=accounts[Role.DOWNLOADER],
        kind=WorkerKind.DOWNLOADER,
        host="host-2",
        capabilities={"free_disk": 10**11},
    )
    kit = configuration(world.client)
    order(world.client, kit)
    # Workers see the tasks they hold: the creator holds this build.
    build = claim_task(worker=world.creator).task
    cards = built(world, order(world.client, kit, quantity=2))
    download = Task.objects.get(order=cards, kind=TaskKind.DOWNLOAD)
    Task.objects.filter(pk=download.pk).update(
        host="host-1", status=TaskStatus.SUCCEEDED, finished_at=timezone.now()
    )
    download.host = "host-1"
    create_write_tasks(cards, download)  # two copies wait for cards on host-1
    link = built(world, order(world.client, kit, kind=OrderKind.DOWNLOAD))
    old = built(world, order(world.client, kit))
    fetch = claim_task(worker=downloader, free_disk=10**11).task  # old's image
    assert build and fetch, "the set-up's claims found no task"
    old.image.state = ImageState.DELETABLE  # the warehouse may delete it
    old.image.save(update_fields=["state"])

    # Each worker role names its own worker and a task of its kind; the others
    # (staff, client, warehouse) the writer's, as a manager looking at it would.
    worker = {Role.CREATOR: world.creator, Role.DOWNLOADER: downloader}.get(
        role, world.writer
    )
    task = {
        Role.CREATOR: build,
        Role.DOWNLOADER: fetch,
    }.get(role) or Task.objects.filter(order=cards, kind=TaskKind.WRITE).first()
    paths = {
        "/api/v1/configurations/{id}/": kit.pk,
        "/api/v1/orders/{id}/": cards.pk,
        "/api/v1/orders/{id}/download/": link.pk,
        "/api/v1/users/{id}/": world.client.pk,
        "/api/v1/warehouses/deletions/{image_id}/": old.image.pk,
        "/api/v1/tasks/{id}/": task.pk,
        "/api/v1/workers/{id}/": worker.pk,
    }
    return accounts[role], paths


def config_file(folder: Path, token: str, paths: dict) -> Path:
    """schemathesis.toml: the caller's token, the cases per operation, and the
    objects each path parameter names (every operation under that path)."""
    lines = [
        f"seed = {SEED}",
        "workers = 1",
        # A loaded machine makes generation and answers slow; slow is not what
        # this test is about, and must not make it fail now and then.
        'suppress-health-check = ["too_slow"]',
        "request-timeout = 60",
        f'headers = {{ Authorization = "Bearer {token}" }}',
        "[generation]",
        f"max-examples = {EXAMPLES}",
        # Nowhere to keep examples between runs: a run depends on its seed only.
        'database = "none"',
    ]
    # The first operation entry that matches wins: the longest prefix first.
    for prefix in sorted(paths, key=len, reverse=True):
        name = prefix.rstrip("/").rsplit("{", 1)[1].rstrip("}")
        pattern = "^" + prefix.replace("{", r"\\{").replace("}", r"\\}")
        values = f'"path.{name}" = "{paths[prefix]}"'
        if prefix == "/api/v1/workers/{id}/":
            values += ', "path.slot_name" = "slot-1"'
        lines += [
            "[[operations]]",
            f'include-path-regex = "{pattern}"',
            f"parameters = {{ {values} }}",
        ]
    path = folder / "schemathesis.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def schema(live_server, tmp_path_factory) -> Path:
    """The schema the site serves, fetched once: it is the same for every caller,
    and making it takes seconds."""
    answer = requests.get(f"{live_server.url}/api/schema/?format=json", timeout=60)
    answer.raise_for_status()
    path = tmp_path_factory.mktemp("schema") / "openapi.json"
    path.write_bytes(answer.content)
    return path


def schemathesis(live_server, schema: Path, folder: Path, config: Path):
    command = shutil.which("st", path=str(Path(sys.executable).parent))
    assert command, "schemathesis is missing; pip install -r requirements-dev.txt"
    return subprocess.run(
        [
            command,
            "--config-file",
            str(config),
            "--no-color",
            "run",
            str(schema),
            "--url",
            live_server.url,
            "--checks",
            CHECKS,
            "--phases",
            PHASES,
            # Reports (none asked for) and crash files stay out of the clone.
            "--report-dir",
            str(folder / "report"),
        ],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.mark.parametrize("role", ROLES)
def test_no_generated_request_gets_a_5xx_or_an_answer_off_the_schema(
    live_server, schema, tmp_path, role
):
    begun = time.monotonic()
    account, paths = objects(role)
    token = str(RefreshToken.for_user(account).access_token)
    config = config_file(tmp_path, token, paths)
    started = time.monotonic()
    result = schemathesis(live_server, schema, tmp_path, config)
    # Shown with ``pytest -rP``: each role's time and schemathesis's warnings
    # (operations a role may not call, data the API refused).
    print(
        f"set-up {started - begun:.1f}s, schemathesis {time.monotonic() - started:.1f}s"
    )
    output = result.stdout + result.stderr
    print(output)
    assert result.returncode == 0, f"schemathesis as {role} found:\n{output}"
    # A run that tested nothing (no schema, every operation skipped) would pass.
    selected = re.search(r"Selected: (\d+)/", output)
    tested = re.search(r"Tested: (\d+)", output)
    assert selected and tested, output
    assert int(tested[1]) == int(selected[1]) >= 50, output
