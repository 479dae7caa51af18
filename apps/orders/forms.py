"""Forms of the client pages. They check with the API's rules, never copies of
them: the model's validators and ``services.validate_configuration`` for a
configuration, ``pipeline.place_order`` for an order (the view maps its field
messages onto the form), ``services.import_configuration`` for an import."""

import zoneinfo
from functools import cache

from django import forms
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.utils.text import capfirst
from django.utils.translation import gettext_lazy as _

from apps.orders.cards import CARD_SIZES
from apps.orders.models import Configuration, Order, OrderKind, language_choices
from apps.orders.services import validate_configuration

#: An export with two 2 MiB images in base64 and 500 content entries is ~6 MiB.
MAX_IMPORT_BYTES = 8 * 1024 * 1024
ORDER_FIELDS = [
    "kind",
    "card_size_gb",
    "quantity",
    "recipient_name",
    "recipient_email",
    "recipient_phone",
    "shipping_address",
]
IMAGE_TYPES = "image/png,image/jpeg"
#: The boxes that remove a stored branding image, and their fields.
REMOVABLE = {"remove_logo": "branding_logo", "remove_favicon": "branding_favicon"}


@cache
def timezone_choices() -> list[tuple[str, str]]:
    return [(name, name) for name in sorted(zoneinfo.available_timezones())]


def language_options() -> list[tuple[str, str]]:
    return [(code, f"{name} ({code})") for code, name in language_choices()]


def add_errors(form, error: ValidationError, *, elsewhere: str | None = None):
    """A service's field messages onto the form's fields; those of fields the
    form does not have onto ``elsewhere`` (or the form), named."""
    for field, messages in error.message_dict.items():
        if field in form.fields:
            form.add_error(field, messages)
        elif field == NON_FIELD_ERRORS:
            form.add_error(elsewhere, messages)
        else:
            form.add_error(elsewhere, [f"{field}: {message}" for message in messages])


class ConfigurationForm(forms.ModelForm):
    """A configuration, new or edited by its owner. On an edit, empty password
    fields keep the current passwords (they are never shown)."""

    # Declared fields get no initial value from the model's default: without
    # one, a new configuration's lists would show their first choice
    # (Afrikaans, Africa/Abidjan) as if it were chosen.
    language = forms.ChoiceField(
        label=capfirst(_("language")),
        choices=language_options,
        initial=Configuration._meta.get_field("language").default,
    )
    timezone = forms.ChoiceField(
        label=capfirst(_("time zone")),
        choices=timezone_choices,
        initial=Configuration._meta.get_field("timezone").default,
    )
    admin_password = forms.CharField(
        label=capfirst(_("hotspot admin password")),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=_("8 to 64 characters, without spaces, “,”, “:” or “$”."),
    )
    wifi_password = forms.CharField(
        label=_("Wi-Fi password"),
        strip=False,
        required=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=_("8 to 63 characters; leave empty for an open hotspot."),
    )
    open_hotspot = forms.BooleanField(
        label=_("Remove the Wi-Fi password: an open hotspot"), required=False
    )
    remove_logo = forms.BooleanField(label=_("Remove the logo"), required=False)
    remove_favicon = forms.BooleanField(label=_("Remove the favicon"), required=False)
    contents = forms.JSONField(
        widget=forms.HiddenInput,
        error_messages={"required": _("Choose at least one content entry.")},
    )

    class Meta:
        model = Configuration
        fields = [
            "name",
            "ssid",
            "domain",
            "language",
            "timezone",
            "admin_login",
            "admin_password",
            "wifi_password",
            "branding_logo",
            "branding_favicon",
            "contents",
        ]
        # Plain file inputs: a stored image is shown through the branding page
        # (uploads are never served as files) and removed with its own box.
        widgets = {
            "branding_logo": forms.FileInput(attrs={"accept": IMAGE_TYPES}),
            "branding_favicon": forms.FileInput(attrs={"accept": IMAGE_TYPES}),
        }
        help_texts = {
            "branding_logo": _("A PNG or JPEG image, 2 MiB at most."),
            "branding_favicon": _("A small square PNG or JPEG image."),
        }

    def __init__(self, *args, owner, **kwargs):
        super().__init__(*args, **kwargs)
        self.editing = not self.instance._state.adding
        for which, field in REMOVABLE.items():
            if not getattr(self.instance, field):
                del self.fields[which]
        if not self.editing:
            self.instance.owner = owner
            del self.fields["open_hotspot"]
            return
        self.fields["admin_password"].required = False
        self.fields["admin_password"].help_text = _(
            "Leave empty to keep the current password."
        )
        if self.instance.wifi_password:
            self.fields["wifi_password"].help_text = _(
                "Leave empty to keep the current password."
            )
        else:
            del self.fields["open_hotspot"]

    def clean(self):
        data = super().clean()
        for which, field in REMOVABLE.items():
            if data.get(which) and not self.files.get(field):
                data[field] = False  # FileField's "clear"
        if self.editing:
            if not data.get("admin_password"):
                data["admin_password"] = self.instance.admin_password
            if data.get("open_hotspot"):
                data["wifi_password"] = ""
            elif not data.get("wifi_password"):
                data["wifi_password"] = self.instance.wifi_password
        return data

    def _post_clean(self):
        # The model's validators ran (ModelForm); then the rest of the API's
        # rules: a name not used yet, and offspot-config's rendering, whose
        # minimum image size is stored with the configuration.
        super()._post_clean()
        if self._errors:
            return
        try:
            self.instance.image_bytes = validate_configuration(self.instance)
        except ValidationError as exc:
            add_errors(self, exc)


