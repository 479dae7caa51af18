"""The workshop board and the part of it that refreshes itself.

The page loads once; its hosts and slots are a part that htmx asks for again every
``REFRESH_SECONDS`` (``hx-trigger="every …"``) and swaps in place: progress bars
move, instructions change, without a page reload. Without JavaScript the page
shows the same part as of its loading.
"""

from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from apps.operators.access import staff_required
from apps.operators.board import build_board

REFRESH_SECONDS = 3


def context() -> dict:
    now = timezone.now()
    return {
        "hosts": build_board(now),
        "updated_at": now,
        "refresh_seconds": REFRESH_SECONDS,
        "section": "board",
    }


@require_GET
@staff_required
def board(request):
    return render(request, "ops/board.html", context())


@require_GET
@staff_required
def board_hosts(request):
    response = render(request, "ops/_board_hosts.html", context())
    # Always fresh: a cached answer would freeze the bars.
    response["Cache-Control"] = "no-store"
    return response
