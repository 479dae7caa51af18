"""The pages in a real browser: Debian's headless Chromium, driven by Selenium
(tests/browser.py), against the live server with its static files.

- A client logs in through the form, builds a configuration with the catalog
  picker (the total and the smallest card change as entries are added), saves
  it, orders cards, and watches each copy's percentage move on the order's
  page, without a reload, while the workers' accounts move the tasks through
  the API with their JWTs, as the creator, the warehouse and the writer host do.
- A manager sees on the workshop board which slot to fill with which card, and
  the board follow the writer's progress by itself.
- The same pages in French; a signed-in user's own language winning over the
  browser's, and the language switcher to French and back.

Every step leaves a screenshot under var/test-artifacts/browser/<test>/, and any
error in the browser's console fails the test. They run once, in the SQLite
pass of scripts/test.sh.
"""

import shutil
from uuid import uuid4

import pytest
from django.utils import timezone

from apps.accounts.testing import PASSWORD
from apps.catalog.models import CatalogSource, Entry
from apps.catalog.services import entry_fields
from apps.catalog.testing import parsed_entry
from apps.orders.cards import smallest_card_gb, usable_bytes
from apps.orders.models import Configuration, Order
from apps.scheduler.models import Task, TaskKind, TaskStatus
from apps.scheduler.testing import World, configuration, order
from tests.browser import ARTIFACTS, Browser, log_in, marked, missing
from workers.common.api import ApiClient

MISSING = missing()
pytestmark = [
    pytest.mark.skipif(MISSING is not None, reason=f"needs {MISSING}"),
    pytest.mark.django_db(transaction=True),
]

GB = 10**9
SHA_IMAGE, SHA_BMAP = "1" * 64, "2" * 64


@pytest.fixture
def browser(live_server, request):
    """Starts a Chromium for someone (``who``) in a language; the screenshots of
    a test go to a folder named after it, emptied first. A failed test leaves a
    last screenshot of where each browser stood."""
    folder = ARTIFACTS / request.node.name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    started = []

    def start(who: str, language: str = "en") -> Browser:
        page = Browser(live_server.url, folder, language, who)
        started.append(page)
        return page

    yield start
    report = getattr(request.node, "report_call", None)
    for page in started:
        try:
            if report is not None and report.failed:
                page.driver.save_screenshot(str(folder / f"{page.who}-failure.png"))
        finally:
            page.close()


def catalog_entry(source, number: int, title: str, size: int) -> Entry:
    """A catalog entry as an import writes it, its file on loopback (the tests'
    settings allow it, as an operator allows a LAN mirror)."""
    url = f"http://127.0.0.1:9/zim/{title.lower().replace(' ', '_')}.zim"
    parsed = parsed_entry(
        number,
        title=title,
        size=size,
        download_url=url,
        metalink_url=url + ".meta4",
        checksum_url=url + ".sha256",
    )
    return Entry.objects.create(
        source=source, updated_at=timezone.now(), **entry_fields(parsed)
    )