class ImportForm(forms.Form):
    file = forms.FileField(
        label=_("Exported configuration (JSON)"),
        widget=forms.ClearableFileInput(attrs={"accept": "application/json,.json"}),
    )
    name = forms.CharField(
        label=capfirst(_("name")),
        max_length=80,
        required=False,
        help_text=_("Leave empty to keep the name in the file."),
    )
    admin_password = forms.CharField(
        label=capfirst(_("hotspot admin password")),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=_("Exports carry no password: give the hotspot's again."),
    )
    wifi_password = forms.CharField(
        label=_("Wi-Fi password"),
        strip=False,
        required=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=_("Leave empty for an open hotspot."),
    )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > MAX_IMPORT_BYTES:
            raise ValidationError(
                _("An export has 8 MiB at most; this file has %(size)d bytes."),
                params={"size": upload.size},
            )
        return upload.read()


class ConfigurationChoiceField(forms.ModelChoiceField):
    def __init__(self, *args, user, **kwargs):
        self.user = user
        super().__init__(*args, **kwargs)

    def label_from_instance(self, obj):
        label = obj.name
        if obj.owner_id != self.user.pk:
            label = f"{label} ({obj.owner.username})"
        if obj.image_bytes:
            fits = obj.min_card_size_gb
            label += " · " + (
                _("fits a %(size)d GB card") % {"size": fits}
                if fits
                else _("too big for any card")
            )
        return label


class OrderForm(forms.Form):
    """An order of cards (or of the image alone) for one configuration. The
    pipeline's rules (card big enough, recipient and address for cards, one copy
    for a download) are ``place_order``'s; the view puts its messages here."""

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["configuration"] = ConfigurationChoiceField(
            label=capfirst(_("configuration")),
            queryset=Configuration.objects.visible_to(user)
            .order_by("name")
            .prefetch_related("owner"),
            user=user,
            empty_label=None,
        )
        self.fields.update(
            forms.fields_for_model(
                Order,
                fields=ORDER_FIELDS,
                widgets={
                    "kind": forms.RadioSelect,
                    "shipping_address": forms.Textarea(attrs={"rows": 3}),
                },
            )
        )
        self.fields["card_size_gb"].choices = [
            (size, _("%(size)d GB") % {"size": size}) for size in CARD_SIZES
        ]
        self.fields["kind"].initial = OrderKind.PHYSICAL
        self.fields["quantity"].widget.attrs.update(min=1, max=100)
        self.fields["recipient_email"].help_text = _(
            "Who receives the cards, or the download link."
        )
        self.fields["recipient_name"].help_text = _("For SD-cards.")
        self.fields["shipping_address"].help_text = _("For SD-cards.")


class CancelForm(forms.Form):
    reason = forms.CharField(
        label=_("Reason (optional)"),
        required=False,
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 2}),
    )
