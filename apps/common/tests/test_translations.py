"""The translation catalogs are complete and current: every entry of every
``locale/*/LC_MESSAGES/django.po`` is translated, none is fuzzy (gettext's guesses
from similar strings: they once put "adresse e-mail" on "shipping address"), each
keeps its msgid's placeholders, and the catalogs hold exactly the strings the code
marks, so a new string without a translation fails the tests."""

import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.test import SimpleTestCase

ROOT = Path(settings.BASE_DIR)
# Folders makemessages leaves out (README, Translations): the workers, the warehouse
# and whost are command-line tools in English without Django; the rest is not shown
# to users or is not code.
IGNORED = (
    ".venv",
    "bench",
    "data",
    "demo",
    "docker",
    "ftp",
    "outbound",
    "scripts",
    "staticfiles",
    "tests",
    "whost",
    "workers",
)
KEYWORD = re.compile(r"(msgctxt|msgid_plural|msgid|msgstr)(?:\[(\d+)\])? (.*)")
ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}
# %(name)s with its conversion, a bare %s or %d, and str.format's {name}; %% is not
# a placeholder.
PLACEHOLDER = re.compile(
    r"%\(\w+\)[#0 +-]*\d*(?:\.\d+)?[diouxXeEfFgGcrsa]"
    r"|%[#0 +-]*\d*(?:\.\d+)?[diouxXeEfFgGcrsa]"
    r"|\{\w*\}"
)


@dataclass
class Entry:
    line: int
    msgid: str = ""
    msgid_plural: str | None = None
    msgctxt: str | None = None
    msgstr: dict[int, str] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)
    obsolete: bool = False

    def __str__(self):
        context = f" (context {self.msgctxt!r})" if self.msgctxt else ""
        return f"line {self.line}: {self.msgid!r}{context}"

    @property
    def key(self):
        return (self.msgctxt, self.msgid, self.msgid_plural)


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        raise ValueError(f"not a quoted PO string: {text}")
    return re.sub(r"\\(.)", lambda m: ESCAPES.get(m.group(1), m.group(1)), text[1:-1])


def read_po(path: Path) -> list[Entry]:
    """The entries of a PO file, header excluded (Python's standard library has no
    PO reader, and polib is not a dependency)."""
    entries: list[Entry] = []
    entry, target = None, None
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line:
            entry, target = None, None
            continue
        if entry is None:
            entry = Entry(line=number)
            entries.append(entry)
        if line.startswith("#~"):
            entry.obsolete = True
        elif line.startswith("#,"):
            entry.flags.update(flag.strip() for flag in line[2:].split(","))
        elif line.startswith("#"):
            continue
        elif line.startswith('"'):
            if isinstance(target, int):
                entry.msgstr[target] += _unquote(line)
            else:
                setattr(entry, target, getattr(entry, target) + _unquote(line))
        else:
            match = KEYWORD.fullmatch(line)
            if not match:
                raise ValueError(f"{path}:{number}: cannot read {line!r}")
            keyword, index, value = match.groups()
            if keyword == "msgstr":
                target = int(index or 0)
                entry.msgstr[target] = _unquote(value)
            else:
                target = keyword
                setattr(entry, keyword, _unquote(value))
    return [e for e in entries if e.msgid or e.msgctxt]


def placeholders(text: str, flags=frozenset()) -> list[str]:
    found = PLACEHOLDER.findall(text.replace("%%", ""))
    if "no-python-format" in flags:
        # A literal % (a URL's %00) is no placeholder in a string never formatted.
        return sorted(p for p in found if p.startswith("{"))
    return sorted(found)


def catalogs() -> list[Path]:
    found = sorted(ROOT.glob("locale/*/LC_MESSAGES/django.po"))
    if not found:
        raise AssertionError(f"no catalog under {ROOT / 'locale'}")
    return found


