"""A workshop for the operators' page tests: accounts of every role, a writer host
with slots, and orders in bulk (no rendering, as the query-count tests need)."""

from django.test import TestCase
from django.utils import timezone

from apps.accounts.models import Role
from apps.accounts.testing import make_user
from apps.orders.cards import usable_bytes
from apps.orders.models import Configuration, Order, OrderStatus
from apps.scheduler.models import Slot, Task, TaskKind, TaskStatus
from apps.scheduler.testing import ZIM, World


class Workshop(World):
    """World's accounts (client, manager, worker and warehouse accounts), an admin,
    a writer host ``host-1`` with four slots, and one configuration."""

    def __init__(self, slots=("slot-1", "slot-2", "slot-3", "slot-4")):
        super().__init__(slots=slots)
        self.admin = make_user(Role.ADMIN, "admin", email="admin@example.org")
        self.config = Configuration.objects.create(
            owner=self.client,
            name="School kit",
            ssid="Kiwix",
            admin_password="hotspot-admin-pw",
            wifi_password="wifi-secret-pw",
            contents=[dict(ZIM)],
        )

    def orders(self, n, status=OrderStatus.PENDING, **fields) -> list[Order]:
        values = {
            "owner": self.client,
            "configuration": self.config,
            "config": self.config.snapshot(),
            "card_size_gb": 8,
            "content_bytes": ZIM["size"],
            "recipient_name": "Ada School",
            "recipient_email": "ada@example.org",
            "shipping_address": "1 rue de l'Ecole\n75001 Paris",
            "status": status,
            **fields,
        }
        return Order.objects.bulk_create([Order(**values) for _ in range(n)])

    def writes(self, order, copies=1, host="host-1", **fields) -> list[Task]:
        fields.setdefault("status", TaskStatus.PENDING)
        # What pipeline.create_write_tasks asks of a card: the size ordered.
        fields.setdefault("needed_bytes", usable_bytes(order.card_size_gb))
        return Task.objects.bulk_create(
            [
                Task(
                    order=order,
                    kind=TaskKind.WRITE,
                    host=host,
                    copy_number=number,
                    **fields,
                )
                for number in range(1, copies + 1)
            ]
        )

    def slot(self, name) -> Slot:
        return Slot.objects.get(worker=self.writer, name=name)

    def put(self, name, state, *, task=None, percent=0, message=""):
        """The writer reported slot ``name`` in ``state``."""
        Slot.objects.filter(worker=self.writer, name=name).update(
            state=state,
            percent=percent,
            task=task,
            message=message,
            updated_at=timezone.now(),
        )

    @property
    def outsiders(self):
        """Accounts that are not operators: each gets 403 on every page."""
        return [
            self.client,
            self.creator_account,
            self.host_account,
            self.warehouse_account,
        ]


class PageTestCase(TestCase):
    def setUp(self):
        self.shop = Workshop()

    def as_manager(self):
        self.client.force_login(self.shop.manager)
