"""The layout, read from the source: no import cycles or upward imports, the packages' layers,
SQL only behind the storage seam, no module grown long without saying why, and docs that
name only modules that exist."""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OURS = ("evidence", "badge", "gateway", "demo", "bench")
MAY_IMPORT: Mapping[str, frozenset[str]] = {
    "evidence": frozenset({"evidence"}),
    "badge": frozenset({"evidence", "badge"}),
    "gateway": frozenset({"evidence", "gateway"}),
    "demo": frozenset({"evidence", "badge", "gateway", "demo"}),
    "bench": frozenset(OURS),
}
"""Which of our packages each may import: the badge and the gateway never each other."""
TRUST_CORE_DEPENDENCIES = frozenset({"cryptography", "asn1crypto"})
"""What evidence/ may import beyond the standard library (decision 0003)."""
STORAGE = "gateway/storage/"
BADGE_STORES = frozenset({"badge/outbox.py", "badge/receipts.py"})
"""The badge's own SQLite stores: its outbox and its receipts."""
LONG = 420
"""Lines past which a module's docstring must say why it is kept whole."""
_SQL = re.compile(
    r"^\s*(SELECT\s|INSERT\s|UPDATE\s+\w+\s+SET\b|DELETE\s+FROM\b|CREATE\s+(TABLE|INDEX|UNIQUE)"
    r"|ALTER\s+TABLE\b|DROP\s+(TABLE|TRIGGER|INDEX)\b|PRAGMA\s|BEGIN\b|COMMIT\b|ROLLBACK\b)"
    r"|\bFROM\s+\w+(\s+\w+)?\s+(WHERE|JOIN|ORDER|LEFT)\b",
)


DOCS_OF_THE_LAYOUT = ("README.md", "docs/architecture.md")
"""The pages that draw the layout: every module path they name, however short, must exist."""
ROOTS = (*OURS, "tests")
"""Where a path given from the checkout's root starts."""
_MODULE_PATH = re.compile(r"(?<![\w/.-])((?:\w+/)*\w+\.py)\b")


@dataclass(frozen=True)
class Module:
    """One source file as the checks see it."""

    name: str
    path: str
    tree: ast.Module
    lines: int

    @property
    def package(self) -> str:
        """The top-level package it belongs to."""
        return self.name.split(".")[0]

    @property
    def ancestors(self) -> tuple[str, ...]:
        """The packages that contain it (not itself, even for an ``__init__``)."""
        parts = self.name.split(".")
        return tuple(".".join(parts[:end]) for end in range(1, len(parts)))


def read_modules(root: Path, packages: tuple[str, ...] = OURS) -> dict[str, Module]:
    """Every module of ``packages`` under ``root``, by dotted name."""
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            relative = path.relative_to(root)
            parts = list(relative.with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            text = path.read_text()
            name = ".".join(parts)
            found[name] = Module(name, relative.as_posix(), ast.parse(text), text.count("\n"))
    return found


def _runtime_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement, except those under ``if TYPE_CHECKING:``."""
    pending: list[ast.AST] = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            pending.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        pending.extend(ast.iter_child_nodes(node))


def imported(module: Module, known: Mapping[str, Module]) -> Iterator[str]:
    """The dotted names ``module`` imports: a submodule where ``from X import Y`` names one."""
    for node in _runtime_imports(module.tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif node.module is not None and node.level == 0:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                yield submodule if submodule in known else node.module


def import_graph(modules: Mapping[str, Module]) -> dict[str, set[str]]:
    """Our modules and the modules of ours each one imports."""
    return {
        name: {target for target in imported(module, modules) if target in modules}
        for name, module in modules.items()
    }


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The import cycles: every strongly connected group of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1 or node in graph.get(node, ()):
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def sql_strings(tree: ast.Module) -> list[str]:
    """String literals (docstrings aside) that read as SQL."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
        and _SQL.search(node.value)
    ]


def source_files(root: Path) -> frozenset[str]:
    """Every ``.py`` file of ours and of the tests, as a path from ``root``."""
    return frozenset(
        path.relative_to(root).as_posix() for top in ROOTS for path in (root / top).rglob("*.py")
    )


def missing_modules(text: str, files: Collection[str], *, rooted_only: bool = False) -> list[str]:
    """The module paths ``text`` names that no file in ``files`` has.

    ``a/b.py`` must end a file's path and ``b.py`` be some file's name, unless
    ``rooted_only``: then only paths from the checkout's root (``gateway/...``) are checked,
    and they must be exact.
    """
    names = {file.rsplit("/", 1)[-1] for file in files}
    missing = []
    for named in _MODULE_PATH.findall(text):
        if named.split("/")[0] in ROOTS:
            found = named in files
        elif rooted_only:
            continue
        elif "/" in named:
            found = any(file.endswith(f"/{named}") for file in files)
        else:
            found = named in names
        if not found:
            missing.append(named)
    return missing


@pytest.fixture(scope="module")
def modules() -> dict[str, Module]:
    return read_modules(REPO)


# -- the checks can fail ----------------------------------------------------------------


