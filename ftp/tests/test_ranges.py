"""Byte ranges and validators as RFC 9110 reads them, header by header."""

import pytest

from ftp.ranges import (
    MAX_RANGES,
    Span,
    Unsatisfiable,
    etag,
    http_date,
    if_range_holds,
    not_modified,
    parse,
)

SIZE = 1000


@pytest.mark.parametrize(
    ("header", "spans"),
    [
        ("bytes=0-99", [(0, 99)]),
        ("bytes=100-", [(100, 999)]),
        ("bytes=-100", [(900, 999)]),
        ("bytes=-5000", [(0, 999)]),  # more than the file: all of it
        ("bytes=990-5000", [(990, 999)]),  # the end is clipped
        ("bytes=0-0", [(0, 0)]),
        ("bytes=999-", [(999, 999)]),
        ("Bytes = 0 - 9 , 20-29", [(0, 9), (20, 29)]),
        ("bytes=0-9,5-19,20-29", [(0, 29)]),  # overlapping and adjacent: merged
        ("bytes=500-599,0-9", [(0, 9), (500, 599)]),
        ("bytes=0-9,2000-3000", [(0, 9)]),  # the one outside is left out
    ],
)
def test_ranges_a_file_can_answer(header, spans):
    assert parse(header, SIZE) == [Span(a, b) for a, b in spans]


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "items=0-9",  # another unit
        "bytes=",
        "bytes=abc",
        "bytes=9-0",  # last before first: invalid, ignored
        "bytes=-",
        "bytes=0-9;20-29",
        ",".join(["bytes=0-0"] + [f"{i}-{i}" for i in range(2, 2 * MAX_RANGES + 2, 2)]),
    ],
)
def test_headers_that_are_ignored_give_the_whole_file(header):
    assert parse(header, SIZE) is None


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=5000-6000", "bytes=-0"])
def test_ranges_outside_the_file_are_unsatisfiable(header):
    with pytest.raises(Unsatisfiable):
        parse(header, SIZE)


def test_an_empty_file_satisfies_no_range():
    with pytest.raises(Unsatisfiable):
        parse("bytes=0-", 0)


def test_a_span_says_its_length_and_content_range():
    span = Span(100, 199)
    assert (span.length, span.content_range(SIZE)) == (100, "bytes 100-199/1000")


MTIME = 1_700_000_000.25
TAG = etag(12, SIZE, 1_700_000_000_250_000_000)


def test_the_entity_tag_is_strong_and_changes_with_the_file():
    assert TAG.startswith('"') and TAG.endswith('"')
    assert etag(13, SIZE, 1_700_000_000_250_000_000) != TAG


@pytest.mark.parametrize(
    ("header", "holds"),
    [
        (None, True),
        (TAG, True),
        ('"other"', False),
        (f"W/{TAG}", False),  # weak tags never match
        (http_date(MTIME), True),
        (http_date(MTIME - 60), False),
        ("yesterday", False),
    ],
)
def test_if_range_lets_ranges_apply_only_to_the_same_file(header, holds):
    assert if_range_holds(header, TAG, MTIME) is holds


@pytest.mark.parametrize(
    ("none_match", "modified_since", "answer"),
    [
        (None, None, False),
        (TAG, None, True),
        (f'"a", W/{TAG}', None, True),
        ("*", None, True),
        ('"a"', http_date(MTIME + 60), False),  # If-None-Match wins
        (None, http_date(MTIME), True),
        (None, http_date(MTIME + 60), True),
        (None, http_date(MTIME - 60), False),
        (None, "not a date", False),
    ],
)
def test_304_when_the_client_has_this_file(none_match, modified_since, answer):
    assert not_modified(none_match, modified_since, TAG, MTIME) is answer
