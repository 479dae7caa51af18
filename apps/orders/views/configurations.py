"""Configuration pages: list, detail, create and edit (with the content picker),
duplicate, delete, JSON export and import, the rendered YAML and the branding
images. Clients see their own; staff read everyone's and change their own."""

import copy
import json

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.utils.text import slugify
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from apps.orders import services
from apps.orders.forms import ConfigurationForm, ImportForm, add_errors
from apps.orders.models import Configuration
from apps.orders.views.access import (
    customer_required,
    own_configuration,
    posted,
    uploaded,
    visible_configuration,
)
from apps.orders.views.picker import (
    branding_of,
    categories,
    chosen_context,
    draft_of,
    parse_contents,
    results_context,
)

PAGE_SIZE = 25
#: The hotspot's passwords are in a recipe: no cache may keep one.
NO_STORE = "no-store"
BRANDING_TYPES = {b"\x89PNG": "image/png", b"\xff\xd8\xff": "image/jpeg"}


@customer_required
def configuration_list(request):
    configurations = (
        Configuration.objects.visible_to(request.user)
        .order_by("-updated_at", "id")
        .prefetch_related("owner")
    )
    page = Paginator(configurations, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "orders/configuration_list.html",
        {
            "page": page,
            "rows": [(config, config.min_card_size_gb) for config in page],
        },
    )


@customer_required
def configuration_detail(request, pk):
    configuration = visible_configuration(request, pk)
    return render(
        request,
        "orders/configuration_detail.html",
        {
            "configuration": configuration,
            "may_change": configuration.owner_id == request.user.pk,
            "smallest_card": configuration.min_card_size_gb,
            "orders": configuration.orders.visible_to(request.user).order_by(
                "-created_at"
            )[:10],
        },
    )


def form_page(request, form, configuration=None):
    """The configuration form with the picker, as stored or as just posted."""
    if form.is_bound:
        chosen = parse_contents(request.POST.get("contents"))
        draft = draft_of(request.POST)
    else:
        chosen = list(configuration.contents) if configuration else []
        draft = configuration.snapshot() if configuration else {}
    branding = branding_of(request.user, configuration.pk) if configuration else {}
    return render(
        request,
        "orders/configuration_form.html",
        {
            "form": form,
            "configuration": configuration,
            "categories": categories(),
            "languages": form.fields["language"].choices,
            **chosen_context(chosen, draft, branding),
            **results_context({}, chosen),
        },
    )


@customer_required
@require_http_methods(["GET", "POST"])
def configuration_create(request):
    form = ConfigurationForm(posted(request), uploaded(request), owner=request.user)
    if request.method == "POST" and form.is_valid():
        configuration = form.save()
        messages.success(request, _("The configuration is saved."))
        return redirect("client:configuration_detail", configuration.pk)
    return form_page(request, form)


@customer_required
@require_http_methods(["GET", "POST"])
def configuration_edit(request, pk):
    configuration = own_configuration(request, pk)
    # The page shows the stored configuration (name, images) above a form the
    # posted values may have made invalid.
    stored = copy.copy(configuration)
    form = ConfigurationForm(
        posted(request),
        uploaded(request),
        instance=configuration,
        owner=request.user,
    )
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, _("The configuration is saved."))
        return redirect("client:configuration_detail", configuration.pk)
    return form_page(request, form, stored)


@customer_required
@require_POST
def configuration_duplicate(request, pk):
    """A copy for the caller, who may read the original (staff may copy a
    client's configuration to start from it)."""
    original = visible_configuration(request, pk)
    try:
        copy = services.duplicate_configuration(
            configuration=original, owner=request.user
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("client:configuration_detail", original.pk)
    messages.success(
        request,
        _("This is a copy of “%(name)s”: change what differs.")
        % {"name": original.name},
    )
    return redirect("client:configuration_edit", copy.pk)


@customer_required
@require_http_methods(["GET", "POST"])
def configuration_delete(request, pk):
    configuration = own_configuration(request, pk)
    if request.method == "POST":
        configuration.delete()
        messages.success(
            request,
            _("The configuration “%(name)s” is deleted; its orders keep their copy.")
            % {"name": configuration.name},
        )
        return redirect("client:configuration_list")
    return render(
        request,
        "orders/configuration_delete.html",
        {"configuration": configuration},
    )


def attachment(content, content_type: str, name: str) -> HttpResponse:
    response = HttpResponse(content, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response["Cache-Control"] = NO_STORE
    return response


def file_name(configuration: Configuration, suffix: str) -> str:
    return f"{slugify(configuration.name) or 'configuration'}{suffix}"


@customer_required
def configuration_export(request, pk):
    """The configuration as JSON, without its passwords (``services``)."""
    configuration = visible_configuration(request, pk)
    try:
        document = services.export_configuration(configuration)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("client:configuration_detail", configuration.pk)
    text = json.dumps(document, ensure_ascii=False, indent=2)
    return attachment(text, "application/json", file_name(configuration, ".json"))


@customer_required
@require_http_methods(["GET", "POST"])
def configuration_import(request):
    form = ImportForm(posted(request), uploaded(request))
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            configuration = services.import_configuration(
                text=data["file"],
                owner=request.user,
                admin_password=data["admin_password"],
                wifi_password=data["wifi_password"],
                name=data["name"],
            )
        except ValidationError as exc:
            add_errors(form, exc, elsewhere="file")
        else:
            messages.success(request, _("The configuration is imported."))
            return redirect("client:configuration_detail", configuration.pk)
    return render(request, "orders/configuration_import.html", {"form": form})


@customer_required
def configuration_recipe(request, pk):
    """image-creator's YAML as an order of this configuration would build it,
    rendered now (it holds the hotspot's passwords: owner and staff only)."""
    configuration = visible_configuration(request, pk)
    try:
        recipe = configuration.render()
    except ValidationError as exc:
        messages.error(
            request,
            _("This configuration cannot be rendered: %(why)s")
            % {"why": " ".join(exc.messages)},
        )
        return redirect("client:configuration_detail", configuration.pk)
    return attachment(
        recipe.text, "application/yaml", file_name(configuration, ".yaml")
    )


@customer_required
def configuration_branding(request, pk, which):
    """A branding image, to whoever may read the configuration (uploads are never
    served as files)."""
    configuration = visible_configuration(request, pk)
    try:
        data = configuration.branding_images().get(which)
    except ValidationError:
        data = None
    if not data:
        raise Http404(_("No such image."))
    content_type = next(
        (kind for magic, kind in BRANDING_TYPES.items() if data.startswith(magic)),
        "application/octet-stream",
    )
    response = HttpResponse(data, content_type=content_type)
    response["Cache-Control"] = "private, no-cache"
    return response
