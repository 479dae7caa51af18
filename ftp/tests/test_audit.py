"""Structured log lines."""

import logging

from ftp import audit


def test_lines_are_logfmt_and_parse_back():
    line = audit.format_line(
        "transfer",
        user="creator-1",
        path="/orders/x/disk.img",
        bytes=1048576,
        seconds=0.5,
        completed=True,
        reason='said "no" to you',
        empty=None,
    )
    assert line.startswith("event=transfer user=creator-1 path=/orders/x/disk.img ")
    assert "seconds=0.500 completed=true" in line
    assert audit.parse_line("2026-01-01 INFO ftp.audit " + line) == {
        "event": "transfer",
        "user": "creator-1",
        "path": "/orders/x/disk.img",
        "bytes": "1048576",
        "seconds": "0.500",
        "completed": "true",
        "reason": 'said "no" to you',
        "empty": "",
    }


def test_a_value_cannot_break_the_line():
    line = audit.format_line("login", user="evil\nevent=forged")
    assert "\n" not in line
    assert audit.parse_line(line)["event"] == "login"


def test_records_go_to_the_audit_logger(caplog):
    caplog.set_level(logging.INFO, logger="ftp.audit")
    audit.record("login", result="ok", user="a")
    assert caplog.records[-1].name == "ftp.audit"
    assert caplog.records[-1].getMessage() == "event=login result=ok user=a"
