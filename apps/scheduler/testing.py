"""Builders for scheduler tests: accounts, a warehouse, workers, orders, and API
clients that act as each role."""

from uuid import uuid4

from django.test import TestCase
from django.utils import timezone
from rest_framework.test import APIClient

from apps.accounts.models import Role
from apps.accounts.testing import bearer, make_user
from apps.orders.models import Configuration, OrderKind
from apps.orders.pipeline import place_order
from apps.scheduler.models import Image, ImageState, Warehouse, WorkerKind
from apps.scheduler.services.workers import register_worker

MB = 1024**2
ZIM = {
    "title": "Wikipedia (test)",
    "url": "http://127.0.0.1:9/wikipedia_test.zim",
    "size": 50 * MB,
    "sha256": "a" * 64,
}


class CommittingAPIClient(APIClient):
    """Runs the on-commit callbacks of each request (e-mails are queued after the
    write), as a real request's commit would; TestCase otherwise never commits."""

    def generic(self, *args, **kwargs):
        with TestCase.captureOnCommitCallbacks(execute=True):
            return super().generic(*args, **kwargs)


def api(user) -> APIClient:
    client = CommittingAPIClient()
    client.credentials(**bearer(user))
    return client


def configuration(owner, name="School kit", **fields) -> Configuration:
    values = {
        "ssid": "Kiwix Hotspot",
        "language": "fr",
        "timezone": "Europe/Paris",
        "admin_login": "admin",
        "admin_password": "hotspot-admin-pw",
        "contents": [dict(ZIM)],
        **fields,
    }
    config = Configuration(owner=owner, name=name, **values)
    config.full_clean()
    config.save()
    return config


def order(owner, config=None, **fields):
    values = {
        "kind": OrderKind.PHYSICAL,
        "card_size_gb": 8,
        "quantity": 1,
        "recipient_name": "Ada School",
        "recipient_email": "ada@example.org",
        "shipping_address": "1 rue de l'Ecole\n75001 Paris",
        **fields,
    }
    return place_order(
        owner=owner, configuration=config or configuration(owner), **values
    )


class World:
    """One of each account, an online warehouse and one worker of each kind."""

    def __init__(self, slots=("slot-1", "slot-2")):
        self.client = make_user(Role.CLIENT, "client", email="client@example.org")
        self.manager = make_user(Role.MANAGER, "manager", email="ops@example.org")
        self.creator_account = make_user(Role.CREATOR, "creator")
        self.host_account = make_user(Role.WRITER, "writer-host")
        self.warehouse_account = make_user(Role.WAREHOUSE, "warehouse")
        self.warehouse = Warehouse.objects.create(
            name="main",
            account=self.warehouse_account,
            ftp_url="ftp://127.0.0.1:2121",
            download_url="http://127.0.0.1:8080",
            capacity_bytes=10**12,
            free_bytes=10**12,
            last_seen=timezone.now(),
        )
        self.creator = register_worker(
            account=self.creator_account, kind=WorkerKind.CREATOR, host="builder-1"
        )
        self.downloader = register_worker(
            account=self.host_account,
            kind=WorkerKind.DOWNLOADER,
            host="host-1",
            capabilities={"free_disk": 10**11},
        )
        self.writer = register_worker(
            account=self.host_account,
            kind=WorkerKind.WRITER,
            host="host-1",
            slots=[
                {"name": name, "device_path": f"/dev/disk/by-path/usb-{name}"}
                for name in slots
            ],
        )


def image(order, warehouse, **fields):
    """An Image row of ``order`` in ``warehouse``, verified unless told otherwise."""
    values = {
        "file_name": "image.img",
        "size": 10,
        "sha256": "1" * 64,
        "bmap_name": "image.bmap",
        "bmap_size": 5,
        "bmap_sha256": "2" * 64,
        "state": ImageState.VERIFIED,
        **fields,
    }
    return Image.objects.create(order=order, warehouse=warehouse, **values)


def event(client, task_id, lease_id, type, **data):
    body = {"lease_id": str(lease_id), "event_id": str(uuid4()), "type": type, **data}
    return client.post(f"/api/v1/tasks/{task_id}/events/", body, format="json")