def problems(path: Path) -> list[str]:
    """What keeps a catalog from being complete, one line per entry."""
    found = []
    for entry in read_po(path):
        if entry.obsolete:
            continue
        if "fuzzy" in entry.flags:
            found.append(f"fuzzy, check it and remove the flag: {entry}")
        if not entry.msgstr or not all(entry.msgstr.values()):
            found.append(f"untranslated: {entry}")
            continue
        for index, text in sorted(entry.msgstr.items()):
            source = entry.msgid if index == 0 else entry.msgid_plural or entry.msgid
            got = placeholders(text, entry.flags)
            wanted = placeholders(source, entry.flags)
            if got != wanted:
                found.append(
                    f"placeholders {got} instead of {wanted} in msgstr[{index}]: "
                    f"{entry}"
                )
    return found


def extract(into: Path, languages: list[str]) -> Path:
    """Run makemessages on a copy of the project (it rewrites the catalogs it
    finds) and return the copy's locale folder."""
    shutil.copytree(
        ROOT,
        into,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "data", "staticfiles", "__pycache__", "*.mo", ".*_cache"
        ),
        symlinks=True,
    )
    command = [sys.executable, "manage.py", "makemessages"]
    command += [f"--locale={language}" for language in languages]
    command += [f"--ignore={folder}" for folder in IGNORED]
    done = subprocess.run(command, cwd=into, capture_output=True, text=True)
    if done.returncode != 0:
        raise AssertionError(
            f"makemessages failed (is gettext installed?): {done.stderr.strip()}"
        )
    return into / "locale"


class CatalogTests(SimpleTestCase):
    def test_every_entry_is_translated_without_fuzzy_flags_or_lost_placeholders(self):
        for path in catalogs():
            with self.subTest(catalog=str(path.relative_to(ROOT))):
                found = problems(path)
                self.assertEqual(found, [], "\n".join(found))

    def test_each_catalog_holds_exactly_the_strings_the_code_marks(self):
        paths = {path.parents[1].name: path for path in catalogs()}
        with tempfile.TemporaryDirectory() as folder:
            extracted = extract(Path(folder, "project"), sorted(paths))
            wanted = {
                language: {
                    e.key
                    for e in read_po(extracted / language / "LC_MESSAGES/django.po")
                    if not e.obsolete
                }
                for language in paths
            }
        for language, path in paths.items():
            with self.subTest(language=language):
                held = {e.key for e in read_po(path) if not e.obsolete}
                missing = sorted(wanted[language] - held, key=str)
                stale = sorted(held - wanted[language], key=str)
                self.assertEqual(
                    (missing, stale),
                    ([], []),
                    f"{path.relative_to(ROOT)} is out of date: run the makemessages "
                    "command of the README's Languages section and translate the "
                    f"new entries.\nNew strings: {missing}\n"
                    f"No longer in the code: {stale}",
                )


class CheckerTests(SimpleTestCase):
    """The checks above find what they are for, on a catalog made to fail."""

    def test_fuzzy_untranslated_and_wrong_placeholder_entries_are_named(self):
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder, "django.po")
            path.write_text(
                'msgid ""\nmsgstr ""\n"Language: fr\\n"\n\n'
                '#, fuzzy\nmsgid "shipping address"\nmsgstr "adresse e-mail"\n\n'
                'msgid "Download it here"\nmsgstr ""\n\n'
                'msgid ""\n"Hello %(name)s,"\nmsgstr "Bonjour %(nom)s,"\n\n'
                'msgid "%(n)s slot"\nmsgid_plural "%(n)s slots"\n'
                'msgstr[0] "%(n)s lecteur"\nmsgstr[1] ""\n\n'
                'msgid "{count} at 100%%"\nmsgstr "{count} à 100 %%"\n\n'
                '#~ msgid "Gone"\n#~ msgstr ""\n',
                encoding="utf-8",
            )
            found = problems(path)
        self.assertEqual(len(found), 4, found)
        self.assertIn("fuzzy", found[0])
        self.assertIn("'shipping address'", found[0])
        self.assertIn("untranslated: line 9: 'Download it here'", found[1])
        self.assertIn("['%(nom)s'] instead of ['%(name)s']", found[2])
        self.assertIn("untranslated", found[3])
        self.assertIn("'%(n)s slot'", found[3])

    def test_placeholders_are_found_in_their_three_forms(self):
        self.assertEqual(
            placeholders("%(a)s, %(b).2f, %d, {c} and 100%%"),
            ["%(a)s", "%(b).2f", "%d", "{c}"],
        )
