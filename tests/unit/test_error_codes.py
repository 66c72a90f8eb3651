"""Error codes are one enum (cloud/errors.py): one casing, and the machine's wire values kept."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from cloud.aws.error_rules import RULES
from cloud.errors import MACHINE_FAILURES, ErrorCode, machine_failure
from cloud.job.endings import FAILURE_ACTIONS
from cloud.machine import contract

ROOT = Path(__file__).resolve().parents[2]
MACHINE = ROOT / "cloud" / "machine"
# The add-on side: what may import cloud/errors.py. cloud/machine/ ships alone and writes its
# failure kinds as plain strings (read back through machine_failure).
ADDON_SIDE = ["cloud", "addon", "operators", "panels"]
CODE_ATTRIBUTES = {"code", "error_code"}  # a CloudError's or report's, the job view's


def _is_text(node: ast.expr) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return any(_is_text(item) for item in node.elts)
    return False


def literal_codes(tree: ast.AST) -> list[tuple[int, str]]:
    """Each `code="..."` argument, and each `.code` (or `.error_code`) compared with a string."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "code" and _is_text(node.value):
            found.append((node.value.lineno, ast.unparse(node.value)))
        elif isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(isinstance(s, ast.Attribute) and s.attr in CODE_ATTRIBUTES for s in sides) and any(
                _is_text(s) for s in sides
            ):
                found.append((node.lineno, ast.unparse(node)))
    return found


def test_codes_are_lower_snake_case_and_unique():
    values = [code.value for code in ErrorCode]
    assert len(set(values)) == len(values)
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", value) for value in values if value), values
    assert ErrorCode.NONE == "" and not ErrorCode.NONE


def test_the_message_table_is_keyed_by_the_enum():
    assert all(isinstance(rule.kind, ErrorCode) for rule in RULES)


def test_every_kind_the_contract_accepts_is_a_machine_failure():
    """The machine ships alone and writes plain strings; each one it may write reads as a code."""
    assert {*contract.ERROR_KINDS, "unknown"} == {code.value for code in MACHINE_FAILURES}
    for kind in contract.ERROR_KINDS:
        assert machine_failure(kind) == kind and machine_failure(kind) in MACHINE_FAILURES


def kinds_the_machine_writes() -> set[str]:
    """Every failure kind cloud/machine/ spells out: JobFailed("kind", ...), fail("kind", ...),
    finish_failed("kind", ...), a `failure` method's ("kind", cause) and the log's cause table."""
    kinds: set[str] = set()
    for path in sorted(MACHINE.glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
                name = getattr(node.func, "id", getattr(node.func, "attr", ""))
                if name in {"JobFailed", "fail", "finish_failed"}:
                    kinds.add(node.args[0].value)
            elif isinstance(node, ast.FunctionDef) and node.name == "failure":
                for ret in ast.walk(node):
                    if isinstance(ret, ast.Return) and isinstance(ret.value, ast.Tuple):
                        first = ret.value.elts[0]
                        if isinstance(first, ast.Constant):
                            kinds.add(first.value)
            elif isinstance(node, ast.Assign) and any(
                getattr(t, "id", "") == "_CAUSES" for t in node.targets
            ):
                assert isinstance(node.value, ast.Tuple)
                for row in node.value.elts:
                    assert isinstance(row, ast.Tuple) and isinstance(row.elts[1], ast.Constant)
                    kinds.add(row.elts[1].value)
    return kinds


def test_every_kind_the_machine_writes_is_one_the_contract_accepts():
    """Else the add-on reads it as "unknown" and the artist gets the generic action (as happened
    to "no_opengl", whose action was written, and "killed")."""
    written = kinds_the_machine_writes()
    assert {"no_gpu", "no_opengl", "killed", "crash", "internal"} <= written  # the scan sees them
    assert written <= set(contract.ERROR_KINDS)


def test_every_failure_action_is_for_a_machine_failure():
    assert set(FAILURE_ACTIONS) <= MACHINE_FAILURES and ErrorCode.MACHINE_UNKNOWN in FAILURE_ACTIONS


def test_unknown_or_foreign_kinds_read_as_the_generic_machine_code():
    for kind in ("", "made_up_by_a_newer_machine", "access_denied", "cancelled", "machine_failed", "NO_GPU"):
        assert machine_failure(kind) is ErrorCode.MACHINE_UNKNOWN


def test_the_check_sees_the_shapes_it_forbids():
    source = """
raise CloudError("m", code="BadFrameList")
if error.code == "CapTooLow": pass
if report.code not in ("quota_zero", "quota_low"): pass
if view.error_code in {"no_quota"}: pass
raise CloudError("m", code=ErrorCode.BAD_FRAME_LIST)
if error.code in TRANSIENT_CODES or code == "AccessDenied" or facts.aws_code == "Throttling": pass
"""
    assert sorted(line for line, _ in literal_codes(ast.parse(source))) == [2, 3, 4, 5]


def test_no_code_is_a_string_literal_outside_the_enum():
    """Codes are ErrorCode members at every raise and every comparison, so strings (and a second
    casing) cannot creep back; AWS's own codes are compared as strings, but never as `.code`."""
    offenders = []
    for folder in ADDON_SIDE:
        for path in sorted((ROOT / folder).rglob("*.py")):
            relative = path.relative_to(ROOT)
            if relative.parts[:2] == ("cloud", "machine") or relative == Path("cloud/errors.py"):
                continue
            for line, text in literal_codes(ast.parse(path.read_text(), filename=str(path))):
                offenders.append(f"{relative}:{line}: {text}")
    assert offenders == []