def test_the_checks_find_a_cycle_an_upward_import_and_sql(tmp_path: Path) -> None:
    package = tmp_path / "gateway"
    (package / "storage").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "storage" / "__init__.py").write_text("from gateway.storage.rows import Rows\n")
    (package / "storage" / "rows.py").write_text(
        "from gateway import intake\nfrom gateway.storage import Storage\n"
        "Rows = 'SELECT badge_id FROM badges WHERE x = ?'\n"
    )
    (package / "intake.py").write_text(
        "import sqlite3\nfrom gateway.storage import rows\nQ = 'UPDATE badges SET a = 1'\n"
    )
    found = read_modules(tmp_path, ("gateway",))
    assert cycles(import_graph(found)) == [
        ["gateway.intake", "gateway.storage", "gateway.storage.rows"]
    ]
    assert upward(found) == ["gateway.storage.rows imports gateway.storage (its own package)"]
    assert sql_strings(found["gateway.intake"].tree) == ["UPDATE badges SET a = 1"]
    assert sql_strings(found["gateway.storage.rows"].tree) != []


def test_the_docs_check_finds_a_module_that_moved() -> None:
    files = {"gateway/intake/stage.py", "evidence/ledger/merkle.py"}
    text = (
        "`gateway/intake/stage.py` and `ledger/merkle.py` and merkle.py are here;"
        " `gateway/store_stage.py`, `intake/merkle.py`, tsa.py and /usr/lib/x.py are not"
    )
    assert missing_modules(text, files) == ["gateway/store_stage.py", "intake/merkle.py", "tsa.py"]
    assert missing_modules(text, files, rooted_only=True) == ["gateway/store_stage.py"]


# -- the source ---------------------------------------------------------------------------


def test_no_import_cycles(modules: dict[str, Module]) -> None:
    assert cycles(import_graph(modules)) == []


def upward(modules: Mapping[str, Module]) -> list[str]:
    """Each import of a module's own package (or a package above it)."""
    return [
        f"{name} imports {target} (its own package)"
        for name, module in modules.items()
        for target in imported(module, modules)
        if target in module.ancestors
    ]


def test_no_module_imports_its_own_package(modules: dict[str, Module]) -> None:
    assert upward(modules) == []


def test_each_package_imports_only_the_packages_below_it(modules: dict[str, Module]) -> None:
    crossing = [
        f"{name} imports {target}"
        for name, module in modules.items()
        for target in imported(module, modules)
        if target.split(".")[0] in OURS
        and target.split(".")[0] not in MAY_IMPORT[module.package]
    ]
    assert crossing == []


def test_the_trust_core_needs_only_cryptography_and_asn1crypto(
    modules: dict[str, Module],
) -> None:
    outside = {
        f"{name} imports {target}"
        for name, module in modules.items()
        if module.package == "evidence"
        for target in imported(module, modules)
        if target.split(".")[0] not in sys.stdlib_module_names
        and target.split(".")[0] not in TRUST_CORE_DEPENDENCIES | {"evidence", "__future__"}
    }
    assert outside == set()


def test_sql_and_sqlite_only_behind_the_storage_seam(modules: dict[str, Module]) -> None:
    leaks = []
    for module in modules.values():
        if module.package not in ("evidence", "gateway", "badge"):
            continue
        allowed = module.path.startswith(STORAGE) or module.path in BADGE_STORES
        if allowed:
            continue
        if any(target == "sqlite3" for target in imported(module, modules)):
            leaks.append(f"{module.path} imports sqlite3")
        leaks += [f"{module.path}: {text.strip()[:60]!r}" for text in sql_strings(module.tree)]
    assert leaks == []


def test_the_storage_writes_sql_postgresql_also_runs(modules: dict[str, Module]) -> None:
    sqlite_only = re.compile(r"INSERT OR |\browid\b|json_each|CAST\(\w+ AS BLOB\)|PRAGMA")
    found = [
        f"{module.path}: {text.strip()[:60]!r}"
        for module in modules.values()
        if module.path.startswith(STORAGE)
        and module.path not in (f"{STORAGE}schema.py", f"{STORAGE}database.py")
        for text in sql_strings(module.tree)
        if sqlite_only.search(text)
    ]
    assert found == []


def test_no_hidden_imports(modules: dict[str, Module]) -> None:
    hidden = [
        module.path
        for module in modules.values()
        if module.package in ("evidence", "badge", "gateway")
        and any(
            isinstance(node, ast.Attribute) and node.attr in ("import_module", "__import__")
            for node in ast.walk(module.tree)
        )
    ]
    assert hidden == []


def test_no_module_is_long_without_saying_why(modules: dict[str, Module]) -> None:
    unexplained = [
        f"{module.path} ({module.lines} lines)"
        for module in modules.values()
        if module.package != "bench"
        and module.lines > LONG
        and "is long because" not in " ".join((ast.get_docstring(module.tree) or "").split())
    ]
    assert unexplained == []


def test_every_package_says_what_it_offers(modules: dict[str, Module]) -> None:
    silent = [
        module.path
        for module in modules.values()
        if module.path.endswith("__init__.py")
        and module.package in ("evidence", "badge", "gateway")
        and not any(
            isinstance(node, ast.Assign | ast.AnnAssign)
            and "__all__" in ast.unparse(node.targets[0] if isinstance(node, ast.Assign) else node)
            for node in module.tree.body
        )
    ]
    assert silent == []


def test_the_layout_docs_name_only_modules_that_exist() -> None:
    files = source_files(REPO)
    missing = [
        f"{page}: {named}"
        for page in DOCS_OF_THE_LAYOUT
        for named in missing_modules((REPO / page).read_text(), files)
    ]
    assert missing == []


def test_the_docs_give_true_paths_for_modules() -> None:
    files = source_files(REPO)
    missing = [
        f"{page.name}: {named}"
        for page in sorted((REPO / "docs").glob("*.md"))
        for named in missing_modules(page.read_text(), files, rooted_only=True)
    ]
    assert missing == []
