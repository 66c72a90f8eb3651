"""Error codes are one enum (cloud/errors.py): one casing, and the machine's wire values kept."""

from __future__ import annotations

import re

from cloud.aws.error_rules import RULES
from cloud.errors import MACHINE_FAILURES, ErrorCode, machine_failure
from cloud.machine import contract


def test_codes_are_lower_snake_case_and_unique():
    values = [code.value for code in ErrorCode]
    assert len(set(values)) == len(values)
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", value) for value in values if value), values
    assert ErrorCode.NONE == "" and not ErrorCode.NONE


def test_the_message_table_is_keyed_by_the_enum():
    assert all(isinstance(rule.kind, ErrorCode) for rule in RULES)


def test_every_kind_the_contract_accepts_is_a_machine_failure():
    """The machine ships alone and writes plain strings; each one it may write reads as a code."""
    assert {*contract.ERROR_KINDS, "unknown"} <= {code.value for code in MACHINE_FAILURES}
    for kind in contract.ERROR_KINDS:
        assert machine_failure(kind) == kind and machine_failure(kind) in MACHINE_FAILURES


def test_unknown_or_foreign_kinds_read_as_the_generic_machine_code():
    for kind in ("", "made_up_by_a_newer_machine", "access_denied", "cancelled", "NO_GPU"):
        assert machine_failure(kind) is ErrorCode.MACHINE_UNKNOWN
