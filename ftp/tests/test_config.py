"""Settings from flags and environment, and ``python -m ftp`` as a process."""

import os
import subprocess
import sys

import pytest

from ftp.config import OPTIONS, ConfigError, load

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BASE = {
    "WAREHOUSE_API_URL": "http://127.0.0.1:8000",
    "WAREHOUSE_USERNAME": "warehouse",
    "WAREHOUSE_PASSWORD": "secret",
    "WAREHOUSE_ROOT": "/srv/warehouse",
}


def test_defaults_need_only_the_api_the_account_and_the_root():
    config = load([], BASE)
    assert (config.api_url, config.username, config.root) == (
        "http://127.0.0.1:8000",
        "warehouse",
        "/srv/warehouse",
    )
    assert (config.host, config.port, config.max_connections) == (
        "127.0.0.1",
        2121,
        512,
    )
    assert config.max_connections_per_ip == 0
    assert (config.http_port, config.http_url) == (2180, None)
    assert config.reserve == 1 << 30
    assert not config.tls
    assert "secret" not in repr(config)


def test_flags_win_over_the_environment(tmp_path):
    password = tmp_path / "password"
    password.write_text("from-file\n")
    env = {**BASE, "WAREHOUSE_PORT": "2200", "WAREHOUSE_RESERVE": "5G"}
    config = load(
        [
            *("--port", "2300", "--passive-ports", "60000-60010"),
            *("--max-upload-rate", "50M", "--password-file", str(password)),
            *("--host", "192.0.2.1", "--api-url", "https://api.example.org/"),
        ],
        env,
    )
    assert config.port == 2300
    assert config.reserve == 5 << 30
    assert config.passive_ports == range(60000, 60011)
    assert config.max_upload_rate == 50 << 20
    assert config.password == "from-file"
    assert config.api_url == "https://api.example.org"


def test_the_download_server_has_a_port_or_is_off_and_a_public_url():
    env = {**BASE, "WAREHOUSE_HTTP_PORT": "off"}
    assert load([], env).http_port is None
    assert load(["--http-port", "8021"], env).http_port == 8021
    config = load(["--http-url", "https://dl.example.org/warehouse/"], BASE)
    assert config.http_url == "https://dl.example.org/warehouse"
    with pytest.raises(ConfigError, match="--http-url needs the HTTP server"):
        load(["--http-url", "http://x:1"], env)


def test_tls_needs_a_readable_certificate(tmp_path):
    cert = tmp_path / "cert.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\n")
    assert load(["--tls-cert", str(cert)], BASE).tls
    with pytest.raises(ConfigError, match="--tls-cert: no readable file"):
        load(["--tls-cert", str(tmp_path / "missing.pem")], BASE)
    with pytest.raises(ConfigError, match="--tls-key needs --tls-cert"):
        load(["--tls-key", str(cert)], BASE)


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--port", "http"], {}, "--port: expected a port number"),
        ([], {"WAREHOUSE_PORT": "99999"}, "WAREHOUSE_PORT: expected a port number"),
        (["--reserve", "lots"], {}, "--reserve: expected bytes"),
        (["--passive-ports", "10-20"], {}, "--passive-ports: expected FIRST-LAST"),
        (["--api-url", "ftp://x"], {}, "--api-url: expected the API's base URL"),
        (["--name", "has space"], {}, "--name: expected 1-100 letters"),
        (["--idle-timeout", "0"], {}, "--idle-timeout: expected a number of seconds"),
        (["--log-level", "LOUD"], {}, "--log-level: expected DEBUG"),
        (["--public-url", "http://x"], {}, "--public-url: expected ftp://"),
        (["--http-port", "web"], {}, "--http-port: expected a port number"),
        ([], {"WAREHOUSE_HTTP_URL": "ftp://x"}, "WAREHOUSE_HTTP_URL: expected http"),
        (["--http-url", "http://x/?a=b"], {}, "--http-url: expected http"),
        ([], {"WAREHOUSE_ROOT": ""}, "--root (or WAREHOUSE_ROOT) is required"),
        ([], {"WAREHOUSE_PASSWORD": ""}, "set WAREHOUSE_PASSWORD or --password-file"),
    ],
)
def test_bad_settings_name_the_flag_or_variable_to_fix(argv, env, message):
    with pytest.raises(
        ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")
    ):
        load(argv, {**BASE, **env})


def run(*argv, env=None):
    return subprocess.run(
        [sys.executable, "-m", "ftp", *argv],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], "PYTHONPATH": ROOT, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_help_documents_every_flag_and_variable():
    done = run("--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    for option in OPTIONS:
        assert option.flag in text
        assert option.env in text
    assert "WAREHOUSE_PASSWORD" in text


def test_a_bad_setting_is_one_clear_line_and_exit_code_2():
    done = run("--port", "abc", env=BASE)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "python -m ftp: error: --port: expected a port number from 0 (any free port) "
        "to 65535; got 'abc'"
    ]


def test_an_unreachable_api_stops_the_start_with_exit_code_1(tmp_path):
    env = {
        **BASE,
        "WAREHOUSE_API_URL": "http://127.0.0.1:1",
        "WAREHOUSE_ROOT": str(tmp_path),
    }
    done = run("--port", "0", env=env)
    assert done.returncode == 1
    assert "cannot fetch the API's signing keys" in done.stderr
    assert "cannot reach the API" in done.stderr
