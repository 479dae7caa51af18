from apps.scheduler.api import views


def register(router):
    router.register("workers", views.WorkerViewSet, basename="worker")
    router.register("tasks", views.TaskViewSet, basename="task")
    router.register("slots", views.SlotViewSet, basename="slot")
    router.register("warehouses", views.WarehouseViewSet, basename="warehouse")
