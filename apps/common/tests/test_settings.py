"""Start-up refuses bad environment values with a message naming the variable."""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.test import SimpleTestCase

ROOT = Path(__file__).resolve().parents[3]


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as data:
        clean = {
            k: v
            for k, v in os.environ.items()
            if k not in {"DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"}
        }
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env={**clean, "IMAGER_DATA_DIR": data, **env},
            capture_output=True,
            text=True,
            timeout=120,
        )


class EnvironmentCheckTests(SimpleTestCase):
    def test_no_environment_at_all_runs_the_embedded_default(self):
        result = manage("check")
        self.assertEqual(result.returncode, 0, result.stderr)

    def test_an_unsupported_database_url_stops_start_up_with_a_hint(self):
        result = manage("check", DATABASE_URL="mysql://db/imager")
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("DATABASE_URL: (imager.E022)", result.stderr)
        self.assertIn("HINT: Use sqlite:///PATH, postgres://", result.stderr)

    def test_a_mongodb_url_without_a_database_name_is_refused(self):
        result = manage("check", DATABASE_URL="mongodb://127.0.0.1:27017")
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("imager.E020", result.stderr)

    def test_bad_booleans_and_numbers_name_the_variable_and_the_accepted_values(self):
        result = manage("check", DEBUG="maybe", EMAIL_HOST="smtp", EMAIL_PORT="x")
        self.assertNotEqual(result.returncode, 0)
        self.assertIn(
            "DEBUG: (imager.E001) DEBUG='maybe' is not a boolean", result.stderr
        )
        self.assertIn("EMAIL_PORT: (imager.E002)", result.stderr)

    def test_debug_off_without_secrets_is_an_error_not_a_silent_default(self):
        result = manage("check", DEBUG="false", ALLOWED_HOSTS="imager.example")
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("imager.E010", result.stderr)
        self.assertIn("imager.E011", result.stderr)

    def test_a_bad_signing_key_file_is_named(self):
        with tempfile.NamedTemporaryFile("w", suffix=".pem") as key:
            key.write("not a key")
            key.flush()
            result = manage("check", JWT_PRIVATE_KEY_FILE=key.name)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("imager.E012", result.stderr)

    def test_bad_hotspot_settings_name_the_variable_and_what_to_give(self):
        result = manage(
            "check",
            HOTSPOT_BASE_SOURCE="1.4.2",
            HOTSPOT_TLD="local",
            HOTSPOT_KIWIX_MIRROR="ftp://mirror.example.org/zim",
        )
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("HOTSPOT_BASE_SOURCE: (imager.E050)", result.stderr)
        self.assertIn(
            "HINT: Give the base image's http(s):// or file://", result.stderr
        )
        self.assertIn("HOTSPOT_TLD: (imager.E051)", result.stderr)
        self.assertIn("HOTSPOT_KIWIX_MIRROR: (imager.E052)", result.stderr)

    def test_a_base_image_given_as_a_path_is_named_by_its_file_url(self):
        code = "from django.conf import settings; print(settings.HOTSPOT_BASE_SOURCE)"
        result = manage(
            "shell", "-c", code, HOTSPOT_BASE_SOURCE="/srv/base/base image.img"
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(
            result.stdout.strip().splitlines()[-1], "file:///srv/base/base%20image.img"
        )

    def test_gunicorn_style_start_refuses_a_bad_environment_too(self):
        code = "import imager_site.wsgi"
        with tempfile.TemporaryDirectory() as data:
            result = subprocess.run(
                [sys.executable, "-c", code],
                cwd=ROOT,
                env={
                    "PATH": os.environ["PATH"],
                    "IMAGER_DATA_DIR": data,
                    "DATABASE_URL": "ftp://nowhere",
                },
                capture_output=True,
                text=True,
                timeout=120,
            )
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("imager.E022", result.stderr)


class ProductionStartUpTests(SimpleTestCase):
    """With DEBUG off, what a careless deployment gets wrong is said at start-up."""

    def production(self, **env) -> dict:
        return {
            "DEBUG": "false",
            "ALLOWED_HOSTS": "imager.example.org",
            "SECRET_KEY": "k" * 10 + "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJ",
            "JWT_PRIVATE_KEY": _private_pem(),
            **env,
        }

    def test_a_short_or_guessable_secret_key_stops_start_up(self):
        for weak in ("x", "a" * 80):
            with self.subTest(key=weak[:10]):
                result = manage("check", **self.production(SECRET_KEY=weak))
                self.assertNotEqual(result.returncode, 0)
                self.assertIn("SECRET_KEY: (imager.E014)", result.stderr)

    def test_a_sound_production_environment_warns_of_what_it_lacks(self):
        result = manage("check", **self.production())
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("imager.W050", result.stderr)  # static files not collected
        self.assertIn("imager.W051", result.stderr)  # no Redis: per-process limits
        self.assertIn("collectstatic", result.stderr)

    def test_gunicorn_refuses_to_serve_without_collected_static_files(self):
        with tempfile.TemporaryDirectory() as data:
            env = {"PATH": os.environ["PATH"], "IMAGER_DATA_DIR": data}
            env |= self.production()
            served = subprocess.run(
                [sys.executable, "-c", "import imager_site.wsgi"],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            self.assertNotEqual(served.returncode, 0)
            self.assertIn("imager.W050", served.stderr)
            collected = subprocess.run(
                [sys.executable, "manage.py", "collectstatic", "--no-input", "-v0"],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            self.assertEqual(collected.returncode, 0, collected.stderr)
            served = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    "import imager_site.wsgi; from django.conf import settings; "
                    "print(settings.SECURE_HSTS_SECONDS)",
                ],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            self.assertEqual(served.returncode, 0, served.stderr)
            self.assertEqual(served.stdout.strip(), str(365 * 24 * 3600))
            self.assertIn("imager.W051", served.stderr)  # logged, not fatal


def _private_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
