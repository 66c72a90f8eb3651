"""The engines by name: the one made for a job record, and the forgotten-machine search over
all of them (engine.py says what an engine is)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..aws.session import AwsSettings
from . import batch_engine, ec2_engine, still_engine
from .engine import Engine, EngineName, ForgottenMachine
from .records import JobRecord

_log = logging.getLogger(__name__)


def make_engine(record: JobRecord) -> Engine:
    """The engine the record names (chosen once, at submit: engine.engine_name_for)."""
    name = EngineName(record.cloud_engine)
    if name is EngineName.STILL:
        return still_engine.StillEngine()
    if name is EngineName.BATCH:
        return batch_engine.BatchEngine()
    return ec2_engine.Ec2Engine()


def find_forgotten(
    settings: AwsSettings, regions: list[str], is_job_live: Callable[[str], bool]
) -> list[ForgottenMachine]:
    """Machines of ours still running, in every region given, whose job is not live here: EC2
    instances by their tag, and live Batch jobs (each standing for its machines)."""
    found = ec2_engine.find_forgotten(settings, regions, is_job_live)
    try:
        found += batch_engine.find_forgotten(settings, regions, is_job_live)
    except Exception as error:  # an account never set up for Batch has no queue to search
        _log.info("Batch jobs not searched: %s", error)
    return found


def stop_forgotten(settings: AwsSettings, machine: ForgottenMachine) -> None:
    """Stop a forgotten machine (a forgotten Batch job with every child it still has)."""
    if machine.engine in (EngineName.BATCH, EngineName.STILL):
        batch_engine.stop_forgotten(settings, machine)
    else:
        ec2_engine.stop_forgotten(settings, machine)
