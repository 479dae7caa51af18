from django.conf import settings
from django.db import migrations, models

ACTIVE = ["pending", "leased", "running"]
#: apps.orders.cards as it was when tasks started to carry their work.
USABLE_BYTES = {
    8: 7_436_500_992,
    16: 14_877_196_288,
    32: 29_758_586_880,
    64: 59_517_173_760,
    128: 119_038_541_824,
    256: 238_077_083_648,
    512: 476_158_361_600,
}


def freeze_work(apps, schema_editor):
    """Give the unfinished tasks of an existing database the work and room that
    new tasks get when they are made (apps.orders.pipeline)."""
    Task = apps.get_model("scheduler", "Task")
    Order = apps.get_model("orders", "Order")
    Image = apps.get_model("scheduler", "Image")
    Warehouse = apps.get_model("scheduler", "Warehouse")
    for task in Task.objects.filter(status__in=ACTIVE):
        if task.kind == "create":
            order = Order.objects.get(pk=task.order_id)
            # BASE_IMAGE_BYTES (4 GiB by default) was the base system's room then.
            base = getattr(settings, "BASE_IMAGE_BYTES", 4 * 1024**3)
            needed = base + int(order.content_bytes * 1.05)
            work = {
                "config": order.config,
                "card_size_gb": order.card_size_gb,
                "image_bytes": USABLE_BYTES[order.card_size_gb],
                "upload_folder": f"orders/{order.pk}",
            }
        elif task.image_id is not None:
            image = Image.objects.get(pk=task.image_id)
            folder = f"orders/{image.order_id}"
            needed = image.size
            work = {
                "image": {
                    "id": str(image.pk),
                    "order": str(image.order_id),
                    "file_name": image.file_name,
                    "path": f"{folder}/{image.file_name}",
                    "size": image.size,
                    "sha256": image.sha256,
                    "bmap_name": image.bmap_name,
                    "bmap_path": f"{folder}/{image.bmap_name}",
                    "bmap_size": image.bmap_size,
                    "bmap_sha256": image.bmap_sha256,
                },
                "warehouse": Warehouse.objects.get(pk=image.warehouse_id).ftp_url,
            }
        else:
            continue
        Task.objects.filter(pk=task.pk).update(work=work, needed_bytes=needed)


class Migration(migrations.Migration):
    dependencies = [
        ("scheduler", "0002_image_file_per_order"),
        ("orders", "0002_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="task",
            name="needed_bytes",
            field=models.BigIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="task",
            name="work",
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.RunPython(freeze_work, migrations.RunPython.noop),
    ]
