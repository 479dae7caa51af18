"""The workshop board: every writer host with its slots, and what to do at each.

For each slot: its state (empty, card present, writing %, verifying %, done,
failed, offline), the instruction for the person at the bench ("insert an 8 GB
card", "take the card out"), the copy it holds and the last card written there.
The card size to insert is that of the next copies waiting on the host (oldest
first: ``Order.card_size_gb`` of their order), one per empty slot.

The whole board costs the same few queries whatever the number of hosts, slots
and waiting copies: every table is read once for all hosts, without joins (on
MongoDB a join reads the whole collection, DESIGN 3).
"""

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property

from django.db.models import Count, Min
from django.db.models.fields.json import KT
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from apps.orders.cards import smallest_card_gb
from apps.orders.models import Order
from apps.scheduler.models import (
    Slot,
    SlotState,
    Task,
    TaskKind,
    TaskStatus,
    Worker,
    WorkerKind,
)

#: The state's colour on the board (Bootstrap's names).
TONES = {
    SlotState.EMPTY: "secondary",
    SlotState.CARD_PRESENT: "info",
    SlotState.WRITING: "primary",
    SlotState.VERIFYING: "info",
    SlotState.DONE: "success",
    SlotState.FAILED: "danger",
    SlotState.OFFLINE: "dark",
}
#: How far back a slot's last written card is named.
LAST_CARD_HOURS = 24
#: The task's columns the board shows.
TASK_FIELDS = (
    "id",
    "order_id",
    "kind",
    "status",
    "phase",
    "percent",
    "copy_number",
    "host",
    "slot_id",
    "card_failures",
    "card_budget",
    "error",
    "finished_at",
)


@dataclass
class OrderBrief:
    pk: object
    name: str
    card_size_gb: int
    quantity: int

    @property
    def short(self) -> str:
        return str(self.pk)[:8]

    @cached_property
    def url(self) -> str:
        return reverse("ops:order", args=[self.pk])


@dataclass
class SlotView:
    slot: Slot
    state: str
    tone: str
    instruction: str
    #: The card size to insert, when the slot is to be filled.
    insert_gb: int | None = None
    percent: float | None = None
    task: dict | None = None
    order: OrderBrief | None = None
    last_card: str = ""

    @property
    def state_label(self) -> str:
        return SlotState(self.state).label

    @property
    def percent_shown(self) -> int:
        return round(self.percent or 0)


@dataclass
class WaitingCards:
    """Copies waiting on a host for cards of one size, and the order of the
    oldest of them (the next to be written)."""

    size_gb: int
    copies: int
    next_order: OrderBrief | None


@dataclass
class HostView:
    name: str
    worker: Worker
    online: bool
    slots: list[SlotView] = field(default_factory=list)
    #: Copies waiting for a card on this host, by card size, oldest first.
    waiting: list["WaitingCards"] = field(default_factory=list)
    download: dict | None = None
    download_order: OrderBrief | None = None

    @property
    def waiting_copies(self) -> int:
        return sum(cards.copies for cards in self.waiting)

    @property
    def pk(self):
        return self.worker.pk


def orders_by_id(ids) -> dict:
    rows = (
        Order.objects.filter(pk__in=set(ids))
        .order_by()
        .annotate(name=KT("config__name"))
        .values_list("pk", "name", "card_size_gb", "quantity")
    )
    return {row[0]: OrderBrief(*row) for row in rows}


def build_board(now: datetime | None = None) -> list[HostView]:
    now = now or timezone.now()
    writers = list(
        Worker.objects.filter(kind=WorkerKind.WRITER)
        .order_by("host", "registered_at")
        .prefetch_related("slots")
    )
    if not writers:
        return []
    online = set(
        Worker.objects.filter(pk__in=[w.pk for w in writers])
        .online(now)
        .values_list("pk", flat=True)
    )
    hosts = sorted({writer.host for writer in writers})
    slots = [slot for writer in writers for slot in writer.slots.all()]

    current = {
        task["id"]: task
        for task in Task.objects.filter(
            pk__in=[slot.task_id for slot in slots if slot.task_id]
        )
        .order_by()
        .values(*TASK_FIELDS)
    }
    waiting = waiting_groups(hosts)
    downloads = {
        task["host"]: task
        for task in Task.objects.filter(
            kind=TaskKind.DOWNLOAD, status__in=TaskStatus.HELD, host__in=hosts
        )
        .order_by()
        .values(*TASK_FIELDS)
    }
    last_written = last_cards(slots, now)
    orders = orders_by_id(
        [task["order_id"] for task in current.values()]
        + [row["order_id"] for row in waiting]
        + [task["order_id"] for task in downloads.values()]
        + [task["order_id"] for task in last_written.values()]
    )

    waiting_by_host = defaultdict(list)
    for group in waiting:
        order = orders.get(group["order_id"])
        size = order.card_size_gb if order else smallest_card_gb(group["needed_bytes"])
        waiting_by_host[group["host"]].append(
            WaitingCards(size_gb=size, copies=group["copies"], next_order=order)
        )

    board = []
    for writer in writers:
        host = HostView(
            name=writer.host,
            worker=writer,
            online=writer.pk in online,
            waiting=waiting_by_host.get(writer.host, []),
            download=downloads.get(writer.host),
        )
        if host.download:
            host.download_order = orders.get(host.download["order_id"])
        # One card size per copy waiting, oldest first: the empty slots take
        # them in their order.
        sizes = [cards.size_gb for cards in host.waiting for _ in range(cards.copies)]
        for slot in writer.slots.all():
            view = slot_view(slot, host.online, current.get(slot.task_id), orders)
            if view.state == SlotState.EMPTY:
                if sizes:
                    view.insert_gb = sizes.pop(0)
                    view.instruction = _("Insert an empty %(size)d GB card.") % {
                        "size": view.insert_gb
                    }
                else:
                    view.instruction = _("Nothing to write: leave it empty.")
            last = last_written.get(slot.pk)
            if last is not None and last["id"] != slot.task_id:
                view.last_card = describe_last(last, orders.get(last["order_id"]))
            host.slots.append(view)
        board.append(host)
    return board


