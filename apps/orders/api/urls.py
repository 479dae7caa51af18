from apps.orders.api import views


def register(router):
    router.register(
        "configurations", views.ConfigurationViewSet, basename="configuration"
    )
    router.register("orders", views.OrderViewSet, basename="order")


urlpatterns = []
