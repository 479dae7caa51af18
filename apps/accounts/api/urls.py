from django.urls import path

from apps.accounts.api import views


def register(router):
    router.register("users", views.UserViewSet, basename="user")


urlpatterns = [
    path("auth/token/", views.ObtainTokenView.as_view(), name="token-obtain"),
    path("auth/token/refresh/", views.RefreshTokenView.as_view(), name="token-refresh"),
    path("auth/token/verify/", views.VerifyTokenView.as_view(), name="token-verify"),
    path("auth/logout/", views.LogoutView.as_view(), name="logout"),
    path("auth/jwks/", views.JWKSView.as_view(), name="jwks"),
    path("users/me/", views.MeView.as_view(), name="user-me"),
]