class Workers:
    """The creator, the warehouse and the writer host, each logged in to the API
    with its own account (JWT), moving tasks as the real processes do."""

    def __init__(self, url: str, world: World):
        self.world = world
        self.creator = ApiClient(url, "creator", PASSWORD, backoff=0.01)
        self.warehouse = ApiClient(url, "warehouse", PASSWORD, backoff=0.01)
        self.host = ApiClient(url, "writer-host", PASSWORD, backoff=0.01)

    @staticmethod
    def claim(api: ApiClient, worker, **extra) -> dict:
        answer = api.post("api/v1/tasks/claim/", {"worker": str(worker.pk), **extra})
        assert answer["task"] is not None, answer
        return answer["task"]

    @staticmethod
    def event(api: ApiClient, task: dict, kind: str, **data) -> None:
        body = {"lease_id": task["lease_id"], "event_id": str(uuid4()), "type": kind}
        api.post(f"api/v1/tasks/{task['id']}/events/", {**body, **data})

    def start_build(self) -> dict:
        task = self.claim(self.creator, self.world.creator, free_disk=100 * GB)
        assert task["kind"] == "create"
        return task

    def finish_build(self, task: dict, order_id) -> None:
        """The creator declares and uploads the image; the warehouse says it
        received both files with the declared checksums."""
        image = {"file_name": "image.img", "size": 5 * GB, "sha256": SHA_IMAGE}
        bmap = {"bmap_name": "image.bmap", "bmap_size": 2000, "bmap_sha256": SHA_BMAP}
        self.creator.post(
            f"api/v1/tasks/{task['id']}/image/",
            {"lease_id": task["lease_id"], **image, **bmap},
        )
        self.event(self.creator, task, "succeeded")
        for name, size, sha256 in (
            ("image.img", 5 * GB, SHA_IMAGE),
            ("image.bmap", 2000, SHA_BMAP),
        ):
            self.warehouse.post(
                "api/v1/warehouses/received/",
                {"path": f"orders/{order_id}/{name}", "size": size, "sha256": sha256},
            )

    def transfer(self) -> None:
        """The host's downloader fetches the image: the copies wait for cards."""
        task = self.claim(self.host, self.world.downloader, free_disk=100 * GB)
        assert task["kind"] == "download"
        self.event(self.host, task, "succeeded")

    def build_and_transfer(self, order_id) -> None:
        self.finish_build(self.start_build(), order_id)
        self.transfer()

    def slot(self, name: str, state: str, percent: float = 0, card_gb: int = 0):
        body = {"state": state, "percent": percent}
        if card_gb:
            body["card_capacity"] = self.card_capacity(card_gb)
        self.host.post(f"api/v1/workers/{self.world.writer.pk}/slots/{name}/", body)

    @staticmethod
    def card_capacity(card_gb: int) -> int:
        # A real card of that size: a little under its nominal size, above
        # what an image may use of it.
        return max(usable_bytes(card_gb), int(card_gb * GB * 0.99))

    def start_write(self, slot: str, card_gb: int) -> dict:
        """A card goes into ``slot``: the writer claims the next copy for it."""
        self.slot(slot, "card_present", card_gb=card_gb)
        task = self.claim(
            self.host,
            self.world.writer,
            slot=slot,
            card_capacity=self.card_capacity(card_gb),
        )
        assert task["kind"] == "write"
        return task

    def write_progress(self, task: dict, slot: str, card_gb: int, percent: float):
        self.event(self.host, task, "progress", phase="writing", percent=percent)
        self.slot(slot, "writing", percent, card_gb=card_gb)


def results(page: Browser) -> list[str]:
    """The catalog entries the picker lists now (their ids)."""
    found = page.find_all(marked("picker-result"))
    return [element.get_attribute("data-entry") for element in found]


def percent_of(page: Browser, selector: str) -> str | None:
    return page.attribute(selector, "data-percent")


