"""The render machine's one entry point: `python3 -m machine --spec SPEC --work DIR`.

The boot script (user-data, or an AWS Batch container's command) starts this with the job spec
it downloaded. It checks the spec's contract version, picks the runner the spec's engine names
(`contract.spec_engine`: "ec2" one machine renders every frame, `supervisor.Supervisor`;
"batch" one child of an array job claims its frames, `batch_worker.BatchSupervisor`; "still"
one child claims parts of one frame's samples and the last merges them,
`still_worker.StillSupervisor`), runs it,
and powers the machine off. The choice is made here and only here, so neither runner imports
the other's entry.

Runs on the instance's system Python: Python 3.9+, standard library only.
"""

from __future__ import annotations

import argparse
import http.client
import json
import subprocess
import sys
from typing import Any

from . import contract
from .batch_worker import BatchSupervisor
from .blender_logs import MARK
from .still_worker import StillSupervisor
from .supervisor import Supervisor
from .transport import Poster, now_iso


def power_off() -> None:
    """`shutdown -h now` (never halt: with behaviour "terminate" this ends the bill)."""
    for command in (["shutdown", "-h", "now"], ["poweroff"]):
        try:
            if subprocess.call(command) == 0:
                return
        except OSError:
            continue


def refuse_spec(spec: dict[str, Any], work: str, reason: str) -> str:
    """A spec this worker cannot run (another contract version, an unknown engine): say so in
    error.json, render nothing."""
    poster = Poster(spec["upload_url"], spec["upload_fields"], spec["upload_prefix"])
    body = {"contract": contract.CONTRACT_VERSION, "kind": "contract", "cause": reason, "time": now_iso()}
    try:
        poster.put("error.json", json.dumps(body).encode())
    except (OSError, http.client.HTTPException) as exc:
        print(f"{MARK}could not report the version mismatch: {exc}", flush=True)
    return "failed"


def run_job(spec: dict[str, Any], work: str) -> str:
    """The job's final state, from the runner its engine names."""
    try:
        contract.check_spec_version(spec)
        engine = contract.spec_engine(spec)
    except contract.ContractError as exc:
        return refuse_spec(spec, work, str(exc))
    if engine == "batch":
        return BatchSupervisor.from_environment(spec, work).run()
    if engine == "still":
        return StillSupervisor.from_environment(spec, work).run()
    return Supervisor(spec, work).run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--spec", required=True, help="the job spec (JSON) the boot script downloaded")
    parser.add_argument("--work", required=True, help="working directory on the machine")
    parser.add_argument("--no-power-off", action="store_true", help="leave the machine running (debugging)")
    args = parser.parse_args(argv)
    with open(args.spec, encoding="utf-8") as handle:
        spec = json.load(handle)
    state = run_job(spec, args.work)
    if not args.no_power_off:
        power_off()
    return 0 if state == "done" else 1


if __name__ == "__main__":
    sys.exit(main())
