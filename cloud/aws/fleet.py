"""How many machines of a type fit the account's vCPU quota: the capacity check for N machines.

`quotas.check_capacity` answers for one machine; a job on N machines needs N times its vCPUs
within the family's quota (minus what already runs). When N does not fit, the answer names the
largest N that does and offers the increase request, in plain words.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .quotas import CapacityReport, check_capacity
from .session import AwsSettings


@dataclass(frozen=True)
class FleetFit:
    wanted: int
    fits: int  # the most machines the quota leaves room for (wanted when unknown)
    ok: bool
    message: str
    action: str
    report: CapacityReport


def machines_that_fit(report: CapacityReport, wanted: int) -> FleetFit:
    """From one machine's capacity report: does `wanted` fit, else how many do."""
    wanted = max(1, wanted)
    if not report.offered:
        return FleetFit(wanted, 0, False, report.message, report.action, report)
    if report.quota_vcpus is None:
        return FleetFit(wanted, wanted, True, report.message, report.action, report)
    per_machine = max(1, report.vcpus_needed)
    room = max(0.0, report.quota_vcpus - report.vcpus_in_use)
    fits = math.floor(room / per_machine)
    if fits >= wanted:
        return FleetFit(wanted, wanted, True, f"{wanted} machines fit your account's limit.", "", report)
    used = f" ({report.vcpus_in_use} in use)" if report.vcpus_in_use else ""
    message = (
        f"Your account's limit of {report.quota_vcpus:g} vCPUs for {report.quota_label} in {report.region}"
        f"{used} leaves room for {fits} {report.instance_type} machine{'s' if fits != 1 else ''} "
        f"({per_machine} vCPUs each), not {wanted}."
    )
    need = wanted * per_machine + report.vcpus_in_use
    if fits:
        action = f"Render on {fits} machines, or request a quota increase to {need} vCPUs (AWS usually answers within a day)."
    else:
        action = (
            f"Request a quota increase to {need} vCPUs (AWS usually answers within a day), then render again."
        )
    return FleetFit(wanted, fits, False, message, action, report)


def check_fleet(settings: AwsSettings, instance_type: str, spot: bool, machines: int) -> FleetFit:
    return machines_that_fit(check_capacity(settings, instance_type, spot), machines)
