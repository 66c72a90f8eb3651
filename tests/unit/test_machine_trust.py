"""The render machine at its trust boundaries: archives it unpacks, uploads the bucket refuses.

Archives are crafted here and unpacked by the supervisor's own code, with Python's tar "data"
filter and with the hand check older Pythons (3.9.0-3.9.16) fall back on. Uploads go through the
machine's transport to moto behind the simulator's proxy, which plays S3's part moto leaves out
(presigned POST policies expire).
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from cloud.aws.presign import presign_post
from cloud.aws.session import client
from cloud.machine.contract import out_prefix
from cloud.machine.installs import unpack_tarball
from cloud.machine.transport import REFUSALS_BEFORE_STOP, JobFailed, Poster, refusal
from dev.simulator import CuttableProxy

MODES = [
    pytest.param(
        True, id="data-filter", marks=pytest.mark.skipif(not hasattr(tarfile, "data_filter"), reason="")
    ),
    pytest.param(False, id="hand-check"),
]
TOP = "blender-9.9.1-linux-x64"

TRUST_BUCKET = "cloud-render-trust-test"  # a name the artist's policies reach


def member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", link: str = "", mode: int = 0o644):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode, info.size = kind, link, mode, len(data)
    if kind == tarfile.CHRTYPE:
        info.devmajor, info.devminor = 1, 3  # /dev/null
    return info, io.BytesIO(data) if data else None


def tarball(path: Path, members: list) -> Path:
    with tarfile.open(path, "w:xz") as archive:
        for info, data in members:
            archive.addfile(info, data)
    return path


def good_members() -> list:
    return [
        member(f"{TOP}/", tarfile.DIRTYPE, mode=0o755),
        member(f"{TOP}/blender", data=b"#!/bin/sh\n", mode=0o4755),  # setuid: dropped
        member(f"{TOP}/lib/", tarfile.DIRTYPE, mode=0o755),
        member(f"{TOP}/lib/libx.so.1", data=b"ELF"),
        member(f"{TOP}/lib/libx.so", tarfile.SYMTYPE, link="libx.so.1"),
        member(f"{TOP}/blender-link", tarfile.LNKTYPE, link=f"{TOP}/blender", mode=0o755),
    ]


def everything_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("use_filter", MODES)
def test_a_crafted_archive_is_refused_whole_and_writes_nothing(tmp_path, use_filter):
    outside = tmp_path / "outside"
    outside.mkdir()
    crafted = tarball(
        tmp_path / "crafted.tar.xz",
        [
            *good_members(),
            member("../escape", data=b"escaped"),
            member(str(outside / "absolute"), data=b"absolute"),
            member(f"{TOP}/etc", tarfile.SYMTYPE, link="/etc"),
            member(f"{TOP}/null", tarfile.CHRTYPE),
        ],
    )
    work = tmp_path / "work"
    target = work / "blender"
    before = everything_under(tmp_path)

    with pytest.raises(JobFailed) as refused:
        unpack_tarball(str(crafted), str(target), "crafted.tar.xz", use_filter=use_filter)

    assert refused.value.kind == "unsafe_archive"
    cause = refused.value.cause
    assert cause.startswith("The Blender archive crafted.tar.xz was refused: '../escape' is a path outside")
    assert (
        "is an absolute path" in cause
        and "'blender-9.9.1-linux-x64/etc' is a link to an absolute path" in cause
    )
    assert cause.endswith(" and 1 more. Nothing of it was unpacked.")
    # Nothing written: not outside, not even inside the target.
    assert everything_under(tmp_path) - before == {"work", "work/blender"}
    assert list(target.iterdir()) == []


BAD = {  # id: (the unsafe member, as (name, type, link), words of the refusal)
    "parent": (("../escape", tarfile.REGTYPE, ""), "'../escape' is a path outside the folder"),
    "deep-parent": ((f"{TOP}/../../escape", tarfile.REGTYPE, ""), "is a path outside the folder"),
    "absolute": (("/tmp/cloud-render-absolute", tarfile.REGTYPE, ""), "is an absolute path"),
    "symlink-etc": ((f"{TOP}/etc", tarfile.SYMTYPE, "/etc"), "is a link to an absolute path"),
    "symlink-up": ((f"{TOP}/up", tarfile.SYMTYPE, "../../.."), "is a link pointing outside the folder"),
    "hardlink-out": ((f"{TOP}/h", tarfile.LNKTYPE, "../x"), "is a link pointing outside the folder"),
    "device": ((f"{TOP}/null", tarfile.CHRTYPE, ""), "is a device or fifo"),
    "fifo": ((f"{TOP}/pipe", tarfile.FIFOTYPE, ""), "is a device or fifo"),
}


@pytest.mark.parametrize("use_filter", MODES)
@pytest.mark.parametrize("case", list(BAD))
def test_each_kind_of_unsafe_member_is_refused(tmp_path, use_filter, case):
    (name, kind, link), words = BAD[case]
    data = b"x" if kind == tarfile.REGTYPE else b""
    crafted = tarball(tmp_path / "one.tar.xz", [*good_members(), member(name, kind, data, link)])
    target = tmp_path / "machine" / "blender"
    with pytest.raises(JobFailed) as refused:
        unpack_tarball(str(crafted), str(target), "one.tar.xz", use_filter=use_filter)
    assert refused.value.kind == "unsafe_archive" and words in refused.value.cause
    assert list(target.iterdir()) == [] and not (tmp_path / "escape").exists()
    assert not (tmp_path / "machine" / "escape").exists()


@pytest.mark.parametrize("use_filter", MODES)
def test_a_release_shaped_archive_unpacks(tmp_path, use_filter):
    good = tarball(tmp_path / "good.tar.xz", good_members())
    target = tmp_path / "blender"
    unpack_tarball(str(good), str(target), "good.tar.xz", use_filter=use_filter)
    program = target / TOP / "blender"
    assert program.read_bytes() == b"#!/bin/sh\n" and os.access(program, os.X_OK)
    assert not program.stat().st_mode & stat.S_ISUID
    assert os.readlink(target / TOP / "lib" / "libx.so") == "libx.so.1"
    assert (target / TOP / "lib" / "libx.so").read_bytes() == b"ELF"
    assert (target / TOP / "blender-link").read_bytes() == b"#!/bin/sh\n"


def test_a_damaged_archive_is_a_download_failure(tmp_path):
    damaged = tmp_path / "damaged.tar.xz"
    damaged.write_bytes(b"\xfd7zXZ\x00 not really")
    with pytest.raises(JobFailed) as failed:
        unpack_tarball(str(damaged), str(tmp_path / "blender"), "damaged.tar.xz")
    assert failed.value.kind == "download" and "could not be unpacked" in failed.value.cause


# ---------------------------------------------------------------- refused uploads


def test_what_counts_as_a_refusal():
    assert refusal(
        403, "<Code>AccessDenied</Code><Message>Invalid according to Policy: Policy expired.</Message>"
    )
    assert refusal(403, "") == "HTTP 403"
    assert refusal(400, "<Code>ExpiredToken</Code>") == "HTTP 400 ExpiredToken"
    assert refusal(400, "<Message>Request has expired</Message>") == "HTTP 400 Request has expired"
    assert refusal(400, "<Code>EntityTooLarge</Code>") == ""
    assert refusal(404, "") == "" and refusal(503, "Slow Down") == ""


def test_an_expired_upload_policy_is_noticed_after_a_few_refusals(aws):
    s3 = client(aws.settings, "s3")
    s3.create_bucket(Bucket=TRUST_BUCKET)
    proxy = CuttableProxy()  # S3's part: the policy's expiration is enforced
    with proxy.serving() as proxy_url:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy_url}))

        # A policy that lives one second: wait until S3 refuses it, as it will mid-job.
        short = presign_post(s3, TRUST_BUCKET, out_prefix("j1"), 1, 1 << 20)
        poster = Poster(short["url"], short["fields"], out_prefix("j1"), opener=opener)
        deadline = time.monotonic() + 30
        while True:
            try:
                poster.put("status.json", b"{}")
            except urllib.error.HTTPError as exc:
                assert exc.code == 403
                break
            assert time.monotonic() < deadline, "the one-second policy never expired"
        assert poster.refusal == "HTTP 403 Policy expired" and not poster.denied.is_set()
        for _ in range(REFUSALS_BEFORE_STOP - 1):
            with pytest.raises(urllib.error.HTTPError):
                poster.put("logs/000001.log", b"line\n")
        assert poster.denied.is_set()

        # Refusals must come in a row: one upload that goes through starts the count again.
        fresh = presign_post(s3, TRUST_BUCKET, out_prefix("j2"), 3600, 1 << 20)
        poster = Poster(fresh["url"], fresh["fields"], out_prefix("j2"), opener=opener)
        poster.put("status.json", b"{}")
        proxy.jump(2 * 3600)
        for _ in range(REFUSALS_BEFORE_STOP - 1):
            with pytest.raises(urllib.error.HTTPError):
                poster.put("status.json", b"{}")
        proxy.jump(-2 * 3600)
        poster.put("status.json", b"{}")
        assert poster.refusals == 0 and not poster.denied.is_set()
    assert s3.get_object(Bucket=TRUST_BUCKET, Key="jobs/j2/out/status.json")["Body"].read() == b"{}"
    assert "Invalid according to Policy: Policy expired." in proxy.denied
