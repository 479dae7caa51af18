"""The guarded client against real servers on loopback addresses: no mock of
the network. Loopback stands for every address that is not public; the tests
allow it (or not) through the same list the settings and options give."""

import socket
import threading

import pytest
import requests

from outbound import client
from outbound.guard import PUBLIC_ONLY, Allowed, Refused, check_url
from outbound.tests.servers import Banner, Server, certificate, hello

LOOPBACK = Allowed.parse("127.0.0.0/8 ::1")


@pytest.fixture
def serve():
    servers = []

    def start(answer=hello, host="127.0.0.1"):
        server = Server(answer, host)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def fetch(url, allowed=PUBLIC_ONLY, **options):
    return client.fetch_bytes(client.session(allowed, **options), url, max_bytes=100)


def test_a_server_on_loopback_is_refused_by_default_and_allowed_by_the_list(serve):
    server = serve()
    with pytest.raises(client.OutboundError) as refused:
        fetch(server.url + "/x")
    assert str(refused.value) == f"{server.url}/x: 127.0.0.1 is not a public address"
    assert server.requests == []  # not even a connection
    assert fetch(server.url + "/x", LOOPBACK) == b"hello"
    assert fetch(server.url + "/x", Allowed.parse("127.0.0.1")) == b"hello"


def test_ipv6_loopback_is_refused_by_default_and_allowed_by_the_list(serve):
    server = serve(host="::1")
    with pytest.raises(client.OutboundError, match=r"::1 is not a public address"):
        fetch(server.url)
    assert server.requests == []
    assert fetch(server.url, Allowed.parse("::1")) == b"hello"
    # IPv4 loopback allowed is not IPv6 loopback.
    with pytest.raises(client.OutboundError, match=r"::1 is not a public address"):
        fetch(server.url, Allowed.parse("127.0.0.0/8"))


def test_a_name_that_resolves_to_loopback_is_refused(serve):
    server = serve()
    url = f"http://localhost:{server.port}/"
    with pytest.raises(client.OutboundError) as refused:
        fetch(url)
    assert str(refused.value) == f"{url}: localhost: 127.0.0.1 is not a public address"
    assert server.requests == []
    # Allowed by name, the host is used whatever it resolves to.
    assert fetch(url, Allowed.parse("localhost")) == b"hello"


def test_a_redirect_from_an_allowed_host_to_loopback_is_refused(serve):
    inside = serve()
    mirror = serve(
        lambda request: (302, {"Location": f"{inside.url}/secret"}, b""),
        host="127.0.0.2",
    )
    with pytest.raises(client.OutboundError) as refused:
        fetch(mirror.url + "/start", Allowed.parse("127.0.0.2"))
    assert str(refused.value) == (
        f"{mirror.url}/start: redirected: 127.0.0.1 is not a public address"
    )
    assert mirror.requests == ["/start"]
    assert inside.requests == []


def test_a_redirect_from_a_host_allowed_by_name_to_its_address_is_refused(serve):
    def answer(request):
        if request.path != "/start":
            return 200, {}, b"inside"
        return 302, {"Location": f"http://127.0.0.1:{server.port}/"}, b""

    server = serve(answer)
    with pytest.raises(client.OutboundError, match=r"redirected: 127\.0\.0\.1 is not"):
        fetch(f"http://localhost:{server.port}/start", Allowed.parse("localhost"))
    assert server.requests == ["/start"]


def test_redirects_between_allowed_hosts_are_followed_and_counted(serve):
    final = serve(lambda request: (200, {}, b"arrived"), host="127.0.0.2")
    first = serve(lambda request: (301, {"Location": final.url + "/here"}, b""))
    assert fetch(first.url, LOOPBACK) == b"arrived"
    loop = serve(lambda request: (302, {"Location": "/again"}, b""))
    with pytest.raises(client.OutboundError, match=r": more than 5 redirects$"):
        fetch(loop.url, LOOPBACK)
    assert len(loop.requests) == 6
    to_file = serve(lambda request: (302, {"Location": "file:///etc/passwd"}, b""))
    with pytest.raises(client.OutboundError, match="redirected to a URL that is not"):
        fetch(to_file.url, LOOPBACK)


