import time

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import DatabaseError, close_old_connections

from apps.scheduler.services.sweeper import sweep


class Command(BaseCommand):
    help = (
        "Take back expired leases, mark silent workers offline, expire orders and "
        "release their images. Once, or every --interval seconds with --loop."
    )

    def add_arguments(self, parser):
        parser.add_argument("--loop", action="store_true", help="Run until stopped.")
        parser.add_argument(
            "--interval",
            type=int,
            default=settings.SWEEP_INTERVAL,
            help="Seconds between passes with --loop (default: SWEEP_INTERVAL).",
        )

    def handle(self, *args, **options):
        if options["interval"] < 1:
            self.stderr.write("--interval must be at least 1 second.")
            raise SystemExit(2)
        while True:
            if not options["loop"]:
                report = sweep()
                if options["verbosity"] > 0:
                    self.stdout.write(f"sweep: {report}")
                return
            try:
                report = sweep()
            except DatabaseError as exc:
                # The database is down or restarting: a loop that died here
                # would leave expired leases to nobody. Drop the broken
                # connection and catch up at the next pass.
                self.stderr.write(
                    f"sweep failed, next try in {options['interval']} s: {exc}"
                )
                close_old_connections()
            else:
                if options["verbosity"] > 0:
                    self.stdout.write(f"sweep: {report}")
            try:
                time.sleep(options["interval"])
            except KeyboardInterrupt:
                return
