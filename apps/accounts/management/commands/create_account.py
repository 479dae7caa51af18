import json
import secrets
import sys
from pathlib import Path

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from apps.accounts.api.serializers import token_pair
from apps.accounts.models import Role


class Command(BaseCommand):
    help = (
        "Create (or with --update, change) an account of any role, for example a "
        "worker account. Prints nothing secret unless asked: the password is read from "
        "--password-file or standard input, or generated and then shown only with "
        "--show-password or written with --write-password."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--role", required=True, choices=Role.values)
        parser.add_argument("--email", default="")
        parser.add_argument("--full-name", default="")
        source = parser.add_mutually_exclusive_group()
        source.add_argument(
            "--password-file", type=Path, help="Read the password from this file."
        )
        source.add_argument(
            "--password-stdin",
            action="store_true",
            help="Read the password from the first line of standard input.",
        )
        parser.add_argument(
            "--show-password",
            action="store_true",
            help="Print the generated password (it is secret).",
        )
        parser.add_argument(
            "--write-password",
            type=Path,
            help="Write the password to this file, readable by its owner only.",
        )
        parser.add_argument(
            "--tokens",
            action="store_true",
            help="Print an access and a refresh token as JSON (they are secret).",
        )
        parser.add_argument(
            "--keep-existing",
            action="store_true",
            help="Leave an existing account as it is and exit successfully.",
        )
        parser.add_argument(
            "--update",
            action="store_true",
            help="Change the role, e-mail and password of an existing account.",
        )

    def handle(self, *args, **options):
        User = get_user_model()
        username = options["username"]
        password, generated = self._password(options)

        user = User.objects.filter(username=username).first()
        if user is not None and options["keep_existing"]:
            self.stdout.write(f"The account {username!r} exists; left as it is.")
            return
        if user is not None and not options["update"]:
            raise CommandError(
                f"The account {username!r} exists already; pass --update to change it."
            )
        created = user is None
        if created:
            user = User(username=username)
        user.role = options["role"]
        user.email = options["email"] or user.email
        user.full_name = options["full_name"] or user.full_name
        user.is_active = True
        try:
            user.full_clean(exclude=["password"], validate_unique=created)
            if not generated:
                validate_password(password, user)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        user.set_password(password)
        user.save()

        if options["write_password"]:
            self._write_secret(options["write_password"], password)
        verb = "Created" if created else "Updated"
        self.stdout.write(f"{verb} {user.role} account {username!r} (id {user.pk}).")
        if options["show_password"]:
            self.stdout.write(f"Password: {password}")
        if options["tokens"]:
            pair = token_pair(user)
            self.stdout.write(
                json.dumps({"access": pair["access"], "refresh": pair["refresh"]})
            )

    def _password(self, options) -> tuple[str, bool]:
        if options["password_file"]:
            try:
                text = options["password_file"].read_text()
            except OSError as exc:
                raise CommandError(
                    f"Cannot read {options['password_file']}: {exc.strerror}."
                ) from exc
            password = text.splitlines()[0] if text else ""
        elif options["password_stdin"]:
            password = sys.stdin.readline().rstrip("\n")
        else:
            return secrets.token_urlsafe(18), True
        if not password:
            raise CommandError("The password is empty; give one, or let one be made.")
        return password, False

    def _write_secret(self, path: Path, secret: str) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600, exist_ok=True)
            path.chmod(0o600)
            path.write_text(secret + "\n")
        except OSError as exc:
            raise CommandError(f"Cannot write {path}: {exc.strerror}.") from exc
