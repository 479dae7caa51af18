"""The operators' pages, under /ops/ (namespace ``ops``)."""

from django.urls import path
from django.views.generic import RedirectView

from apps.operators.views import board, machines, orders, users

app_name = "ops"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="ops:board"), name="index"),
    path("board/", board.board, name="board"),
    path("board/hosts/", board.board_hosts, name="board-hosts"),
    path("orders/", orders.order_list, name="orders"),
    path("orders/<uuid:pk>/", orders.order_detail, name="order"),
    path("orders/<uuid:pk>/ship/", orders.ship, name="order-ship"),
    path("orders/<uuid:pk>/cancel/", orders.cancel, name="order-cancel"),
    path("orders/<uuid:pk>/anonymize/", orders.anonymize, name="order-anonymize"),
    path("machines/", machines.machines, name="machines"),
    path("users/", users.user_list, name="users"),
    path("users/new/", users.user_create, name="user-new"),
    path("users/<uuid:pk>/active/", users.user_active, name="user-active"),
    path("users/<uuid:pk>/password/", users.user_password, name="user-password"),
]