def waiting_groups(hosts: list[str]) -> list[dict]:
    """Copies waiting for a card on ``hosts``, grouped by host and card size
    (``needed_bytes``: the usable bytes of the order's card size), with the
    order of the oldest copy of each group; oldest groups first.

    Two queries, and rows by host and card size (seven sizes at most), however
    long the backlog: the card size shown is the order's ``card_size_gb``."""
    pending = Task.objects.filter(
        kind=TaskKind.WRITE, status=TaskStatus.PENDING, host__in=hosts
    ).order_by()
    groups = list(
        pending.values("host", "needed_bytes")
        .annotate(copies=Count("id"), since=Min("created_at"))
        .order_by("since")
    )
    oldest = pending.filter(
        created_at__in={group["since"] for group in groups}
    ).values_list("host", "needed_bytes", "created_at", "order_id")
    first = {(host, size, at): order for host, size, at, order in oldest}
    for group in groups:
        key = (group["host"], group["needed_bytes"], group["since"])
        group["order_id"] = first.get(key)
    return groups


def last_cards(slots: list[Slot], now: datetime) -> dict:
    """The last card written in each slot within ``LAST_CARD_HOURS``: slot id ->
    task values (a written copy keeps its slot).

    One query, whose rows are the cards these slots wrote in that window: what
    the bench needs to label, not the whole history."""
    written = (
        Task.objects.filter(
            slot_id__in=[slot.pk for slot in slots],
            kind=TaskKind.WRITE,
            status=TaskStatus.SUCCEEDED,
            finished_at__gte=now - timedelta(hours=LAST_CARD_HOURS),
        )
        .order_by()
        .values(*TASK_FIELDS)
    )
    last: dict = {}
    for task in written:
        known = last.get(task["slot_id"])
        if known is None or task["finished_at"] > known["finished_at"]:
            last[task["slot_id"]] = task
    return last


def copy_label(task: dict, order: OrderBrief | None) -> str:
    if order is None:
        return _("copy %(n)s") % {"n": task["copy_number"]}
    return _("copy %(n)s of %(q)d of “%(name)s” (%(size)d GB, order %(id)s)") % {
        "n": task["copy_number"],
        "q": order.quantity,
        "name": order.name,
        "size": order.card_size_gb,
        "id": order.short,
    }


def describe_last(task: dict, order: OrderBrief | None) -> str:
    when = timezone.localtime(task["finished_at"]).strftime("%Y-%m-%d %H:%M")
    return _("Last card written here: %(copy)s, verified at %(when)s.") % {
        "copy": copy_label(task, order),
        "when": when,
    }


def slot_view(slot: Slot, online: bool, task: dict | None, orders: dict) -> SlotView:
    """The slot as the bench sees it: its state and what to do there."""
    order = orders.get(task["order_id"]) if task else None
    state = slot.state if online else SlotState.OFFLINE
    view = SlotView(
        slot=slot,
        state=state,
        tone=TONES[state],
        instruction="",
        task=task,
        order=order,
    )
    copy = copy_label(task, order) if task else ""
    if state == SlotState.OFFLINE:
        view.instruction = (
            _("The writer on this host is not running: start it (whost status).")
            if not online
            else _("The writer does not see this reader: check that it is plugged in.")
        )
    elif state == SlotState.CARD_PRESENT:
        view.percent = 0 if task else None
        view.instruction = (
            _("Card inserted: starting %(copy)s.") % {"copy": copy}
            if task
            else _("This card is not used: %(why)s Take it out.")
            % {"why": slot.message or _("no copy waits for it.")}
        )
    elif state in {SlotState.WRITING, SlotState.VERIFYING}:
        view.percent = slot.percent
        text = (
            _("Writing %(copy)s: leave the card in.")
            if state == SlotState.WRITING
            else _("Verifying %(copy)s: leave the card in.")
        )
        view.instruction = text % {"copy": copy or _("a copy")}
    elif state == SlotState.DONE:
        view.percent = 100
        view.instruction = _("Done: take the card out and label it: %(copy)s.") % {
            "copy": copy or _("a copy")
        }
    elif state == SlotState.FAILED:
        view.instruction = _("Failed: take the card out. Why: %(why)s") % {
            "why": slot.message or (task or {}).get("error") or _("not said")
        }
    return view