def test_a_client_designs_a_configuration_orders_cards_and_watches_each_copy(
    browser, live_server
):
    world = World()
    source = CatalogSource.objects.create(url="https://library.example.org")
    # 1 GB fits an 8 GB card with the base system; 3 GB more needs a 16 GB one.
    small = catalog_entry(source, 1, "Chemistry for schools", 1 * GB)
    big = catalog_entry(source, 2, "Wikipedia for schools", 3 * GB)
    catalog_entry(source, 3, "Football history", 2 * GB)
    page = browser("client")

    log_in(page, "client", PASSWORD)
    assert page.path == "/orders/"  # clients land on their orders
    page.click(marked("nav-configurations"))
    page.wait_for(marked("configuration-new"))
    page.click(marked("configuration-new"))
    page.wait_for(marked("picker"))
    assert page.attribute(marked("picker-total"), "data-bytes") == "0"
    assert page.find_all(marked("picker-chosen-empty"))
    # The hotspot's language and time zone start at the model's defaults.
    assert page.find("#id_language option:checked").get_attribute("value") == "en"
    assert page.find("#id_timezone option:checked").get_attribute("value") == "UTC"
    page.fill("id_name", "Browser kit")
    page.fill("id_ssid", "Kiwix Browser")
    page.fill("id_admin_login", "teacher")
    page.fill("id_admin_password", "hotspot-admin-pw")
    page.shot("new-configuration")

    # The picker's search narrows the results without reloading the page.
    page.mark_document()
    page.fill("picker-search", "chemistry")
    page.wait(lambda: results(page) == [str(small.pk)], "the chemistry file alone")
    page.shot("searched")

    page.click(
        f'{marked("picker-result")}[data-entry="{small.pk}"] {marked("picker-add")}'
    )
    page.wait(
        lambda: page.attribute(marked("picker-total"), "data-bytes") == str(small.size),
        "the total to count the first file",
    )
    first_image = int(page.attribute(marked("picker-min-size"), "data-bytes"))
    assert first_image > small.size  # the base system and offspot's margin too
    assert page.attribute(marked("picker-smallest-card"), "data-gb") == "8"
    assert smallest_card_gb(first_image) == 8
    assert "8 GB" in page.text(marked("picker-smallest-card"))
    page.shot("first-entry-picked")

    # Words and a language: the Spanish file of the two "schools" ones.
    page.fill("picker-search", "schools")
    page.wait(lambda: len(results(page)) == 2, "both schools files")
    page.choose("picker-language", "es")
    page.wait(lambda: results(page) == [str(big.pk)], "the Spanish file alone")
    page.click(
        f'{marked("picker-result")}[data-entry="{big.pk}"] {marked("picker-add")}'
    )
    both = str(small.size + big.size)
    page.wait(
        lambda: page.attribute(marked("picker-total"), "data-bytes") == both,
        "the total to count both files",
    )
    second_image = int(page.attribute(marked("picker-min-size"), "data-bytes"))
    assert second_image - first_image >= big.size
    assert page.attribute(marked("picker-smallest-card"), "data-gb") == "16"
    assert "16 GB" in page.text(marked("picker-smallest-card"))
    assert len(page.find_all(marked("picker-chosen-row"))) == 2
    assert page.same_document()
    page.shot("second-entry-picked")

    # The hotspot in French, while the picker's filter says Spanish.
    page.choose("id_language", "fr")
    page.click(marked("configuration-save"))
    page.wait_for(marked("configuration-order"), "the saved configuration's page")
    saved = Configuration.objects.get(owner=world.client, name="Browser kit")
    assert [entry["url"] for entry in saved.contents] == [
        small.download_url,
        big.download_url,
    ]
    assert (saved.language, saved.min_card_size_gb) == ("fr", 16)
    page.shot("configuration-saved")

    page.click(marked("configuration-order"))
    page.wait_for(marked("order-form"))
    # The smallest card that fits is chosen for the client.
    assert page.find("#id_card_size_gb option:checked").get_attribute("value") == "16"
    page.fill("id_quantity", "2")
    page.fill("id_recipient_name", "Ada School")
    page.fill("id_recipient_email", "ada@example.org")
    page.fill("id_shipping_address", "1 rue de l'Ecole\n75001 Paris")
    page.shot("order-form")
    page.click(marked("order-submit"))
    page.wait_for(marked("order-progress"), "the order's page")
    placed = Order.objects.get(owner=world.client)
    assert (placed.quantity, placed.card_size_gb) == (2, 16)
    assert page.path == f"/orders/{placed.pk}/"
    assert page.attribute(marked("order-progress"), "data-polling") == "true"
    page.mark_document()
    page.shot("order-placed")

    # From here on the workers move the order; the page follows by itself.
    workers = Workers(live_server.url, world)
    build = workers.start_build()
    workers.event(workers.creator, build, "progress", phase="building", percent=40)
    page.wait(
        lambda: percent_of(page, marked("task-progress-create")) == "40.0",
        "the build at 40 %",
    )
    page.shot("building")
    workers.finish_build(build, placed.pk)
    workers.transfer()
    page.wait(
        lambda: len(page.find_all(marked("task-row") + '[data-kind="write"]')) == 2,
        "a row for each of the two copies",
    )
    for number in (1, 2):
        assert percent_of(page, marked(f"copy-progress-{number}")) == "0.0"
    page.shot("copies-wait-for-cards")

    copy = workers.start_write("slot-1", 16)
    number = Task.objects.get(pk=copy["id"]).copy_number
    this, other = (
        marked(f"copy-progress-{number}"),
        marked(f"copy-progress-{3 - number}"),
    )
    for percent in (35, 80):
        workers.write_progress(copy, "slot-1", 16, percent)
        page.wait(
            lambda percent=percent: percent_of(page, this) == f"{percent}.0",
            f"copy {number} at {percent} %",
        )
        assert percent_of(page, other) == "0.0"
        page.shot(f"copy-{number}-at-{percent}")
    workers.event(workers.host, copy, "succeeded", result={"verified": True})
    page.wait(lambda: percent_of(page, this) == "100.0", f"copy {number} written")
    assert Task.objects.get(pk=copy["id"]).status == TaskStatus.SUCCEEDED
    # All of it came through htmx: the page was never reloaded.
    assert page.same_document()
    page.shot("copy-written")


