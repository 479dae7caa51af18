"""run_under_lease: the one way a worker runs a claimed task, against a fake API."""

import pytest

import workers.common.lease as lease_module
from workers.common.api import ApiError, LeaseLost
from workers.common.lease import (
    CANCELED,
    FAILED,
    STOPPED,
    SUCCEEDED,
    Failure,
    failed,
    run_under_lease,
)
from workers.common.names import Event
from workers.common.progress import Canceled

TASK = {"id": "t1", "lease_id": "l1"}
IDS = {"lease_id", "event_id"}  # every event has its own


class FakeApi:
    """Records the events; ``cancel`` makes renewals answer a cancel, and
    ``refuse`` makes events fail with that exception."""

    def __init__(self, *, cancel=False, refuse=None):
        self.events = []
        self.cancel = cancel
        self.refuse = refuse

    def post(self, path, body=None):
        if path.endswith("/renew/"):
            return {"cancel": self.cancel}
        if self.refuse is not None:
            raise self.refuse
        data = {k: v for k, v in body.items() if k not in IDS}
        self.events.append((data.pop("type"), data))
        return {}


def judge(exc):
    return failed(str(exc)) if isinstance(exc, OSError) else None


def run(api, work, judge=judge):
    return run_under_lease(api, TASK, work, interval=60, judge=judge)


def test_a_result_is_reported_as_the_task_s_success():
    api = FakeApi()
    outcome = run(api, lambda lease: {"size": 1})
    assert (outcome.state, outcome.result) == (SUCCEEDED, {"size": 1})
    assert api.events == [(Event.SUCCEEDED, {"result": {"size": 1}})]


def test_a_judged_error_is_reported_as_a_failure():
    api = FakeApi()

    def work(lease):
        raise OSError("disk full")

    outcome = run(api, work)
    assert outcome.state == FAILED
    assert outcome.failure.message == "disk full"
    assert api.events == [(Event.FAILED, {"error": "disk full", "retryable": True})]


def test_a_failure_may_be_another_event_or_none():
    api = FakeApi()
    card = Failure("bad card", type=Event.CARD_FAILED, data={"reason": "removed"})
    outcome = run(api, lambda lease: 1 / 0, judge=lambda exc: card)
    assert outcome.failure is card
    assert api.events == [(Event.CARD_FAILED, {"reason": "removed"})]

    api = FakeApi()
    outcome = run(api, lambda lease: 1 / 0, judge=lambda e: Failure("x", report=False))
    assert (outcome.state, api.events) == (FAILED, [])


def test_an_error_the_judge_does_not_know_goes_through_unreported():
    api = FakeApi()
    with pytest.raises(ZeroDivisionError):
        run(api, lambda lease: 1 / 0)
    assert api.events == []


def test_a_canceled_order_is_acknowledged():
    api = FakeApi(cancel=True)

    def work(lease):
        lease.renew()  # the API answers that the order was canceled
        lease.check()

    outcome = run(api, work)
    assert outcome.state == CANCELED
    assert api.events == [(Event.CANCELED, {})]


def test_work_canceled_through_its_cancel_callable_is_a_cancel_too():
    api = FakeApi(cancel=True)

    def work(lease):
        lease.renew()
        raise Canceled("download canceled")

    assert run(api, work).state == CANCELED


def test_a_lost_lease_stops_the_work_and_reports_nothing():
    api = FakeApi()

    def work(lease):
        lease.lost.set()
        lease.check()

    outcome = run(api, work)
    assert outcome.state == STOPPED
    assert api.events == []

    def conflict(lease):
        raise LeaseLost(409, "This lease is no longer yours.")

    assert run(api, conflict).state == STOPPED
    assert api.events == []


def test_a_report_the_api_refuses_does_not_raise():
    api = FakeApi(refuse=ApiError(400, "no"))

    def work(lease):
        raise OSError("disk full")

    assert run(api, work).state == FAILED


def test_a_report_is_sent_again_while_the_api_is_unavailable(monkeypatch):
    """A finished task given up to an outage would be done again by another
    worker once its lease ran out."""
    monkeypatch.setattr(lease_module, "REPORT_PAUSE", 0)
    api = FakeApi()
    answers = [ApiError(503, "database down"), ApiError(0, "unreachable")]
    post = api.post

    def flaky(path, body=None):
        if path.endswith("/events/") and answers:
            raise answers.pop(0)
        return post(path, body)

    api.post = flaky
    assert run(api, lambda lease: {"size": 1}).state == SUCCEEDED
    assert api.events == [(Event.SUCCEEDED, {"result": {"size": 1}})]


def test_a_report_gives_up_after_its_patience(monkeypatch):
    monkeypatch.setattr(lease_module, "REPORT_PAUSE", 0)
    monkeypatch.setattr(lease_module, "REPORT_PATIENCE", 0)
    api = FakeApi(refuse=ApiError(503, "database down"))
    # The judge lets ApiError through: the give-up is what run_under_lease sees.
    with pytest.raises(ApiError, match="database down"):
        run(api, lambda lease: {})
