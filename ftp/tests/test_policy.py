"""Who may do what where, role by role."""

import pytest

from ftp import paths
from ftp.policy import decide

ORDER = "0b7e4c1e-2f7a-4d61-9a55-8a4c3f0e9d12"
OTHER = "5d1c9a60-0000-4000-8000-000000000001"
IMG = paths.classify(f"/orders/{ORDER}/disk.img")
PART = paths.classify(f"/orders/{ORDER}/disk.img.part")
TXT = paths.classify(f"/orders/{ORDER}/notes.txt")
OTHER_IMG = paths.classify(f"/orders/{OTHER}/disk.img")
FOLDER = paths.classify(f"/orders/{ORDER}")
ROOT = paths.classify("/")
ORDERS = paths.classify("/orders")
QUARANTINE = paths.classify("/quarantine/x/disk.img.20260101T000000Z")
INTERNAL = paths.classify("/.warehouse/spool")
LOOSE = paths.classify("/loose.img")


def holds(order):
    return order == ORDER


@pytest.mark.parametrize(
    ("perm", "where", "allowed"),
    [
        ("w", IMG, True),
        ("a", IMG, True),
        ("m", FOLDER, True),
        ("d", PART, True),
        ("e", ORDERS, True),
        ("l", FOLDER, True),
        ("w", OTHER_IMG, False),
        ("a", OTHER_IMG, False),
        ("m", paths.classify(f"/orders/{OTHER}"), False),
        ("w", PART, False),
        ("w", TXT, False),
        ("w", LOOSE, False),
        ("d", IMG, False),
        ("f", IMG, False),
        ("r", IMG, False),
        ("M", IMG, False),
        ("T", IMG, False),
        ("l", QUARANTINE, False),
        ("e", INTERNAL, False),
    ],
)
def test_a_creator_creates_appends_and_resumes_only_in_orders_it_builds(
    perm, where, allowed
):
    assert decide("creator", perm, where, holds=holds).ok is allowed


def test_a_creator_without_the_task_is_told_to_claim_it():
    decision = decide("creator", "w", OTHER_IMG, holds=holds)
    assert "claim it" in decision.reason


def test_the_api_is_asked_last_and_only_for_creators_writing():
    asked = []

    def ask(order):
        asked.append(order)
        return True

    decide("creator", "l", IMG, holds=ask)
    decide("creator", "w", TXT, holds=ask)
    decide("downloader", "w", IMG, holds=ask)
    assert asked == []
    decide("creator", "w", IMG, holds=ask)
    assert asked == [ORDER]


@pytest.mark.parametrize("role", ["downloader", "writer"])
@pytest.mark.parametrize(
    ("perm", "where", "pending", "allowed"),
    [
        ("r", IMG, False, True),
        ("l", FOLDER, False, True),
        ("e", ROOT, False, True),
        ("r", IMG, True, False),
        ("r", PART, False, False),
        ("r", TXT, False, False),
        ("r", QUARANTINE, False, False),
        ("l", QUARANTINE, False, False),
        ("r", LOOSE, False, False),
        ("w", IMG, False, False),
        ("a", IMG, False, False),
        ("d", IMG, False, False),
        ("f", IMG, False, False),
        ("m", FOLDER, False, False),
    ],
)
def test_downloaders_read_verified_images_only(role, perm, where, pending, allowed):
    assert decide(role, perm, where, pending=pending).ok is allowed


@pytest.mark.parametrize("role", ["admin", "manager", "warehouse"])
@pytest.mark.parametrize(
    ("perm", "where", "allowed"),
    [
        ("r", IMG, True),
        ("r", QUARANTINE, True),
        ("d", IMG, True),
        ("f", IMG, True),
        ("d", QUARANTINE, True),
        ("m", FOLDER, True),
        ("w", IMG, True),
        ("w", LOOSE, False),
        ("d", ORDERS, False),
        ("d", ROOT, False),
        ("f", paths.classify("/quarantine"), False),
        ("l", INTERNAL, False),
        ("r", paths.classify("/.warehouse/spool/x.json"), False),
        ("M", IMG, False),
    ],
)
def test_administrators_administer_but_never_reach_the_server_s_own_state(
    role, perm, where, allowed
):
    assert decide(role, perm, where, pending=True).ok is allowed


@pytest.mark.parametrize("role", ["client", "nobody"])
def test_other_roles_may_do_nothing(role):
    assert not decide(role, "l", ROOT).ok
