"""The benchmark's URLs plus the baseline of the operators' pages: the same login
check, layout and navigation as every operators' page, with no data."""

from django.shortcuts import render
from django.urls import include, path

from apps.operators.access import staff_required


@staff_required
def bare_page(request):
    return render(request, "ops/page.html", {})


urlpatterns = [
    path("bench/bare-page/", bare_page),
    path("", include("bench.bench_urls")),
]
