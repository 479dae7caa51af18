"""The layout's rules (DESIGN 2), read from the source with ``ast``:

- the Django side (``apps/``, ``imager_site/``) and the processes that are plain
  API clients (``workers/``, ``ftp/``, ``whost/``, ``demo/``) never import each
  other: they share nothing but the HTTP API, and the neutral packages
  (``outbound/``, the guarded client of every outbound fetch), which both may
  import and which import neither side, nor Django;
- no module imports inside a function to dodge an import cycle, and there is no
  cycle among the modules' top-level imports;
- no file is over 600 lines, migrations and benchmarks aside.

Tests may cross the line (an end-to-end test drives both sides), so test modules
are left out of the first two rules.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SERVER = ("apps", "imager_site")
CLIENTS = ("workers", "ftp", "whost", "demo")
NEUTRAL = ("outbound",)
FIRST_PARTY = (*SERVER, *CLIENTS, *NEUTRAL, "scripts", "bench", "tests")
MAX_LINES = 600

#: Imports that must run inside a function, each with why.
LATE_IMPORTS_ALLOWED = {
    # Django loads models before the app is ready; checks register at ready().
    ("apps/common/apps.py", "apps.common.checks"),
}


def sources(*tops: str) -> list[Path]:
    return sorted(
        path
        for top in tops
        if (ROOT / top).is_dir()
        for path in (ROOT / top).rglob("*.py")
        if ".venv" not in path.parts
    )


def is_test(path: Path) -> bool:
    rel = path.relative_to(ROOT)
    return (
        "tests" in rel.parts
        or rel.name.startswith("test_")
        or rel.name in {"conftest.py", "testing.py"}
    )


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def imports(tree: ast.Module, module: str, *, top_level: bool):
    """(line, imported module) of the top-level imports, or of those inside
    functions. ``if TYPE_CHECKING:`` blocks do not run and are skipped."""

    def resolve(node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        base = module.split(".")[: -node.level]
        return ".".join([*base, *(node.module.split(".") if node.module else [])])

    def walk(body, inside_function: bool):
        for node in body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.Import | ast.ImportFrom):
                if inside_function != top_level:
                    if isinstance(node, ast.Import):
                        for alias in node.names:
                            yield node.lineno, alias.name
                    else:
                        # Each name may be a module of the package: say both.
                        base = resolve(node)
                        for alias in node.names:
                            yield node.lineno, f"{base}.{alias.name}"
                continue
            function = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            for field in ("body", "orelse", "finalbody", "handlers"):
                inner = getattr(node, field, None)
                if isinstance(inner, list):
                    yield from walk(inner, inside_function or function)

    yield from walk(tree.body, False)


def parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def top_of(name: str) -> str:
    return name.split(".")[0]


def test_the_server_and_the_api_clients_never_import_each_other():
    crossings = []
    for side, others in ((SERVER, CLIENTS), (CLIENTS, SERVER)):
        for path in sources(*side):
            if is_test(path):
                continue
            module = module_name(path)
            for line, name in imports(parsed(path), module, top_level=True):
                forbidden = top_of(name) in others or (
                    side == CLIENTS and top_of(name) in {"django", "rest_framework"}
                )
                if forbidden:
                    crossings.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert crossings == []


def test_the_neutral_packages_import_neither_side():
    crossings = []
    for path in sources(*NEUTRAL):
        if is_test(path):
            continue
        for line, name in imports(parsed(path), module_name(path), top_level=True):
            if top_of(name) in {*SERVER, *CLIENTS, "django", "rest_framework"}:
                crossings.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert crossings == []


def test_no_module_imports_inside_a_function_unless_it_must():
    late = []
    for path in sources(*SERVER, *CLIENTS, *NEUTRAL):
        if is_test(path):
            continue
        rel = str(path.relative_to(ROOT))
        for line, name in imports(parsed(path), module_name(path), top_level=False):
            if top_of(name) in FIRST_PARTY and (rel, name) not in LATE_IMPORTS_ALLOWED:
                late.append(f"{rel}:{line} imports {name} inside a function")
    assert late == []


def test_the_modules_top_level_imports_have_no_cycle():
    modules = {
        module_name(path): path
        for path in sources(*SERVER, *CLIENTS, *NEUTRAL, "scripts")
    }
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets = set()
        for _line, name in imports(parsed(path), module, top_level=True):
            # ``from package import module`` names a module, or a name in the
            # package's __init__: take the longest that is one of ours.
            parts = name.split(".")
            for end in range(len(parts), 0, -1):
                if ".".join(parts[:end]) in modules:
                    targets.add(".".join(parts[:end]))
                    break
        graph[module] = targets - {module}

    cycles = []
    state: dict[str, int] = {}  # 1 on the path, 2 done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycles.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


@pytest.mark.parametrize("top", [*SERVER, *CLIENTS, *NEUTRAL, "scripts", "tests"])
def test_no_file_is_over_600_lines(top):
    long = [
        f"{path.relative_to(ROOT)}: {lines} lines"
        for path in sources(top)
        if "migrations" not in path.parts
        and "mongo_migrations" not in path.parts
        and (lines := len(path.read_text().splitlines())) > MAX_LINES
    ]
    assert long == []
