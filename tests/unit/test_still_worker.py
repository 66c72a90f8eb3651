"""cloud/machine/still_worker.py: what a still's machine decides on its own, without a bucket.

The whole protocol (claims, uploads, the merge gathered as parts land) runs against moto in
tests/e2e/test_still_job.py; here, two decisions a run there does not pin down: when the next
part is claimed ahead, and where the merged passes are written for the finish.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cloud.machine import still_worker
from cloud.machine.still_gather import Gatherer
from cloud.machine.still_worker import StillSupervisor

LENGTHS = [10, 10, 11]


def supervisor(work: Path, machines: int = 3) -> StillSupervisor:
    """Machine 0 of `machines` for a still of three parts (no request is made: the links are
    never used)."""
    offsets = [sum(LENGTHS[:k]) for k in range(len(LENGTHS))]
    parts = [
        {"index": k, "offset": o, "length": n} for k, (o, n) in enumerate(zip(offsets, LENGTHS, strict=True))
    ]
    links = {str(k): f"http://127.0.0.1:9/{k}" for k in range(len(LENGTHS))}
    spec = {
        "job_id": "20261207-180000-aaaaaa",
        "frames": [1],
        "upload_url": "http://127.0.0.1:9/",
        "upload_fields": {},
        "upload_prefix": "jobs/20261207-180000-aaaaaa/out/",
        "machine_count": machines,
        "still": {
            "frame": 1,
            "total_samples": sum(LENGTHS),
            "parts": parts,
            "claim_urls": links,
            "part_urls": links,
        },
    }
    return StillSupervisor(spec, str(work), 0, 1)


def test_after_one_part_the_next_is_expected_in_proportion_to_its_samples(tmp_path):
    """Parts differ only in their sample counts, so one part rendered here says how long each
    other will take (frames need two alike first): the next part is claimed ahead from the
    second on (the first, where parts are plenty), on the merging machine too (its adds run
    beside its renders)."""
    machine = supervisor(tmp_path)
    assert machine.expected_seconds(1) is None  # nothing rendered here yet: claimed when asked
    # ...but where parts are plenty (two a machine or more, as on spot), the second part is
    # claimed as the first starts: the first parts go round, and more are left.
    assert supervisor(tmp_path / "one", machines=1).expected_seconds(0) == 0.0
    machine.rendered_here[0] = 5.0
    assert machine.expected_seconds(1) == pytest.approx(5.0)
    assert machine.expected_seconds(2) == pytest.approx(5.5)  # 11 samples at 0.5 s each
    machine.rendered_here[1] = 6.0  # the slowest rate seen here counts
    assert machine.expected_seconds(2) == pytest.approx(6.6)
    machine.gather = Gatherer([0, 1, 2], {0, 1}, set, lambda _k: None, lambda _t: None)
    assert machine.expected_seconds(2) == pytest.approx(6.6)  # merging changes nothing
    assert machine.expected_seconds(7) is None  # not a part of this still


def test_the_merged_passes_go_to_memory_where_it_has_room_else_to_disk(tmp_path, monkeypatch):
    """The merged passes are written where the finish reads them back: a folder in memory when
    it has room for twice a part and the spare (then removed with the machine), else the work
    folder (a container's 64 MB /dev/shm)."""
    shm = tmp_path / "shm"
    shm.mkdir()
    monkeypatch.setattr(still_worker, "MEMORY_FOLDER", str(shm))
    machine = supervisor(tmp_path / "work")
    Path(machine.part_path(0)).write_bytes(b"\0" * 4096)
    monkeypatch.setattr(still_worker, "MEMORY_FOLDER_SPARE", 0)
    folder = machine.layers_folder()
    assert Path(folder).parent == shm and Path(folder).is_dir()
    assert machine.memory_folder == folder
    free = os.statvfs(shm)
    monkeypatch.setattr(still_worker, "MEMORY_FOLDER_SPARE", free.f_bavail * free.f_frsize)
    other = supervisor(tmp_path / "work2")
    Path(other.part_path(0)).write_bytes(b"\0" * 4096)
    assert other.layers_folder() == other.work and other.memory_folder == ""
    monkeypatch.setattr(still_worker, "MEMORY_FOLDER", str(tmp_path / "none"))
    assert other.layers_folder() == other.work  # no such folder: said in the log, on disk
