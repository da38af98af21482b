"""The import graph keeps ARCHITECTURE.md's "Layers": no cycles, no climbing, a sandbox apart.

Every module of the project is parsed with ``ast`` (nothing is imported or run), its imports
are resolved to the project's own modules (relative ones included), and three rules are
checked: no import cycle between modules; a package imports only its own layer or lower
ones, and not its siblings of the same layer; the sandbox imports nothing of the hub.

``python -m tests.test_architecture`` prints what it finds and exits 1 if anything is.
"""

import ast
import functools
import os
import sys
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# ARCHITECTURE.md "Layers", lowest first: the foundation < the shared domains both portals
# use < the engine < the audiences. A package imports only its own layer or lower ones;
# the packages of one layer do not import each other.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"hub"}),
    frozenset({"directory", "sftp_repository", "repository"}),
    frozenset({"exchange"}),
    # The operator console is the package operator_console: "operator" would shadow the
    # standard library module Django imports.
    frozenset({"members", "plan_admin", "operator_console", "api"}),
)
# The project's wiring (settings, root URLs, Celery app, WSGI/ASGI, the demo launcher) puts
# every layer together, so it may import any of them.
WIRING = frozenset({"hub.urls", "hub.settings", "hub.celery", "hub.wsgi", "hub.asgi", "hub.demo"})
# A standalone payer: in no layer, and it imports nothing of the hub.
SANDBOX = "sandbox"
# Top-level modules in no layer: the sandbox, and manage.py, which only starts Django.
OUTSIDE_LAYERS = frozenset({SANDBOX, "manage"})
# Folders that hold no module of the running project (or none worth checking).
SKIPPED_FOLDERS = frozenset(
    {"tests", "bench", "migrations", ".venv", "node_modules", "var", "__pycache__"}
)


@dataclass(frozen=True)
class Module:
    name: str
    path: Path

    @property
    def package(self) -> str:
        """Return the package a relative import of this module starts from."""
        return self.name if self.path.name == "__init__.py" else self.name.rpartition(".")[0]

    @property
    def top(self) -> str:
        return self.name.partition(".")[0]


@dataclass
class Findings:
    cycles: list[list[str]] = field(default_factory=list)  # each a loop: a -> b -> ... -> a
    climbs: list[tuple[str, str]] = field(default_factory=list)
    sandbox_imports: list[tuple[str, str]] = field(default_factory=list)
    unplaced_packages: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.cycles or self.climbs or self.sandbox_imports or self.unplaced_packages)

    def report(self) -> list[str]:
        """Return one line per finding, then a summary line."""
        lines = [f"cycle: {' -> '.join(loop)}" for loop in self.cycles]
        lines += [f"climb: {importer} -> {imported}" for importer, imported in self.climbs]
        lines += [f"sandbox imports the hub: {m} -> {d}" for m, d in self.sandbox_imports]
        lines += [f"in no layer: {package}" for package in self.unplaced_packages]
        lines.append(
            f"cycles: {len(self.cycles)}, climbs: {len(self.climbs)}, "
            f"sandbox imports: {len(self.sandbox_imports)}, "
            f"packages in no layer: {len(self.unplaced_packages)}"
        )
        return lines


def project_modules(root: Path) -> dict[str, Module]:
    """Return the project's modules by dotted name: top-level packages and modules under ``root``."""
    modules: dict[str, Module] = {}
    for entry in sorted(root.iterdir()):
        if entry.name in SKIPPED_FOLDERS:
            continue
        if entry.suffix == ".py" and entry.is_file():
            modules[entry.stem] = Module(entry.stem, entry)
        elif (entry / "__init__.py").is_file():
            for folder, subfolders, files in os.walk(entry):
                subfolders[:] = sorted(name for name in subfolders if name not in SKIPPED_FOLDERS)
                for file_name in sorted(files):
                    if file_name.endswith(".py"):
                        path = Path(folder, file_name)
                        parts = path.relative_to(root).with_suffix("").parts
                        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
                        modules[name] = Module(name, path)
    return modules


