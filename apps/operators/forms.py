"""Forms of the operators' pages: the order filters, shipping, cancelling, and
client accounts."""

from uuid import UUID

from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from apps.accounts.models import Role
from apps.orders.cards import CARD_SIZES
from apps.orders.models import OrderKind, OrderStatus

User = get_user_model()

#: Status filters beside the statuses themselves.
STATUS_GROUPS = {"active": OrderStatus.ACTIVE, "finished": OrderStatus.TERMINAL}
#: Roles each staff role may give a new account. Worker and warehouse accounts
#: are made on the command line (``create_account --write-password``): their
#: password goes into a file on another machine, not into an e-mail.
ROLES_GIVEN_BY = {
    Role.MANAGER: (Role.CLIENT,),
    Role.ADMIN: (Role.CLIENT, Role.MANAGER, Role.ADMIN),
}


def as_uuid(text: str) -> UUID | None:
    try:
        return UUID(text.strip())
    except ValueError:
        return None


def bootstrap(form: forms.Form) -> None:
    """Bootstrap's classes on a filter bar's widgets: the bar is drawn by hand
    (the list is a hot page; crispy's templates would cost a third of it)."""
    for field in form.fields.values():
        widget = field.widget
        if isinstance(widget, forms.Select):
            widget.attrs["class"] = "form-select form-select-sm"
        else:
            widget.attrs["class"] = "form-control form-control-sm"
        if field.help_text:
            widget.attrs["placeholder"] = field.help_text


