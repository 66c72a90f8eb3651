"""House rules that hold everywhere (../shared/DESIGN.md), checked on the source tree."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ADDON_DIRS = ["addon", "operators", "panels"]
MACHINE = ROOT / "cloud" / "machine"
# What may stand at the top of the repository: the extension's shape, dev/ and bench/, and one
# folder for the Blender-side state and glue (addon/).
TOP_LEVEL = {
    "__init__.py",
    "blender_manifest.toml",
    "addon",
    "operators",
    "panels",
    "cloud",
    "vendor",
    "tests",
    "dev",
    "bench",
    "docs",
    "README.md",
    "Makefile",
    "pyproject.toml",
    ".ci",
    ".gitignore",
}
STDLIB = set(sys.stdlib_module_names)


def python_files(*parts: str) -> list[Path]:
    files: list[Path] = []
    for part in parts:
        path = ROOT / part
        files += [path] if path.is_file() else sorted(path.rglob("*.py"))
    return files


def imported_modules(path: Path) -> list[tuple[str, int]]:
    """Every module an import statement (or importlib call with a literal) names, with its level."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.module or "", node.level))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) in {"import_module", "__import__"}
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            found.append((str(node.args[0].value), 0))
    return found


# Modules of the add-on package (the repository root is the package, `cloud_render`), by dotted
# name relative to it ("" for the root `__init__.py`).
PACKAGE_DIRS = ["addon", "operators", "panels", "cloud"]
# Import circles left in code other engineers own while issue 21 is worked on, each as the sorted
# modules of the circle; remove an entry once its circle is cut. None today.
KNOWN_CIRCLES: list[list[str]] = []


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports: relative and absolute imports, at the top or
    inside functions (a deferred import still closes a circle), not those under TYPE_CHECKING.
    `from . import name` counts as an import of the module `name` where there is one, else of
    the package; importing a module is not counted as importing the packages above it."""
    files = [ROOT / "__init__.py", *python_files(*PACKAGE_DIRS)]
    modules = {module_name(path): path for path in files}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        base = name.split(".") if path.name == "__init__.py" and name else name.split(".")[:-1]
        tree = ast.parse(path.read_text(), filename=str(path))
        typing_only = {
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for statement in node.body
            for inner in ast.walk(statement)
        }
        targets: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.ImportFrom):
                parts = base[: len(base) - node.level + 1] if node.level else []
                package = ".".join([*parts, *(node.module.split(".") if node.module else [])])
                for alias in node.names:
                    sub = f"{package}.{alias.name}" if package else alias.name
                    targets.add(sub if sub in modules else package)
            elif isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import circle, as one path round it (A, B, ..., A) per strongly connected group."""
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm; the package is small enough to recurse
        order[node] = low[node] = len(order)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in order:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], order[nxt])
        if low[node] == order[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(path_round(graph, sorted(group)))

    for node in sorted(graph):
        if node not in order:
            visit(node)
    return found


def path_round(graph: dict[str, set[str]], group: list[str]) -> list[str]:
    """One circle through the group's first module, found by a breadth-first walk inside it."""
    start = group[0]
    came: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph[node] & set(group)):
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came[path[-1]])
                    return [start, *reversed(path[:-1]), start] if len(path) > 1 else [start, start]
                if nxt not in came:
                    came[nxt] = node
                    following.append(nxt)
        frontier = following
    return group


def tracked_top_level() -> set[str]:
    names = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return {name.split("/")[0] for name in names}


def test_nothing_loose_at_the_top_but_the_extensions_shape():
    assert tracked_top_level() - TOP_LEVEL == set()
    assert [p.name for p in ROOT.glob("*.py")] == ["__init__.py"]


