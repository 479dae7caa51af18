"""Who may use the client pages, and which rows each one sees (the API's rules).

Clients, managers and admins use them; worker accounts get 403 and anonymous
callers are sent to the login page. Rows come through the managers' scoping
(``visible_to``): another client's row is a 404. Staff read clients'
configurations but change only their own (403), as ``OwnerMayChange`` in the API.
"""

from functools import wraps
from urllib.parse import urlsplit

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from django.utils.translation import gettext as _

from apps.accounts.models import Role
from apps.orders.models import Configuration, Order

CUSTOMERS = frozenset({Role.CLIENT, *Role.staff()})


def is_htmx(request) -> bool:
    return request.headers.get("HX-Request") == "true"


def customer_required(view):
    """Logged in with a role that designs hotspots and orders cards. A part of a
    page asking for itself (htmx) after the session ended sends the whole page
    to the login page instead of putting the login form inside the part."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_authenticated:
            if is_htmx(request):
                page = urlsplit(request.headers.get("HX-Current-URL", "")).path
                login = redirect_to_login(page or request.path)
                response = HttpResponse(status=401)
                response["HX-Redirect"] = login["Location"]
                return response
            return redirect_to_login(request.get_full_path())
        if request.user.role not in CUSTOMERS:
            raise PermissionDenied(
                _("Worker accounts have no pages; they use the API.")
            )
        return view(request, *args, **kwargs)

    return wrapper


def posted(request):
    """A form's data: the request's on a POST (even an empty one, which must
    still be checked), none on a GET (an unbound form)."""
    return request.POST if request.method == "POST" else None


def uploaded(request):
    """A form's files, as ``posted``."""
    return request.FILES if request.method == "POST" else None


def visible_configuration(request, pk) -> Configuration:
    """A configuration the caller may read: 404 for another client's."""
    return get_object_or_404(Configuration.objects.visible_to(request.user), pk=pk)


def own_configuration(request, pk) -> Configuration:
    """A configuration the caller may change: its owner only (403 for staff)."""
    configuration = visible_configuration(request, pk)
    if configuration.owner_id != request.user.pk:
        raise PermissionDenied(
            _("Only the owner of this configuration may change or delete it.")
        )
    return configuration


def visible_order(request, pk, queryset=None) -> Order:
    """An order the caller may follow and cancel: 404 for another client's."""
    queryset = queryset if queryset is not None else Order.objects.all()
    return get_object_or_404(queryset.visible_to(request.user), pk=pk)
