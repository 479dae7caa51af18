"""The site's URLs with Django's own password pages under /accounts/: the page a
password e-mail leads to (``password_reset_confirm``) belongs to the site's
account pages, which this app does not make."""

from django.urls import include, path

from imager_site.urls import urlpatterns as site

urlpatterns = [*site, path("accounts/", include("django.contrib.auth.urls"))]
