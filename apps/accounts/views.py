"""The site's own pages of accounts: where each role lands, and Django's login,
logout and password views with the site's templates."""

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.utils.translation import gettext as _
from django.views import i18n

from apps.accounts.models import Role


@login_required
def home(request):
    """``/``: clients land on their orders, staff on ``STAFF_HOME_URL``; worker
    accounts have no pages (they use the API)."""
    role = request.user.role
    if role in Role.staff():
        return redirect(settings.STAFF_HOME_URL)
    if role == Role.CLIENT:
        return redirect("client:order_list")
    raise PermissionDenied(_("This account is for a worker, which uses the API."))


def set_language(request):
    """Django's ``set_language`` (the switcher's form: cookie, then back to the
    page), which also saves the choice as a signed-in user's preference, so their
    pages and e-mails follow it on any browser."""
    response = i18n.set_language(request)
    language = request.POST.get("language", "")
    user = request.user
    if (
        request.method == "POST"
        and user.is_authenticated
        and language in dict(settings.LANGUAGES)
        and language != user.language
    ):
        user.language = language
        user.save(update_fields=["language"])
    return response


class PasswordResetView(auth_views.PasswordResetView):
    """Sends the reset link only to an active account with that e-mail address,
    and says the same thing either way (no user enumeration: Django's form finds
    the accounts, the page never tells). The link is absolute, on ``SITE_URL``."""

    template_name = "registration/reset_password.html"
    email_template_name = "registration/reset_password_email.txt"
    subject_template_name = "registration/reset_password_subject.txt"

    @property
    def extra_email_context(self):
        return {"site_url": settings.SITE_URL}
