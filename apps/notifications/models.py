"""Notifications waiting for Redis: the outbox of ``notify``."""

from django.db import models
from django.utils import timezone

from apps.common.models import UUIDModel


class PendingNotification(UUIDModel):
    """A notification that could not be queued (Redis was down). The sweeper
    queues it once Redis answers again, so no e-mail is lost to an outage."""

    kind = models.CharField(max_length=30)
    context = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at"]

    def __str__(self):
        return f"{self.kind} {self.created_at:%Y-%m-%d %H:%M:%S}"
