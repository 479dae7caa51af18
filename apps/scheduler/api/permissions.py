"""Who may act on a worker or on a task a worker holds."""

from django.utils.translation import gettext_lazy as _
from rest_framework.permissions import BasePermission

from apps.accounts.models import Role
from apps.accounts.permissions import has_role
from apps.scheduler.models import Task, Worker

IsWorker = has_role(*Role.workers())
IsWarehouse = has_role(Role.WAREHOUSE)
IsWorkerOrStaff = has_role(*Role.workers(), *Role.staff())


def owns_worker(user, worker_id) -> bool:
    """The one ownership rule: the worker runs under the caller's account."""
    identity = Worker.objects.identity(worker_id) if worker_id else None
    return identity is not None and identity.account_id == user.pk


class HoldsTask(BasePermission):
    """One of the caller's workers holds the task (to read it), or holds or last
    held it (to act under its lease: the lease check says the rest).

    How a refusal looks is the view's choice (``view.not_held(task)``): a 404 for
    reading a task that is not yours, a 409 "lease lost" for acting under a lease,
    so that a worker that lost its task knows to stop. Staff may read any task.
    """

    message = _("One of your workers must hold this task.")

    def has_object_permission(self, request, view, obj: Task):
        if view.reads and request.user.role in Role.staff():
            return True
        if owns_worker(request.user, obj.worker_id) and (obj.is_held or not view.reads):
            return True
        raise view.not_held(obj)
