"""The refresh's guards and the one outbound fetch, against a small HTTP server
that answers what each test needs (what kiwix-serve will not do on demand: a
catalog that changes between two pages, a redirect, a huge or a broken page)."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from django.test import SimpleTestCase, TestCase, override_settings

from apps.catalog.fetch import FetchError, fetch
from apps.catalog.models import CatalogSource, Entry
from apps.catalog.services import refresh_catalog

ENTRY = """<entry><id>urn:uuid:{id}</id><title>Entry {id}</title>
<updated>2026-01-02T00:00:00Z</updated><summary>s</summary><language>eng</language>
<name>entry_{id}</name><flavour></flavour><category>test</category><tags></tags>
<link rel="http://opds-spec.org/acquisition/open-access" type="application/x-zim"
 href="http://127.0.0.1/{id}.zim.meta4" length="1024"/></entry>"""


def feed(ids, total, start) -> bytes:
    entries = "".join(ENTRY.format(id=entry_id) for entry_id in ids)
    return (
        '<feed xmlns="http://www.w3.org/2005/Atom">'
        f"<totalResults>{total}</totalResults><startIndex>{start}</startIndex>"
        f"{entries}</feed>"
    ).encode()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, format, *args):
        pass

    def do_GET(self):
        self.server.requests.append(self.path)
        status, headers, body = self.server.answer(self)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Server:
    def __init__(self, answer):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.answer = answer
        self.httpd.requests = []
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def requests(self):
        return self.httpd.requests

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def catalog(pages):
    """Answers ``?start=N`` with ``pages[N]`` (a list of ids and a total)."""

    def answer(request):
        start = int(parse_qs(urlsplit(request.path).query).get("start", ["0"])[0])
        ids, total = pages[start]
        return 200, {"Content-Type": "application/atom+xml"}, feed(ids, total, start)

    return answer


LOCAL = {"OUTBOUND_ALLOWED_NETWORKS": ["127.0.0.0/8"], "CATALOG_PAGE_SIZE": 2}


class RefreshGuardTests(TestCase):
    def serve(self, answer) -> Server:
        server = Server(answer)
        self.addCleanup(server.close)
        override = override_settings(CATALOG_URLS=[server.url], **LOCAL)
        override.enable()
        self.addCleanup(override.disable)
        return server

    def test_pages_are_read_with_start_and_count_until_the_total(self):
        pages = {0: (["a", "b"], 5), 2: (["c", "d"], 5), 4: (["e"], 5)}
        server = self.serve(catalog(pages))
        (report,) = refresh_catalog()
        self.assertTrue(report.ok, report.error)
        self.assertEqual((report.pages, report.created), (3, 5))
        self.assertEqual(
            server.requests,
            [f"/catalog/v2/entries?start={n}&count=2" for n in (0, 2, 4)],
        )

    def test_a_catalog_that_changes_between_pages_changes_nothing(self):
        # An entry was inserted before page 2 was read: "b" is listed twice and
        # one entry was never seen, so it must not be marked removed.
        self.serve(catalog({0: (["a", "b"], 4), 2: (["b", "c"], 4)}))
        (report,) = refresh_catalog()
        self.assertIn("the catalog changed while it was read", report.error)
        self.assertFalse(Entry.objects.exists())
        source = CatalogSource.objects.get()
        self.assertIn("changed while it was read", source.last_error)
        self.assertIsNone(source.last_success_at)

    def test_failures_are_recorded_from_the_first_one_after_the_last_success(self):
        answers = [
            (200, {}, feed(["a"], 1, 0)),
            (502, {}, b"Bad Gateway"),
            (200, {}, b"<html>maintenance</html>"),
        ]
        self.serve(lambda request: answers.pop(0))
        (report,) = refresh_catalog()
        source = CatalogSource.objects.get()
        success = source.last_success_at
        self.assertIsNotNone(success)

        (report,) = refresh_catalog()
        self.assertIn("HTTP 502", report.error)
        source.refresh_from_db()
        first = source.failing_since
        self.assertGreater(first, success)

        (report,) = refresh_catalog()
        self.assertIn("not an Atom feed", report.error)
        source.refresh_from_db()
        self.assertEqual(source.failing_since, first)
        self.assertGreater(source.last_attempt_at, first)
        self.assertEqual(source.last_success_at, success)
        self.assertIn("not an Atom feed", source.last_error)
        self.assertEqual(Entry.objects.search().count(), 1)


class FetchTests(SimpleTestCase):
    def serve(self, answer) -> Server:
        server = Server(answer)
        self.addCleanup(server.close)
        return server

    def test_loopback_is_refused_unless_allowed(self):
        server = self.serve(lambda request: (200, {}, b"hello"))
        with (
            override_settings(OUTBOUND_ALLOWED_NETWORKS=[]),
            self.assertRaisesMessage(FetchError, "not a public address"),
        ):
            fetch(server.url, max_bytes=100)
        self.assertEqual(server.requests, [])
        with override_settings(OUTBOUND_ALLOWED_NETWORKS=["127.0.0.1/32"]):
            self.assertEqual(fetch(server.url, max_bytes=100), b"hello")

    @override_settings(OUTBOUND_ALLOWED_NETWORKS=["127.0.0.0/8"])
    def test_a_redirect_to_a_private_address_is_refused_before_it_is_followed(self):
        server = self.serve(
            lambda request: (302, {"Location": "http://10.1.2.3/secret"}, b"")
        )
        with self.assertRaisesMessage(FetchError, "10.1.2.3"):
            fetch(server.url, max_bytes=100)
        self.assertEqual(len(server.requests), 1)

    @override_settings(OUTBOUND_ALLOWED_NETWORKS=["127.0.0.0/8"])
    def test_redirects_are_followed_and_counted(self):
        server = self.serve(
            lambda request: (
                (302, {"Location": "/here"}, b"")
                if request.path != "/here"
                else (200, {}, b"arrived")
            )
        )
        self.assertEqual(fetch(server.url + "/start", max_bytes=100), b"arrived")
        loop = self.serve(lambda request: (302, {"Location": "/again"}, b""))
        with self.assertRaisesMessage(FetchError, "more than 5 redirects"):
            fetch(loop.url, max_bytes=100)

    @override_settings(OUTBOUND_ALLOWED_NETWORKS=["127.0.0.0/8"])
    def test_a_body_over_the_cap_is_refused(self):
        server = self.serve(lambda request: (200, {}, b"x" * 5000))
        with self.assertRaisesMessage(FetchError, "more than 4096 allowed"):
            fetch(server.url, max_bytes=4096)

    def test_only_http_and_https_are_fetched(self):
        with self.assertRaisesMessage(FetchError, "only http and https"):
            fetch("file:///etc/passwd", max_bytes=100)
