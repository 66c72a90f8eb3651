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
    library (and bpy in the two scripts that run inside Blender), nothing of the add-on."""
    from cloud.machine import BLENDER_SCRIPTS, WORKER_FILES

    offenders = []
    for name in WORKER_FILES:
        path = MACHINE / name
        for module, level in imported_modules(path):
            top = module.split(".")[0]
            if level == 1 or (level == 0 and top in STDLIB):
                continue
            if level == 0 and top in {"bpy", "addon_utils", "gpu"} and name in BLENDER_SCRIPTS:
                continue
            offenders.append(f"{name}: {'.' * level}{module}")
    assert offenders == []
    assert set(WORKER_FILES) == {p.name for p in MACHINE.glob("*.py")}


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


# Still making S3 clients outside cloud/aws/, being moved there by the engine work (issue 21):
# empty this list once they are behind cloud/aws/.
AWS_CLIENTS_ALLOWED_OUTSIDE = {
    "cloud/job/batch_engine.py",
}


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
        if aws not in path.parents and (rel := str(path.relative_to(ROOT))) not in AWS_CLIENTS_ALLOWED_OUTSIDE
        for use in aws_client_uses(path)
    ]
    assert offenders == []
    # The check sees what cloud/aws/ does, and what the allowed files still do.
    assert aws_client_uses(aws / "bucket_setup.py") and aws_client_uses(aws / "session.py")
    for rel in AWS_CLIENTS_ALLOWED_OUTSIDE:
        assert aws_client_uses(ROOT / rel), f"{rel} makes no client now: take it off the list"


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
