"""The upload rules, without an FTP server: where an upload starts, what was
declared, the disk reserve, and what a complete or a short upload leaves."""

import hashlib
import os
from types import SimpleNamespace

import pytest

from ftp import paths, uploads
from ftp.accounts import Denied, Unavailable
from ftp.hashing import HashStates
from ftp.storage import Storage
from workers.common.names import Role

ORDER = "0b9e8a52-7c1d-4b8e-9f3a-2d6c5e4f1a07"
DECLARED = {"file_name": "image.img", "size": 3000, "bmap_name": "image.bmap",
            "bmap_size": 40}  # fmt: skip


def where(name="image.img"):
    return paths.classify(f"/orders/{ORDER}/{name}")


@pytest.fixture
def storage(tmp_path):
    storage = Storage(str(tmp_path / "root"))
    storage.prepare()
    return storage


def final(storage, name="image.img"):
    return os.path.join(storage.root, "orders", ORDER, name)


def begin(storage, hashes, command=uploads.STOR, rest=0, declared=3000):
    return uploads.begin(
        storage,
        hashes,
        command=command,
        rest=rest,
        where=where(),
        final=final(storage),
        declared=declared,
    )


def test_the_bytes_land_in_a_part_file_until_the_upload_is_complete():
    assert uploads.part_of("/x/image.img") == "/x/image.img.part"


@pytest.mark.parametrize(
    ("command", "rest", "offset"),
    [(uploads.STOR, 0, 0), (uploads.APPE, 0, 700), (uploads.STOR, 300, 300)],
)
def test_stor_starts_over_appe_goes_on_and_rest_starts_where_it_says(
    command, rest, offset
):
    assert uploads.start_offset(command, rest, 700) == offset


def test_a_rest_beyond_what_was_received_is_refused():
    with pytest.raises(uploads.Refused, match=r"^554 REST position 701 .* 700 bytes"):
        uploads.start_offset(uploads.STOR, 701, 700)


def test_a_creator_resuming_is_told_the_size_of_its_part_file(tmp_path):
    path = str(tmp_path / "image.img")
    assert uploads.resume_size(Role.CREATOR, path) is None
    with open(uploads.part_of(path), "wb") as part:
        part.write(b"x" * 123)
    assert uploads.resume_size(Role.CREATOR, path) == 123
    assert uploads.received(path) == 123
    assert uploads.resume_size(Role.WAREHOUSE, path) is None


def test_the_declared_size_is_the_one_of_that_name():
    assert uploads.declared_size(None, where()) is None
    assert uploads.declared_size(DECLARED, where()) == 3000
    assert uploads.declared_size(DECLARED, where("image.bmap")) == 40
    with pytest.raises(uploads.Refused, match=r"^553 .* image.bmap and image.img"):
        uploads.declared_size(DECLARED, where("other.img"))


class Accounts:
    def __init__(self, answer):
        self.answer = answer
        self.asked = []

    def declared(self, user_id, token, order):
        self.asked.append((user_id, token, order))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def session(role=Role.CREATOR):
    return SimpleNamespace(role=role, user_id="u1", token="t1")


def test_the_creator_s_declaration_is_asked_with_its_own_token():
    accounts = Accounts(DECLARED)
    assert uploads.ask_declared(accounts, session(), where()) == 3000
    assert accounts.asked == [("u1", "t1", ORDER)]


def test_an_administrator_s_upload_declares_nothing():
    accounts = Accounts(DECLARED)
    assert uploads.ask_declared(accounts, session(Role.WAREHOUSE), where()) is None
    assert accounts.asked == []


@pytest.mark.parametrize(
    ("error", "reply"),
    [(Unavailable("the API is away"), "451 the API is away; try again in a minute."),
     (Denied("the account is disabled"), "530 the account is disabled.")],
)  # fmt: skip
def test_an_api_that_cannot_say_or_refuses_refuses_the_upload(error, reply):
    with pytest.raises(uploads.Refused) as refused:
        uploads.ask_declared(Accounts(error), session(), where())
    assert refused.value.reply == reply


def test_an_upload_opens_its_part_file_where_it_starts_with_its_hash(storage):
    hashes = HashStates()
    first = begin(storage, hashes)
    first.file.write(b"a" * 1000)
    first.file.close()
    uploads.keep(first, hashes)

    second = begin(storage, hashes, command=uploads.APPE)
    second.file.write(b"b" * 2000)
    second.file.close()

    assert (second.offset, second.declared) == (1000, 3000)
    assert second.part == final(storage) + ".part"
    expected = hashlib.sha256(b"a" * 1000 + b"b" * 2000).hexdigest()
    assert second.file.hexdigest() == expected
    assert not os.path.exists(final(storage))


class FixedStorage(Storage):
    """A disk whose free space does not change under the test's feet."""

    def usage(self):
        return 10**9, 10**6


def test_an_upload_that_would_eat_into_the_reserve_is_refused(tmp_path):
    storage = FixedStorage(str(tmp_path / "root"), reserve=10**6 - 1000)
    storage.prepare()
    with pytest.raises(uploads.Refused, match=r"^452 Not enough disk space"):
        begin(storage, HashStates())  # 3000 bytes to come, room for 1000
    # What is still needed counts, not the whole file: 2500 were received.
    os.makedirs(os.path.dirname(final(storage)))
    with open(final(storage) + ".part", "wb") as part:
        part.write(b"x" * 2500)
    begin(storage, HashStates(), command=uploads.APPE).file.close()


def test_an_upload_is_short_while_fewer_bytes_than_declared_arrived():
    assert uploads.is_short(3000, 2999)
    assert not uploads.is_short(3000, 3000)
    assert not uploads.is_short(None, 1)  # nothing declared: complete as it is


class Reporter:
    def __init__(self):
        self.reports = []
        self.spool = SimpleNamespace(remove=self.reports.remove)

    def add(self, report):
        self.reports.append(report)


def test_a_complete_upload_is_reported_before_it_takes_its_name(storage):
    hashes = HashStates()
    upload = begin(storage, hashes)
    upload.file.write(b"z" * 3000)
    upload.file.close()
    reporter = Reporter()
    seen = []
    real_add = reporter.add

    def add(report):
        seen.append(os.path.exists(final(storage)))
        real_add(report)

    reporter.add = add

    report = uploads.complete(upload, storage=storage, reporter=reporter, hashes=hashes)

    assert seen == [False]  # reported while the file was still a .part
    assert reporter.reports == [report]
    assert (report.path, report.size) == (f"orders/{ORDER}/image.img", 3000)
    assert report.sha256 == hashlib.sha256(b"z" * 3000).hexdigest()
    assert os.path.exists(final(storage))
    assert not os.path.exists(upload.part)


def test_a_rename_that_fails_takes_its_report_back(storage):
    upload = begin(storage, HashStates())
    upload.file.write(b"z" * 10)
    upload.file.close()
    os.makedirs(final(storage))  # a folder in the way: the rename fails
    reporter = Reporter()
    with pytest.raises(OSError):
        uploads.complete(
            upload, storage=storage, reporter=reporter, hashes=HashStates()
        )
    assert reporter.reports == []


def test_one_session_at_a_time_writes_a_file():
    busy = uploads.Uploads()
    assert busy.acquire("a.part")
    assert not busy.acquire("a.part")
    assert busy.busy("a.part")
    busy.release("a.part")
    assert not busy.busy("a.part")
    assert busy.acquire("a.part")
