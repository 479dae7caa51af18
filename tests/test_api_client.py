"""The workers' HTTP client and lease keeper against a live API server."""

import pytest
from django.utils import timezone

from apps.accounts.models import RevokedToken, Role
from apps.accounts.testing import PASSWORD, make_user
from apps.orders.pipeline import cancel_order
from apps.scheduler.models import Task
from apps.scheduler.services.sweeper import sweep
from apps.scheduler.testing import World, order
from workers.common.api import ApiClient, ApiError, LeaseLost
from workers.common.lease import Lease, Stop

pytestmark = pytest.mark.django_db(transaction=True)


def client_for(live_server, username, **options):
    return ApiClient(live_server.url, username, PASSWORD, backoff=0.01, **options)


def claimed(live_server, world):
    api = client_for(live_server, "creator")
    task = api.post("api/v1/tasks/claim/", {"worker": str(world.creator.pk)})["task"]
    assert task is not None
    return api, task


def test_the_client_logs_in_and_calls_the_api(live_server):
    make_user(Role.WRITER, "host-1")
    api = client_for(live_server, "host-1")
    assert api.get("api/v1/users/me/")["role"] == "writer"


def test_the_client_refreshes_an_expiring_token_and_revokes_the_old_one(live_server):
    make_user(Role.CREATOR, "builder")
    api = client_for(live_server, "builder")
    first = api.access_token
    api._access_expires = 0  # as if it expired
    second = api.access_token
    assert second != first
    assert RevokedToken.objects.filter(reason="rotated").count() == 1
    assert api.get("api/v1/users/me/")["username"] == "builder"


def test_a_refused_token_is_renewed_once_and_the_request_succeeds(live_server):
    make_user(Role.CREATOR, "builder")
    api = client_for(live_server, "builder")
    api.access_token  # noqa: B018 - logs in
    api._access = "not-a-token"
    assert api.get("api/v1/users/me/")["username"] == "builder"


def test_api_errors_carry_the_status_and_the_field_messages(live_server):
    make_user(Role.CREATOR, "builder")
    api = client_for(live_server, "builder")
    with pytest.raises(ApiError) as error:
        api.post("api/v1/tasks/claim/", {})
    assert error.value.status == 400
    assert "worker:" in str(error.value)


def test_a_wrong_password_is_a_clear_401(live_server):
    make_user(Role.CREATOR, "builder")
    api = ApiClient(live_server.url, "builder", "wrong", backoff=0.01)
    with pytest.raises(ApiError) as error:
        api.get("api/v1/users/me/")
    assert error.value.status == 401


def test_an_unreachable_api_is_reported_after_the_retries():
    api = ApiClient("http://127.0.0.1:1", "x", "y", retries=1, backoff=0.01)
    with pytest.raises(ApiError) as error:
        api.get("api/v1/users/me/")
    assert error.value.status == 0
    assert "cannot reach the API" in str(error.value)


def test_the_lease_renews_with_progress_and_notices_when_it_is_lost(live_server):
    world = World()
    order(world.client)
    api, task = claimed(live_server, world)
    lease = Lease(api, task, interval=3600)
    lease.progress("building", 25)
    row = Task.objects.get(pk=task["id"])
    assert (row.status, row.phase) == ("running", "building")
    lease.check()

    Task.objects.filter(pk=task["id"]).update(lease_expires_at=timezone.now())
    sweep()
    lease.renew()
    assert lease.lost.is_set()
    with pytest.raises(Stop, match="lease lost"):
        lease.check()
    with pytest.raises(LeaseLost):
        lease.event("succeeded")
    assert Task.objects.get(pk=task["id"]).status == "pending"


def test_the_lease_learns_a_cancel_at_its_next_renewal(live_server):
    world = World()
    placed = order(world.client)
    api, task = claimed(live_server, world)
    lease = Lease(api, task, interval=3600)
    cancel_order(order=placed, actor=world.client)
    lease.renew()
    assert lease.canceled.is_set()
    with pytest.raises(Stop, match="canceled"):
        lease.check()
    answer = lease.event("canceled")
    assert answer["task"]["status"] == "canceled"