def _imported_names(module: Module) -> Iterator[str]:
    """Yield the dotted names ``module`` imports, relative imports made absolute."""
    tree = ast.parse(module.path.read_text(encoding="utf-8"), filename=str(module.path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.package.split(".")
                start = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{start}.{base}" if base else start
            # "from package import name" imports the submodule when there is one.
            yield from (
                base if alias.name == "*" else f"{base}.{alias.name}" for alias in node.names
            )


def _resolve(name: str, modules: dict[str, Module]) -> str | None:
    """Return the project module ``name`` is, or lies in; None for anything else."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph(modules: dict[str, Module]) -> dict[str, set[str]]:
    """Return, for every module, the other project modules it imports."""
    graph: dict[str, set[str]] = {}
    for name, module in modules.items():
        targets = {_resolve(imported, modules) for imported in _imported_names(module)}
        graph[name] = {target for target in targets if target is not None and target != name}
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Return the components of two or more modules that import each other (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            successor = next(successors, None)
            if successor is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(component)
            elif successor not in index:
                index[successor] = low[successor] = len(index)
                stack.append(successor)
                on_stack.add(successor)
                work.append((successor, iter(sorted(graph[successor]))))
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
    return components


def _loop_through(component: set[str], graph: dict[str, set[str]]) -> list[str]:
    """Return a shortest loop from the component's first module back to it: a -> ... -> a."""
    start = min(component)
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for successor in sorted(graph[node] & component):
            if successor == start:
                loop = [node]
                while loop[-1] != start:
                    loop.append(came_from[loop[-1]])
                return [start, *reversed(loop[:-1]), start]
            if successor not in came_from:
                came_from[successor] = node
                queue.append(successor)
    return sorted(component)  # unreachable for a component of two or more


def architecture_findings(root: Path) -> Findings:
    """Return every cycle, climbing import, sandbox import and unplaced package under ``root``."""
    modules = project_modules(root)
    graph = import_graph(modules)
    rank = {package: level for level, packages in enumerate(LAYERS) for package in packages}
    findings = Findings()
    for component in strongly_connected(graph):
        findings.cycles.append(_loop_through(component, graph))
    for importer, imported_modules in sorted(graph.items()):
        top = modules[importer].top
        for imported in sorted(imported_modules):
            imported_top = modules[imported].top
            if top == SANDBOX:
                if imported_top != SANDBOX:
                    findings.sandbox_imports.append((importer, imported))
            elif top in rank and importer not in WIRING and imported_top != top:
                level = rank.get(imported_top)
                if level is None or level >= rank[top]:
                    findings.climbs.append((importer, imported))
    tops = {module.top for module in modules.values()}
    findings.unplaced_packages = sorted(tops - set(rank) - OUTSIDE_LAYERS)
    findings.cycles.sort()
    return findings


@functools.cache
def _this_project() -> Findings:
    return architecture_findings(PROJECT_ROOT)


def test_no_module_imports_itself_through_others() -> None:
    cycles = _this_project().cycles
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(loop) for loop in cycles)


def test_packages_import_only_their_own_layer_or_lower_ones() -> None:
    climbs = _this_project().climbs
    assert not climbs, "imports against the layers:\n" + "\n".join(f"{m} -> {d}" for m, d in climbs)


def test_the_sandbox_imports_nothing_of_the_hub() -> None:
    assert _this_project().sandbox_imports == []


def test_every_package_has_a_layer() -> None:
    assert _this_project().unplaced_packages == []


def test_the_check_finds_cycles_climbs_and_sandbox_imports(tmp_path: Path) -> None:
    files = {
        "manage.py": "import hub.settings\n",
        "hub/__init__.py": "",
        "hub/settings.py": "",
        "hub/urls.py": "from members import views\n",  # wiring: may import any layer
        "hub/audit.py": "from exchange.models import Thing\n",
        "exchange/__init__.py": "",
        "exchange/models.py": "from hub import audit\n",
        "members/__init__.py": "",
        "members/views.py": "from . import forms\nfrom .forms import Form\n",
        "members/forms.py": "from members.views import View\nfrom exchange.models import Thing\n",
        "plan_admin/__init__.py": "",
        "plan_admin/views.py": "from members.forms import Form\n",
        "sandbox/__init__.py": "",
        "sandbox/server.py": "from .config import x\nimport hub.settings\n",
        "sandbox/config.py": "",
        "stray/__init__.py": "",
        "tests/__init__.py": "",
        "tests/test_x.py": "import plan_admin.views\n",  # tests are not checked
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)

    findings = architecture_findings(tmp_path)

    assert findings.cycles == [
        ["exchange.models", "hub.audit", "exchange.models"],
        ["members.forms", "members.views", "members.forms"],
    ]
    assert findings.climbs == [
        ("hub.audit", "exchange.models"),
        ("plan_admin.views", "members.forms"),
    ]
    assert findings.sandbox_imports == [("sandbox.server", "hub.settings")]
    assert findings.unplaced_packages == ["stray"]


def main() -> int:
    """Print the findings for this project; return 1 when there are any."""
    findings = _this_project()
    print("\n".join(findings.report()))
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
