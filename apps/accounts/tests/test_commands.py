"""The create_account command."""

import io
import tempfile
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import TestCase

User = get_user_model()


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("create_account", *args, stdout=out)
    return out.getvalue()


class CreateAccountTests(TestCase):
    def test_creates_a_worker_account_and_prints_nothing_secret(self):
        with tempfile.TemporaryDirectory() as folder:
            secret = Path(folder) / "creator.password"
            output = run(
                "creator-1", "--role", "creator", "--write-password", str(secret)
            )
            user = User.objects.get(username="creator-1")
            password = secret.read_text().strip()
            self.assertEqual(secret.stat().st_mode & 0o777, 0o600)
        self.assertEqual(user.role, "creator")
        self.assertTrue(user.check_password(password))
        self.assertNotIn(password, output)
        self.assertIn("Created creator account 'creator-1'", output)

    def test_shows_the_password_only_when_asked(self):
        output = run("w1", "--role", "writer", "--show-password")
        password = output.split("Password: ")[1].strip()
        self.assertTrue(User.objects.get(username="w1").check_password(password))

    def test_refuses_an_existing_account_unless_told_to_update(self):
        run("m1", "--role", "manager")
        with self.assertRaisesMessage(CommandError, "pass --update"):
            run("m1", "--role", "admin")
        self.assertEqual(User.objects.get(username="m1").role, "manager")
        run("m1", "--role", "admin", "--update")
        self.assertEqual(User.objects.get(username="m1").role, "admin")

    def test_refuses_a_weak_given_password_and_creates_nothing(self):
        with tempfile.NamedTemporaryFile("w") as handle:
            handle.write("1234\n")
            handle.flush()
            with self.assertRaisesMessage(CommandError, "too short"):
                run("c1", "--role", "client", "--password-file", handle.name)
        self.assertFalse(User.objects.filter(username="c1").exists())

    def test_prints_tokens_for_a_worker_when_asked(self):
        output = run("dl", "--role", "downloader", "--tokens")
        self.assertIn('"access": "', output)

    def test_keep_existing_leaves_an_account_untouched(self):
        run("k1", "--role", "manager")
        before = User.objects.get(username="k1").password
        output = run("k1", "--role", "admin", "--keep-existing")
        user = User.objects.get(username="k1")
        self.assertEqual((user.role, user.password), ("manager", before))
        self.assertIn("left as it is", output)
