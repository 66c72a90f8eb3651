"""What one machine of many may be believed about, when any of them can write anything.

On AWS Batch the N machines of a job share its presigned links: any machine can write any claim
(`out/claims/<name>`, even over another's) and any machine's folder (`out/machines/<i>/`). So
no machine's word about another is taken: a frame counts when it landed and matches the plan
(job_thread.download_new, never a status or done.json), the job is done only when every frame
landed (MachineFolders.final_state), and a machine's end document is believed only when it
agrees with the claims that name that machine and with what landed (`judge_end`). A refused end
document ends nothing: the machines' lives (Batch's word, not theirs) and the frames decide.

The rules work on claim names as the machines write them: `<frame>` for a frame, `part-<k>` and
`merge` for a split still's parts and its merge.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from ..machine import contract

SHOWN = 8  # names listed in a refusal before "and N more"


@dataclass(frozen=True)
class EndSays:
    """What an end document says about the work: the claim names it says this machine rendered
    (or timed), and those it says this machine left unfinished."""

    rendered: frozenset[str]
    left: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Facts:
    """What the add-on sees for itself: the machine each claim's bytes name, the claim names
    whose output landed, and the names the job hands out (every frame, or every part)."""

    holders: dict[str, int]
    landed: frozenset[str]
    work: frozenset[str]

    def held_by(self, machine: int) -> set[str]:
        return {name for name, holder in self.holders.items() if holder == machine}


def claim_signatures(machines: int, attempts: int) -> dict[str, int]:
    """ETag -> machine index for every claim a machine of this job can write: the MD5 of
    `contract.claim_body(index, attempt)`, which is what a listing shows (SSE-S3)."""
    return {
        hashlib.md5(contract.claim_body(index, attempt), usedforsecurity=False).hexdigest(): index
        for index in range(machines)
        for attempt in range(1, attempts + 1)
    }


def claim_holders(
    listing: dict[str, str], signatures: dict[str, int], names: Iterable[str]
) -> tuple[dict[str, int], list[str]]:
    """Claim name -> the machine its bytes name, for the job's own claim `names`; and the names
    whose bytes name no machine of this job (said in the log, held by nobody). Other keys in the
    listing are no claim of this job and are left out."""
    holders: dict[str, int] = {}
    strangers: list[str] = []
    for name in names:
        etag = listing.get(name)
        if etag is None:
            continue
        if etag in signatures:
            holders[name] = signatures[etag]
        else:
            strangers.append(name)
    return holders, strangers


def judge_end(machine: int, document: str, says: EndSays, facts: Facts) -> str:
    """Why machine `machine`'s end document is not believed ("" when it is). Every end may only
    speak of work the claims give that machine; a done.json says nothing is left to claim and
    everything it claimed is delivered, so every name must be claimed and its own landed."""
    held = facts.held_by(machine)
    foreign = says.rendered - held
    if foreign:
        return f"it says machine {machine} rendered {words(foreign)}, which no claim gives it"
    foreign = says.left - held
    if foreign:
        return f"it says machine {machine} left {words(foreign)} unfinished, which no claim gives it"
    if document != "done.json":
        return ""
    unclaimed = facts.work - facts.holders.keys()
    if unclaimed:
        return f"it says nothing is left to claim, but no machine holds {words(unclaimed)}"
    lost = held - facts.landed
    if lost:
        return f"it says machine {machine} is done, but {words(lost)} it claimed never arrived"
    return ""


def missing_words(missing: Iterable[str], holders: dict[str, int]) -> str:
    """For the job log as a job ends short: who held what never arrived (by the claims, which
    any machine can rewrite: a lead, not a verdict)."""
    by_holder: dict[int | None, set[str]] = {}
    for name in missing:
        by_holder.setdefault(holders.get(name), set()).add(name)
    parts = [
        f"{words(names)} claimed by machine {holder}"
        for holder, names in sorted((h, n) for h, n in by_holder.items() if h is not None)
    ]
    if None in by_holder:
        parts.append(f"{words(by_holder[None])} claimed by no machine")
    return "Not delivered: " + "; ".join(parts) + "." if parts else ""


def words(names: Iterable[str]) -> str:
    """Claim names as the log says them: `frames 3, 4` / `part 1` / `the merge`, a few at most."""
    names = set(names)
    frames = sorted(int(n) for n in names if n.lstrip("-").isdigit())
    parts = sorted(int(n[5:]) for n in names if n.startswith("part-") and n[5:].isdigit())
    said = [_listed("frame", [str(f) for f in frames]), _listed("part", [str(p + 1) for p in parts])]
    if "merge" in names:
        said.append("the merge")
    return " and ".join(s for s in said if s)


def _listed(what: str, items: list[str]) -> str:
    if not items:
        return ""
    shown = ", ".join(items[:SHOWN]) + (f" and {len(items) - SHOWN} more" if len(items) > SHOWN else "")
    return f"{what}{'s' * (len(items) != 1)} {shown}"
