"""The simulator is an independent witness: it imports nothing of the service packages (nor of the tests and
benchmarks that use it), and the service packages import nothing of it, at run time or otherwise."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICE_PACKAGES = ("worker", "gateways", "db", "ops")
#: What the simulator may not import: the service packages, and the code that tests or measures them.
FORBIDDEN_IN_SIMULATOR = (*SERVICE_PACKAGES, "tests", "bench")


def python_files(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if ".venv" not in p.parts)


def imported_modules(path: Path) -> set[str]:
    """Every absolute module name ``path`` imports (``import a.b``, ``from a.b import c``; relative ones resolved
    against its package), wherever the import statement is (module level, functions, ``if TYPE_CHECKING``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                found.add(".".join([*base, node.module] if node.module else base))
            elif node.module:
                found.add(node.module)
        elif (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "__import__" and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.add(node.args[0].value)
    return found


def top_level(module: str) -> str:
    return module.split(".", 1)[0]


def test_the_simulator_package_exists_and_is_parsed() -> None:
    """The check below is not vacuous: the simulator has its gateways and shared modules."""
    names = {p.relative_to(ROOT).as_posix() for p in python_files("simulator")}
    assert {"simulator/server.py", "simulator/clock.py", "simulator/faults.py", "simulator/webhooks.py",
            "simulator/razorpay/state.py", "simulator/payglocal/state.py"} <= names


@pytest.mark.parametrize("path", python_files("simulator"), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_the_simulator_imports_nothing_of_ours(path: Path) -> None:
    """No module of simulator/ imports worker, gateways, db, ops, tests or bench."""
    wrong = sorted(m for m in imported_modules(path) if top_level(m) in FORBIDDEN_IN_SIMULATOR)
    assert wrong == [], f"{path.relative_to(ROOT)} imports {wrong}"


@pytest.mark.parametrize("path", [p for package in SERVICE_PACKAGES for p in python_files(package)],
                         ids=lambda p: p.relative_to(ROOT).as_posix())
def test_the_service_packages_import_nothing_of_the_simulator(path: Path) -> None:
    """No module of worker/, gateways/, db/ or ops/ imports simulator (``recon simulator`` execs it instead)."""
    wrong = sorted(m for m in imported_modules(path) if top_level(m) == "simulator")
    assert wrong == [], f"{path.relative_to(ROOT)} imports {wrong}"