def test_every_top_folder_says_what_it_holds_and_may_import():
    folders = sorted(p for p in ROOT.iterdir() if p.is_dir() and p.name in TOP_LEVEL - {"vendor", ".ci"})
    missing = [p.name for p in folders if not (p / "README.md").is_file()]
    assert missing == []
    for sub in ("aws", "cost", "job", "machine", "pack"):
        assert (ROOT / "cloud" / sub / "__init__.py").is_file()


def test_cloud_never_imports_bpy():
    from cloud.machine import BLENDER_SCRIPTS

    blender_scripts = {MACHINE / name for name in BLENDER_SCRIPTS}
    offenders = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in python_files("cloud")
        if path not in blender_scripts
        for name, level in imported_modules(path)
        if level == 0 and (name == "bpy" or name.startswith("bpy.") or name in {"bmesh", "mathutils"})
    ]
    assert offenders == []


def test_what_ships_to_the_machine_imports_the_standard_library_only():
    """The machine folder ships as it lies: its modules import each other and the standard
    library (and bpy, and numpy that every Blender bundles, in the scripts that run inside
    Blender), nothing of the add-on."""
    from cloud.machine import BLENDER_SCRIPTS, WORKER_FILES

    offenders = []
    for name in WORKER_FILES:
        path = MACHINE / name
        for module, level in imported_modules(path):
            top = module.split(".")[0]
            if level == 1 or (level == 0 and top in STDLIB):
                continue
            if level == 0 and top in {"bpy", "addon_utils", "gpu", "numpy"} and name in BLENDER_SCRIPTS:
                continue
            offenders.append(f"{name}: {'.' * level}{module}")
    assert offenders == []
    assert set(WORKER_FILES) == {p.name for p in MACHINE.glob("*.py")} - {"__init__.py"}


def test_the_worker_archive_holds_exactly_what_ships():
    """The machine gets its files from one archive: every shipped file, as it lies, and nothing else."""
    import io
    import tarfile

    from cloud.machine import WORKER_FILES, worker_archive

    with tarfile.open(fileobj=io.BytesIO(worker_archive()), mode="r:gz") as tar:
        held = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
        assert len(held) == len(tar.getmembers())
    assert held == {name: (MACHINE / name).read_bytes() for name in WORKER_FILES}


def test_what_ships_to_the_machine_parses_as_python_3_9():
    for path in MACHINE.glob("*.py"):
        ast.parse(path.read_text(), filename=str(path), feature_version=(3, 9))


def test_dev_never_imports_tests():
    """dev/ (the emulated account, the simulators, the demos) is what tests build on, never the
    other way round: the stand-in servers and the add-on harness live in dev/."""
    offenders = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in python_files("dev")
        for name, level in imported_modules(path)
        if level == 0 and (name == "tests" or name.startswith("tests."))
    ]
    assert offenders == []


def test_only_the_add_on_side_talks_to_aws():
    """operators/ and panels/ hold no AWS logic: they reach cloud/ through addon/ or for plain data."""
    offenders = []
    for path in python_files("operators", "panels"):
        for module, _level in imported_modules(path):
            if module.split(".")[0] in {"boto3", "botocore", "s3transfer"}:
                offenders.append(f"{path.relative_to(ROOT)}: {module}")
    assert offenders == []