def test_a_manager_sees_which_slot_to_fill_with_which_card(browser, live_server):
    world = World()
    # Content that fits 8 GB, ordered on 32 GB cards: the board says 32.
    placed = order(world.client, card_size_gb=32, quantity=2)
    workers = Workers(live_server.url, world)
    workers.build_and_transfer(placed.pk)
    assert Task.objects.filter(order=placed, kind=TaskKind.WRITE).count() == 2
    page = browser("manager")

    log_in(page, "manager", PASSWORD)
    assert page.path == "/ops/board/"  # staff land on the workshop board
    host = f'{marked("host")}[data-host="host-1"]'
    page.wait_for(host, "host-1")
    assert page.attribute(host, "data-online") == "yes"
    names = ["slot-1", "slot-2"]
    page.wait(
        lambda: (
            [e.get_attribute("data-slot") for e in page.find_all(marked("slot"))]
            == names
        ),
        "the two slots of host-1",
    )
    for name in names:
        slot = f'{host} {marked("slot")}[data-slot="{name}"]'
        assert page.attribute(slot, "data-state") == "empty"
        assert page.attribute(slot, "data-insert-gb") == "32"
        instruction = page.text(f"{slot} {marked('slot-instruction')}")
        assert instruction == "Insert an empty 32 GB card."
    assert "2 copies wait for a card: 2 \N{MULTIPLICATION SIGN} 32 GB" in page.text(
        marked("host-waiting")
    )
    page.mark_document()
    page.shot("two-slots-to-fill")

    # A card goes into slot-1: the board follows the writer by itself.
    copy = workers.start_write("slot-1", 32)
    workers.write_progress(copy, "slot-1", 32, 45)
    slot_1 = f'{marked("slot")}[data-slot="slot-1"]'
    page.wait(
        lambda: (
            page.attribute(slot_1, "data-state") == "writing"
            and "45%" in (page.text(f"{slot_1} {marked('slot-progress')}") or "")
        ),
        "slot-1 writing at 45 %",
    )
    assert page.text(f"{slot_1} {marked('slot-instruction')}").startswith("Writing")
    slot_2 = f'{marked("slot")}[data-slot="slot-2"]'
    assert page.attribute(slot_2, "data-insert-gb") == "32"
    assert page.same_document()
    page.shot("slot-1-writing")


def test_the_pages_speak_french_and_the_switcher_changes_the_language(
    browser, live_server
):
    world = World()
    # The client's account is in French; the manager's in English (the default).
    world.client.language = "fr"
    world.client.save(update_fields=["language"])
    placed = order(world.client, configuration(world.client, name="Kit scolaire"))
    source = CatalogSource.objects.create(url="https://library.example.org")
    entry = catalog_entry(source, 1, "Chimie", 10**9)
    Workers(live_server.url, world).build_and_transfer(placed.pk)
    compiled = "compile the translations: manage.py compilemessages"
    client = browser("client", "fr")

    # Before logging in, the browser's language (Chromium asks for French).
    client.open("/")
    client.wait_for(marked("login-form"))
    assert client.language == "fr"
    assert client.text("h1") == "Se connecter", compiled
    assert client.label_of("id_username").startswith("Nom d'utilisateur")
    assert client.label_of("id_password").startswith("Mot de passe")
    log_in(client, "client", PASSWORD)
    assert client.language == "fr"
    assert client.text(marked("nav-orders")) == "Commandes"
    # The picker in French: the same parts, sizes with a decimal comma.
    client.open("/configurations/new/")
    client.wait_for(marked("picker"))
    client.click(
        f'{marked("picker-result")}[data-entry="{entry.pk}"] {marked("picker-add")}'
    )
    client.wait(
        lambda: (
            client.attribute(marked("picker-total"), "data-bytes") == str(entry.size)
        ),
        "the total of the picked file",
    )
    assert client.text(marked("picker-total")).startswith("953,6 ")
    assert client.attribute(marked("picker-smallest-card"), "data-gb") == "8"
    assert "Contenu, au total" in client.text(marked("picker-summary"))
    client.shot("picker")
    client.open(f"/orders/{placed.pk}/")
    client.wait_for(marked("order-progress"))
    assert "Commande" in [h2.text for h2 in client.find_all("h2")]
    assert "Étapes" in [h2.text for h2 in client.find_all("h2")]
    client.shot("order")

    # A signed-in user's own language wins over the browser's.
    manager = browser("manager", "fr")
    log_in(manager, "manager", PASSWORD)
    assert manager.path == "/ops/board/"
    assert manager.language == "en"
    # Staff have the client's pages too, in a menu: the bar's own link here.
    ops_orders = "a.nav-link" + marked("nav-orders")
    assert manager.text(ops_orders) == "Orders"
    manager.shot("board-in-english")

    # The switcher in the navigation bar: French, kept as the account's choice.
    manager.choose("language", "fr")
    manager.wait(lambda: manager.language == "fr", "the board in French")
    assert manager.path == "/ops/board/"
    assert manager.text(ops_orders) == "Commandes"
    assert manager.text(marked("nav-board")) == "Atelier"
    assert manager.text(marked("nav-users")) == "Comptes"
    slot = f'{marked("slot")}[data-slot="slot-1"]'
    assert manager.attribute(slot, "data-insert-gb") == "8"
    instruction = manager.text(f"{slot} {marked('slot-instruction')}")
    assert instruction == "Insérez une carte vide de 8 Go."
    world.manager.refresh_from_db()
    assert world.manager.language == "fr"
    manager.shot("board-in-french")

    # And back to English.
    manager.choose("language", "en")
    manager.wait(lambda: manager.language == "en", "the board in English")
    assert manager.text(marked("nav-board")) == "Workshop"
    manager.shot("board-in-english-again")
