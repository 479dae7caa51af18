"""The clients' names for the API's words (workers/common/names.py) are the
scheduler's: the clients cannot import Django, so they keep a copy."""

from apps.accounts.models import Role
from apps.orders.models import OrderStatus
from apps.scheduler.models import SlotState, TaskKind, TaskStatus, WorkerKind
from apps.scheduler.services.leases import CARD_FAILURES, EVENT_TYPES
from workers.common import names


def test_every_name_of_the_clients_is_a_value_of_the_scheduler():
    assert names.values(names.Role) == set(Role.values)
    assert names.values(names.WorkerKind) == set(WorkerKind.values)
    assert names.values(names.TaskKind) == set(TaskKind.values)
    assert names.values(names.TaskStatus) == set(TaskStatus.values)
    assert names.values(names.OrderStatus) == set(OrderStatus.values)
    assert names.values(names.SlotState) == set(SlotState.values)
    assert names.values(names.CardFailure) == CARD_FAILURES


def test_the_events_a_worker_reports_are_events_the_api_accepts():
    assert names.values(names.Event) <= EVENT_TYPES