def aws_client_uses(path: Path) -> list[str]:
    """Where a module makes an AWS client: imports boto3, calls `client(..., "s3")` /
    `session.client("s3")` / `.resource("s3")` with a service name, or uses ClientCache."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [
                f"{node.lineno}: import {a.name}" for a in node.names if a.name.split(".")[0] == "boto3"
            ]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("boto3"):
            found.append(f"{node.lineno}: from {node.module} import")
        elif isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            values = [*node.args, *(k.value for k in node.keywords if k.arg == "service_name")]
            if name in {"client", "resource"} and any(
                isinstance(v, ast.Constant) and isinstance(v.value, str) for v in values
            ):
                found.append(f"{node.lineno}: {name}(...)")
        if (isinstance(node, ast.Name) and node.id == "ClientCache") or (
            isinstance(node, ast.alias) and node.name == "ClientCache"
        ):
            found.append(f"{getattr(node, 'lineno', '?')}: ClientCache")
    return found


def test_aws_clients_are_made_in_cloud_aws_only():
    """The AWS calls live behind cloud/aws/: elsewhere in the add-on, no boto3, no client.
    dev/, bench/ and tests/ are free."""
    aws = ROOT / "cloud" / "aws"
    offenders = [
        f"{rel}:{use}"
        for path in python_files(*ADDON_DIRS, "__init__.py", "cloud")
        if aws not in path.parents and (rel := str(path.relative_to(ROOT)))
        for use in aws_client_uses(path)
    ]
    assert offenders == []
    # The check sees what cloud/aws/ does.
    assert aws_client_uses(aws / "bucket_setup.py") and aws_client_uses(aws / "session.py")


def test_addon_code_uses_relative_imports_and_leaves_sys_path_alone():
    first_party = {"cloud", "addon", "operators", "panels"}
    offenders = []
    for path in python_files(*ADDON_DIRS, "__init__.py", "cloud"):
        for name, level in imported_modules(path):
            if level == 0 and name.split(".")[0] in first_party:
                offenders.append(f"{path.relative_to(ROOT)}: absolute import of {name}")
        if "sys.path" in path.read_text():
            offenders.append(f"{path.relative_to(ROOT)}: touches sys.path")
    assert offenders == []


def test_no_import_circles():
    """No module imports itself through others, counting deferred imports inside functions: a
    circle hides an order dependency, and is cut by moving the shared piece to its own module."""
    graph = import_graph()
    assert "cloud.machine.supervisor" in graph and graph["cloud.pack.hash_cache"]  # the walk sees them
    found = circles(graph)
    unexpected = [" -> ".join(c) for c in found if sorted(set(c)) not in KNOWN_CIRCLES]
    assert unexpected == [], "import circles:\n" + "\n".join(unexpected)
    cut = [c for c in KNOWN_CIRCLES if c not in [sorted(set(f)) for f in found]]
    assert cut == [], f"these circles are gone: remove them from KNOWN_CIRCLES: {cut}"


def test_the_circle_finder_finds_a_deferred_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == [["a", "b", "c", "a"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_manifest_is_complete():
    manifest = tomllib.loads((ROOT / "blender_manifest.toml").read_text())
    assert manifest["schema_version"] == "1.0.0"
    assert manifest["id"] == "cloud_render"
    assert manifest["type"] == "add-on"
    assert manifest["blender_version_min"] == "4.2.0"
    assert manifest["license"] == ["SPDX:GPL-3.0-or-later"]
    assert set(manifest["permissions"]) == {"network", "files"}
    assert set(manifest["platforms"]) == {"linux-x64", "macos-arm64", "macos-x64", "windows-x64"}


def test_manifest_wheels_are_exactly_the_pinned_ones():
    manifest = tomllib.loads((ROOT / "blender_manifest.toml").read_text())
    listed = {w.removeprefix("./vendor/") for w in manifest["wheels"]}
    pinned = {
        line.split()[0]
        for line in (ROOT / "dev" / "vendor.lock").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert listed == pinned
    # Every runtime dependency the add-on needs is there, compiled ones for Python 3.11 and 3.13.
    names = {w.split("-")[0].lower() for w in pinned}
    assert {
        "boto3",
        "botocore",
        "s3transfer",
        "jmespath",
        "python_dateutil",
        "six",
        "urllib3",
        "blender_asset_tracer",
        "cryptography",
        "cffi",
        "pycparser",
        "requests",
    } <= names
    for platform in ("manylinux", "macosx_11_0_arm64", "macosx_10_13_x86_64", "win_amd64"):
        for py in ("cp311", "cp313"):
            assert any(w.startswith("cffi-") and f"-{py}-" in w and platform in w for w in pinned), (
                py,
                platform,
            )
