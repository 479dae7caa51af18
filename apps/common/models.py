"""Abstract bases only: this app has no tables."""

from uuid import uuid4

from django.db import models


class UUIDModel(models.Model):
    """UUID primary key, the same on SQLite, PostgreSQL and MongoDB (DESIGN 3)."""

    id = models.UUIDField(primary_key=True, default=uuid4, editable=False)

    class Meta:
        abstract = True