def test_a_name_rebound_between_the_check_and_the_connection_is_refused(serve):
    """The check resolves the name to a public address; when the connection
    is opened the same name resolves to loopback: the connection refuses."""
    server = serve()
    calls = []

    def rebinding(host, port):
        calls.append(host)
        address = "93.184.215.14" if len(calls) == 1 else "127.0.0.1"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    url = f"http://rebind.example:{server.port}/"
    check_url(url, PUBLIC_ONLY, resolver=rebinding)  # passes: a public address
    with pytest.raises(client.OutboundError) as refused:
        fetch(url, resolver=rebinding)
    assert str(refused.value) == (
        f"{url}: rebind.example: 127.0.0.1 is not a public address"
    )
    assert calls == ["rebind.example", "rebind.example"]
    assert server.requests == []


def test_https_is_checked_the_same_way_and_its_certificate_by_the_host_name(
    serve, tmp_path
):
    cert, key = certificate(tmp_path, "localhost")
    server = Server(hello, tls=(cert, key))
    try:
        url = f"https://localhost:{server.port}/"
        with pytest.raises(
            client.OutboundError, match=r"localhost: 127\.0\.0\.1 is not"
        ):
            fetch(url)
        session = client.session(LOOPBACK)
        session.verify = str(cert)
        assert client.fetch_bytes(session, url, max_bytes=10) == b"hello"
        # The certificate names localhost, not the address: TLS checks the name
        # the URL gives, whatever address the guard dialled.
        with pytest.raises(client.OutboundError) as mismatch:
            client.fetch_bytes(
                session, f"https://127.0.0.1:{server.port}/", max_bytes=10
            )
        assert str(mismatch.value).endswith("TLS failed (handshake or certificate)")
    finally:
        server.close()


def test_the_peer_is_checked_once_connected(serve):
    """0.0.0.0 dials this machine: allowed by (a careless) list, it connects to
    127.0.0.1, which the peer check refuses before a request is sent."""
    server = serve()
    with pytest.raises(client.OutboundError) as refused:
        fetch(f"http://0.0.0.0:{server.port}/", Allowed.parse("0.0.0.0/32"))
    assert str(refused.value).endswith(": 127.0.0.1 is not a public address")
    assert server.requests == []


def test_errors_never_quote_what_the_server_sent(serve):
    secret = "SECRET-7f3a"
    server = serve(lambda request: (404, f"{secret} not here", {}, secret.encode()))
    with pytest.raises(client.OutboundError) as refused:
        fetch(server.url + "/x", LOOPBACK)
    assert str(refused.value) == f"{server.url}/x: HTTP 404 Not Found"
    assert refused.value.status == 404
    banner = Banner(f"-ERR {secret} unknown command\r\n".encode())
    try:
        with pytest.raises(client.OutboundError) as broken:
            fetch(banner.url, LOOPBACK)
    finally:
        banner.close()
    assert banner.connections == 1
    assert secret not in str(broken.value)
    assert str(broken.value).endswith("the connection broke, or the answer is not HTTP")


def test_bodies_over_the_cap_are_refused(serve):
    server = serve(lambda request: (200, {}, b"x" * 5000))
    with pytest.raises(client.OutboundError, match="5000 bytes, more than 4096"):
        client.fetch_bytes(client.session(LOOPBACK), server.url, max_bytes=4096)


def test_only_http_and_https_are_fetched():
    with pytest.raises(client.OutboundError, match="only http and https"):
        fetch("file:///etc/passwd")


def test_proxies_from_the_environment_are_not_used(serve, monkeypatch):
    server = serve()
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    assert fetch(server.url, LOOPBACK) == b"hello"
    with pytest.raises(Refused, match="proxies are not used"):
        client.session(LOOPBACK).get(server.url, proxies={"http": "http://1.1.1.1"})


def test_a_connection_nobody_guards_is_refused():
    connection = client.GuardedHTTPConnection("127.0.0.1", 9)
    with pytest.raises(Refused, match="no outbound rule"):
        connection.connect()


def test_a_timeout_says_so(serve):
    release = threading.Event()

    def slow(request):
        release.wait(5)
        return 200, {}, b"late"

    server = serve(slow)
    session = client.session(LOOPBACK)
    try:
        with pytest.raises(client.OutboundError, match=r": timed out$"):
            client.fetch_bytes(session, server.url, max_bytes=10, timeout=(2, 0.2))
    finally:
        release.set()


def test_the_session_is_a_requests_session_with_a_redirect_limit():
    session = client.session(PUBLIC_ONLY, user_agent="test/1", max_redirects=2)
    assert isinstance(session, requests.Session)
    assert session.max_redirects == 2
    assert session.headers["User-Agent"] == "test/1"
    assert not session.trust_env
