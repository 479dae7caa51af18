"""Who may open the operators' pages: managers and admins.

Anonymous visitors are sent to log in (``LOGIN_URL``) and come back; any other
role (clients, worker and warehouse accounts) gets 403. A page part that htmx
asks for (the board's slots) cannot show a login page inside the board: it tells
htmx to load the login page instead (``HX-Redirect``).
"""

from functools import wraps
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import resolve_url
from django.utils.http import urlencode
from django.utils.translation import gettext as _

from apps.accounts.models import Role


def is_staff(user) -> bool:
    return user.is_authenticated and user.is_active and user.role in Role.staff()


def login_address(next_url: str) -> str:
    return f"{resolve_url(settings.LOGIN_URL)}?{urlencode({'next': next_url})}"


def staff_required(view):
    @wraps(view)
    def checked(request, *args, **kwargs):
        user = request.user
        if not user.is_authenticated:
            if request.headers.get("HX-Request"):
                # The page the part belongs to, not the part's own address.
                current = urlsplit(request.headers.get("HX-Current-URL", ""))
                page = current.path or request.path
                if current.query:
                    page += f"?{current.query}"
                response = HttpResponse(status=401)
                response["HX-Redirect"] = login_address(page)
                return response
            return redirect_to_login(request.get_full_path())
        if not is_staff(user):
            raise PermissionDenied(_("Operators' pages are for managers and admins."))
        return view(request, *args, **kwargs)

    return checked