class OrderFilterForm(forms.Form):
    q = forms.CharField(
        label=_("Search"),
        required=False,
        max_length=200,
        help_text=_("An order's id, a client (username, name, e-mail) or a recipient."),
    )
    status = forms.ChoiceField(
        label=_("Status"),
        required=False,
        choices=[
            ("", _("any status")),
            ("active", _("active (not finished)")),
            ("finished", _("finished")),
            *OrderStatus.choices,
        ],
    )
    kind = forms.ChoiceField(
        label=_("Kind"),
        required=False,
        choices=[("", _("any kind")), *OrderKind.choices],
    )
    card_size = forms.TypedChoiceField(
        label=_("Card size"),
        required=False,
        coerce=int,
        empty_value=None,
        choices=[("", _("any size")), *((size, f"{size} GB") for size in CARD_SIZES)],
    )
    placed_from = forms.DateField(
        label=_("Placed from"),
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    placed_to = forms.DateField(
        label=_("Placed until"),
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        bootstrap(self)

    def clean(self):
        data = super().clean()
        start, end = data.get("placed_from"), data.get("placed_to")
        if start and end and start > end:
            self.add_error("placed_to", _("Give a day after the first one."))
        return data

    def filter(self, orders):
        """``orders`` narrowed to what the form asks for (all of them when it is
        not valid: the page shows the errors above the full list)."""
        if not self.is_valid():
            return orders
        data = self.cleaned_data
        status = data.get("status")
        if status in STATUS_GROUPS:
            orders = orders.filter(status__in=STATUS_GROUPS[status])
        elif status:
            orders = orders.filter(status=status)
        if data.get("kind"):
            orders = orders.filter(kind=data["kind"])
        if data.get("card_size"):
            orders = orders.filter(card_size_gb=data["card_size"])
        if data.get("placed_from"):
            orders = orders.filter(created_at__date__gte=data["placed_from"])
        if data.get("placed_to"):
            orders = orders.filter(created_at__date__lte=data["placed_to"])
        text = (data.get("q") or "").strip()
        if text:
            orders = orders.filter(self.search(text))
        return orders

    @staticmethod
    def search(text: str) -> Q:
        """An order's whole id, or a client or recipient matching ``text``.

        Clients are looked up first and named by id: a filter across the
        relation would be a join, which MongoDB runs over the whole collection
        (DESIGN 3). Ids are matched whole: MongoDB has no prefix search on them.
        """
        pk = as_uuid(text)
        if pk is not None:
            return Q(pk=pk)
        clients = (
            User.objects.filter(
                Q(username__icontains=text)
                | Q(full_name__icontains=text)
                | Q(email__icontains=text)
            )
            .order_by()
            .values_list("pk", flat=True)
        )
        return (
            Q(owner_id__in=list(clients))
            | Q(recipient_name__icontains=text)
            | Q(recipient_email__icontains=text)
        )


class ShipForm(forms.Form):
    carrier = forms.CharField(label=_("Carrier"), max_length=100)
    tracking = forms.CharField(
        label=_("Tracking number"), max_length=200, required=False
    )


class CancelForm(forms.Form):
    reason = forms.CharField(
        label=_("Reason"),
        max_length=500,
        required=False,
        help_text=_("Recorded in the order's history."),
    )


class UserFilterForm(forms.Form):
    q = forms.CharField(label=_("Search"), required=False, max_length=150)
    role = forms.ChoiceField(
        label=_("Role"), required=False, choices=[("", _("any role")), *Role.choices]
    )
    active = forms.ChoiceField(
        label=_("Active"),
        required=False,
        choices=[("", _("active or not")), ("yes", _("active")), ("no", _("disabled"))],
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        bootstrap(self)

    def filter(self, users):
        if not self.is_valid():
            return users
        data = self.cleaned_data
        if data.get("role"):
            users = users.filter(role=data["role"])
        if data.get("active"):
            users = users.filter(is_active=data["active"] == "yes")
        text = (data.get("q") or "").strip()
        if text:
            users = users.filter(
                Q(username__icontains=text)
                | Q(full_name__icontains=text)
                | Q(email__icontains=text)
            )
        return users


class AccountForm(forms.ModelForm):
    """A new account: a client for managers; a client, manager or admin for
    admins. Its password is set here, or chosen by its owner through a link
    sent by e-mail."""

    SET, SEND = "set", "send"
    password_mode = forms.ChoiceField(
        label=_("Password"),
        choices=[
            (SEND, _("Send a link to choose a password by e-mail")),
            (SET, _("Set a password now")),
        ],
        initial=SEND,
        widget=forms.RadioSelect,
    )
    password1 = forms.CharField(
        label=_("New password"),
        required=False,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    password2 = forms.CharField(
        label=_("The same password again"),
        required=False,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    class Meta:
        model = User
        fields = ("username", "full_name", "email", "language", "role")

    def __init__(self, *args, creator, **kwargs):
        super().__init__(*args, **kwargs)
        roles = ROLES_GIVEN_BY.get(creator.role, ())
        self.fields["role"].choices = [
            (value, label) for value, label in Role.choices if value in roles
        ]
        self.fields["role"].initial = Role.CLIENT
        self.fields["language"].initial = settings.LANGUAGE_CODE

    def clean(self):
        data = super().clean()
        if data.get("password_mode") == self.SEND:
            if not data.get("email"):
                self.add_error(
                    "email",
                    _("The link goes by e-mail: give an address, or set a password."),
                )
            return data
        first, second = data.get("password1"), data.get("password2")
        if not first:
            self.add_error("password1", _("Type the password, or send a link."))
        elif first != second:
            self.add_error("password2", _("The two passwords differ."))
        else:
            # Validated against this account's own fields (not like its username).
            self.instance.username = data.get("username", "")
            self.instance.email = data.get("email", "")
            self.instance.full_name = data.get("full_name", "")
            try:
                validate_password(first, self.instance)
            except ValidationError as error:
                self.add_error("password1", error)
        return data

    def save(self, commit=True):
        user = super().save(commit=False)
        if self.cleaned_data["password_mode"] == self.SET:
            user.set_password(self.cleaned_data["password1"])
        else:
            user.set_unusable_password()
        if commit:
            user.save()
        return user
