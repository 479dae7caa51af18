"""Accounts for operators: the list, a new client (or, for admins, a new manager
or admin), disable and enable, and the e-mail to choose a new password.

Managers look after client accounts; admins after every account but their own
(an admin cannot lock themselves out). Password hashes are never shown.
"""

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.accounts.models import Role
from apps.operators.access import staff_required
from apps.operators.accounts import (
    MailNotSent,
    may_receive_link,
    send_password_link,
)
from apps.operators.forms import AccountForm, UserFilterForm

User = get_user_model()
PAGE_SIZE = 50


def may_manage(operator, account) -> bool:
    """Managers look after clients; admins after everyone else."""
    if account.pk == operator.pk:
        return False
    if operator.role == Role.ADMIN:
        return True
    return account.role == Role.CLIENT


@require_GET
@staff_required
def user_list(request):
    form = UserFilterForm(request.GET or None)
    users = form.filter(
        User.objects.only(
            "id",
            "username",
            "full_name",
            "email",
            "role",
            "is_active",
            "last_login",
            "date_joined",
            "language",
        ).order_by("username")
    )
    page = Paginator(users, PAGE_SIZE).get_page(request.GET.get("page"))
    rows = list(page.object_list)
    for account in rows:
        account.manageable = may_manage(request.user, account)
        account.link_possible = may_receive_link(account)
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "ops/users/list.html",
        {
            "form": form,
            "page": page,
            "users": rows,
            "query": query.urlencode(),
            "section": "users",
        },
    )


@require_http_methods(["GET", "POST"])
@staff_required
def user_create(request):
    form = AccountForm(request.POST or None, creator=request.user)
    if request.method == "POST" and form.is_valid():
        account = form.save()
        if form.cleaned_data["password_mode"] == AccountForm.SEND:
            try:
                send_password_link(account, new=True)
            except MailNotSent as error:
                messages.error(
                    request,
                    _(
                        "The account %(name)s is made, but the e-mail could not be "
                        "sent (%(why)s): send a password link from the list later."
                    )
                    % {"name": account.username, "why": error},
                )
                return redirect("ops:users")
            messages.success(
                request,
                _(
                    "The account %(name)s is made; a link to choose a password "
                    "went to %(email)s."
                )
                % {"name": account.username, "email": account.email},
            )
        else:
            messages.success(
                request,
                _("The account %(name)s is made with the password you set.")
                % {"name": account.username},
            )
        return redirect("ops:users")
    response = render(request, "ops/users/new.html", {"form": form, "section": "users"})
    if request.method == "POST":
        response.status_code = 400
    return response


def managed_account(request, pk):
    account = get_object_or_404(User, pk=pk)
    if not may_manage(request.user, account):
        messages.error(
            request,
            _("You may not change the account %(name)s.") % {"name": account.username},
        )
        return None
    return account


@require_POST
@staff_required
def user_active(request, pk):
    account = managed_account(request, pk)
    if account is not None:
        active = request.POST.get("active") == "yes"
        # update(): only this field, whatever else changed meanwhile.
        User.objects.filter(pk=account.pk).update(is_active=active)
        text = (
            _("The account %(name)s is enabled.")
            if active
            else _("The account %(name)s is disabled: it can no longer log in.")
        )
        messages.success(request, text % {"name": account.username})
    return redirect("ops:users")


@require_POST
@staff_required
def user_password(request, pk):
    account = managed_account(request, pk)
    if account is None:
        return redirect("ops:users")
    if not may_receive_link(account):
        messages.error(
            request,
            _(
                "%(name)s has no e-mail address or is a machine's account: give it a "
                "password on the command line (manage.py create_account %(name)s "
                "--update --write-password FILE)."
            )
            % {"name": account.username},
        )
        return redirect("ops:users")
    try:
        send_password_link(account, new=False)
    except MailNotSent as error:
        messages.error(
            request,
            _("The e-mail could not be sent (%(why)s); try again later.")
            % {"why": error},
        )
    else:
        messages.success(
            request,
            _("A link to choose a new password went to %(email)s.")
            % {"email": account.email},
        )
    return redirect("ops:users")
