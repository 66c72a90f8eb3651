"""What the render machine installs from outside it: Blender, and the one check of every tar.

Blender comes from the job's sources in order: a release archive (from the bucket, where the
add-on keeps builds, or from a URL: checked against its SHA-256) or the official `bpy` wheel
from PyPI (nearest patch of the same series, in a venv of the Python it needs;
`blender_launcher.py` then stands in for the `blender` program). A build fetched from outside
the bucket is handed back through the job's POST for the add-on to keep (it checks the build
itself). A source that fails gives way to the next one.

Every tar the machine unpacks comes from outside it, a Blender release or a GPU kernel cache
written by another machine (`kernel_cache.py`), and gets the same check (`check_members`)
before anything is written: no absolute names, no `..` or link reaching outside the folder
(the links already on disk resolved), no devices, fifos or other special files; and, per kind
of archive (`TarRules`), links at all or not, plain names only, the top folders allowed, size
and member-count bounds, no name twice. With `use_filter` Python's own tar "data" filter
(3.9.17+, 3.10.12+, 3.11.4+, 3.12+) judges each member as well.

Runs on the instance's system Python: Python 3.9+, standard library only.
"""

from __future__ import annotations

import copy
import http.client
import json
import os
import re
import shutil
import stat
import subprocess
import tarfile
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .transport import JobFailed, JobLog, Poster, download, http_request, sha256_file, with_retries

HERE = os.path.dirname(os.path.abspath(__file__))
PYPI_JSON = os.environ.get("CLOUD_RENDER_PYPI_JSON", "https://pypi.org/pypi/bpy/json")


# ---------------------------------------------------------------- every tar

# The data filter's refusals (tarfile.FilterError subclasses), in the words of the hand check.
FILTER_WORDS = {
    "AbsolutePathError": "an absolute path",
    "OutsideDestinationError": "a path outside the folder",
    "SpecialFileError": "a device or fifo",
    "AbsoluteLinkError": "a link to an absolute path",
    "LinkOutsideDestinationError": "a link pointing outside the folder",
}


@dataclass(frozen=True)
class TarRules:
    """What one kind of archive may hold beyond the checks every archive gets."""

    links: bool = True  # links that stay inside the folder (a Blender release has them)
    plain_names: bool = False  # no backslash, NUL, drive colon, empty or "." parts
    folders: tuple[str, ...] = ()  # every member under one of these top folders (empty: anywhere)
    loose: tuple[str, ...] = ()  # names allowed outside `folders` (a manifest)
    max_member_bytes: int | None = None
    max_total_bytes: int | None = None
    max_members: int | None = None
    unique: bool = False  # a name that appears twice refuses the archive


def inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def member_problem(member: tarfile.TarInfo, target: str, rules: TarRules, use_filter: bool = False) -> str:
    """Why unpacking `member` into `target` (a real path) is refused, in a few words, or ''."""
    name = member.name
    what = repr(name[:120])
    if name.startswith(("/", "\\")) or os.path.isabs(name) or re.match(r"^[A-Za-z]:", name):
        return f"{what} is an absolute path"
    parts = name.rstrip("/").split("/")
    if rules.plain_names:
        if not name or "\\" in name or "\x00" in name or ":" in name[:3]:
            return f"{what} is an odd path"
        if any(p in ("", ".", "..") for p in parts):
            return f"{what} is a path outside the folder"
    dest = os.path.realpath(os.path.join(target, name))
    if not inside(dest, target):
        return f"{what} is a path outside the folder"
    if rules.folders and name not in rules.loose and parts[0] not in rules.folders:
        return f"{what} is not in one of the folders {', '.join(rules.folders)}"
    if member.ischr() or member.isblk() or member.isfifo():
        return f"{what} is a device or fifo"
    if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        return f"{what} is a special file"
    if member.issym() or member.islnk():
        if not rules.links:
            return f"{what} is a link"
        link = member.linkname
        if os.path.isabs(link) or link.startswith("\\"):
            return f"{what} is a link to an absolute path"
        base = os.path.dirname(dest) if member.issym() else target
        if not inside(os.path.realpath(os.path.join(base, link)), target):
            return f"{what} is a link pointing outside the folder"
    if rules.max_member_bytes is not None and member.size > rules.max_member_bytes:
        return f"{what} is {member.size} bytes, over {rules.max_member_bytes}"
    if use_filter:
        try:
            tarfile.data_filter(member, target)  # type: ignore[attr-defined]
        except tarfile.TarError as exc:  # tarfile.FilterError
            return f"{what} is {FILTER_WORDS.get(type(exc).__name__, str(exc))}"
    return ""


def check_members(
    members: Iterable[tarfile.TarInfo],
    target: str,
    rules: TarRules,
    use_filter: bool = False,
    first_only: bool = False,
) -> tuple[list[tarfile.TarInfo], list[str]]:
    """(the members read, what is wrong with the archive): every member judged, the archive's
    bounds kept while reading (it stops past `max_members`); `first_only` stops at the first
    problem. Nothing is written."""
    read: list[tarfile.TarInfo] = []
    problems: list[str] = []
    seen: set[str] = set()
    total = 0
    for member in members:
        read.append(member)
        if rules.max_members is not None and len(read) > rules.max_members:
            problems.append(f"it has more than {rules.max_members} members")
            break
        problem = member_problem(member, target, rules, use_filter)
        key = member.name.rstrip("/")
        if not problem and rules.unique:
            problem = f"{key[:120]!r} appears twice" if key in seen else ""
            seen.add(key)
        total += member.size
        if not problem and rules.max_total_bytes is not None and total > rules.max_total_bytes:
            problem = f"its files add up to more than {rules.max_total_bytes} bytes"
        if problem:
            problems.append(problem)
            if first_only:
                break
    return read, problems


def defused(member: tarfile.TarInfo) -> tarfile.TarInfo:
    """What the data filter does to modes and owners, for Pythons without it."""
    member = copy.copy(member)
    if member.mode is not None:
        member.mode &= ~(stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX | stat.S_IWGRP | stat.S_IWOTH)
    member.uid, member.gid, member.uname, member.gname = os.getuid(), os.getgid(), "", ""
    return member


# A Blender release holds links (libraries, its own folders) that stay inside it; no bounds.
RELEASE = TarRules(links=True)


# ---------------------------------------------------------------- versions


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version)[:3])


def nearest_patch(wanted: str, available: list[str]) -> str | None:
    """The exact version if available, else the nearest patch of the same major.minor (newer on a tie)."""
    want = version_tuple(wanted)
    same = [v for v in available if re.fullmatch(r"\d+\.\d+\.\d+", v) and version_tuple(v)[:2] == want[:2]]
    if not same:
        return None
    return min(same, key=lambda v: (abs(version_tuple(v)[2] - want[2]), -version_tuple(v)[2]))


def python_for_bpy(version: str) -> str:
    """The Python minor version Blender's official bpy wheels need."""
    return "3.13" if version_tuple(version)[:2] >= (5, 1) else "3.11"


# ---------------------------------------------------------------- the release archive


def unpack_tarball(tarball: str, target: str, name: str, use_filter: bool | None = None) -> None:
    """Unpack a Blender archive into `target`, refusing archives that could write outside it.

    Every member is checked before anything is written: absolute paths, `..`, links pointing
    outside, devices and fifos refuse the whole archive (JobFailed "unsafe_archive"). Python's
    tar "data" filter (3.9.17+, 3.10.12+, 3.11.4+, 3.12+; the default from 3.14) judges it too
    and guards the extraction itself; on older Pythons the same checks run by hand, again for
    each member as it is written (with the links already made on disk).
    """
    if use_filter is None:
        use_filter = hasattr(tarfile, "data_filter")
    os.makedirs(target, exist_ok=True)
    target = os.path.realpath(target)

    def refuse(problems: list[str]) -> JobFailed:
        more = f" and {len(problems) - 3} more" if len(problems) > 3 else ""
        return JobFailed(
            "unsafe_archive",
            f"The Blender archive {name} was refused: {'; '.join(problems[:3])}{more}. "
            "Nothing of it was unpacked.",
        )

    try:
        with tarfile.open(tarball) as archive:
            members = archive.getmembers()
            _read, problems = check_members(members, target, RELEASE, use_filter)
            if problems:
                raise refuse(problems)
            if use_filter:
                archive.extractall(target, members=members, filter="data")  # type: ignore[call-arg]
                return
            for member in members:
                problem = member_problem(member, target, RELEASE)
                if problem:
                    raise refuse([problem])
                archive.extract(defused(member), target)
    except tarfile.TarError as exc:
        if type(exc).__name__ in FILTER_WORDS or isinstance(exc, getattr(tarfile, "FilterError", ())):
            raise refuse([f"{type(exc).__name__}: {exc}"]) from exc
        raise JobFailed("download", f"The Blender archive {name} could not be unpacked: {exc}") from exc
    except (OSError, EOFError) as exc:
        raise JobFailed("download", f"The Blender archive {name} could not be unpacked: {exc}") from exc


# ---------------------------------------------------------------- the sources


class BlenderInstall:
    """Gets Blender for one job on this machine, logging each step to the job's log."""

    def __init__(self, spec: dict[str, Any], work: str, log: JobLog, poster: Poster) -> None:
        self.spec = spec
        self.work = work
        self.log = log
        self.poster = poster

    def get_blender(self) -> list[str]:
        """The command that starts Blender, from the first source that works, in the spec's order."""
        wanted = self.spec["blender_version"]
        refused: JobFailed | None = None
        for source in self.spec.get("blender_sources", []):
            kind = source.get("kind", "")
            try:
                if kind in ("bucket", "url"):
                    command = self.blender_from_tarball(source)
                elif kind == "pypi":
                    command = self.blender_from_pypi(source)
                else:
                    self.log.say(f"unknown Blender source kind {kind!r}; skipped")
                    continue
            except JobFailed as exc:
                self.log.say(f"Blender from {kind} not usable: {exc.cause}")
                if exc.kind in ("unsafe_archive", "credentials_expired") and refused is None:
                    refused = exc
                continue
            self.log.say(f"Blender {source.get('version', wanted)} ready (from {kind})")
            return command
        if refused is not None:  # say what went wrong with the source that was refused, not "none worked"
            raise JobFailed(refused.kind, f"{refused.cause} No other source of Blender {wanted} worked.")
        raise JobFailed("download", f"Could not get Blender {wanted} from any source.")

    def blender_from_tarball(self, source: dict[str, Any]) -> list[str]:
        version = source["version"]
        if version != self.spec["blender_version"]:
            self.log.say(
                f"Blender {self.spec['blender_version']} is not available; using {version}, "
                "the nearest release of the same series"
            )
        name = urllib.parse.unquote(urllib.parse.urlsplit(source["url"]).path.rsplit("/", 1)[-1])
        if not name.endswith((".tar.xz", ".tar.gz", ".tar.bz2", ".tar")):
            name = f"blender-{version}-linux-x64.tar.xz"
        tarball = os.path.join(self.work, "downloads", name)
        self.log.say(f"downloading Blender {version} from {source['kind']} ({name})")
        download(source["url"], tarball, source.get("sha256", ""), self.log.say, name)
        self.log.say(f"Blender tarball verified (sha256 {sha256_file(tarball)[:16]}...); unpacking")
        target = os.path.join(self.work, "blender")
        shutil.rmtree(target, ignore_errors=True)
        try:
            unpack_tarball(tarball, target, name)
        except JobFailed:
            shutil.rmtree(target, ignore_errors=True)
            raise
        for root, _dirs, files in os.walk(target):
            if "blender" in files and os.access(os.path.join(root, "blender"), os.X_OK):
                if source["kind"] == "url":
                    self.cache_upload(tarball, name)
                return [os.path.join(root, "blender")]
        raise JobFailed("download", f"The Blender archive {name} has no blender program.")

    def blender_from_pypi(self, source: dict[str, Any]) -> list[str]:
        wanted = (source.get("package") or f"bpy=={source['version']}").split("==")[-1]
        try:
            releases = json.loads(
                with_retries("PyPI lookup", lambda: http_request("GET", PYPI_JSON), self.log.say)
            )
        except (OSError, ValueError, http.client.HTTPException) as exc:
            raise JobFailed("download", f"PyPI could not be reached: {exc}") from exc
        version = nearest_patch(wanted, list(releases.get("releases", {})))
        if version is None:
            raise JobFailed("download", f"PyPI has no bpy {wanted} or other release of that series.")
        if version != wanted:
            self.log.say(
                f"bpy {wanted} is not on PyPI; using {version}, the nearest release of the same series"
            )
        python = shutil.which("python" + python_for_bpy(version))
        if python is None:
            self.install_python(python_for_bpy(version))
            python = shutil.which("python" + python_for_bpy(version))
        if python is None:
            raise JobFailed(
                "download", f"Python {python_for_bpy(version)}, which bpy {version} needs, is missing."
            )
        venv = os.path.join(self.work, "bpy-venv")
        wheels = os.path.join(self.work, "downloads", "wheels")
        vpython = os.path.join(venv, "bin", "python")
        for step in (
            [python, "-m", "venv", venv],
            [vpython, "-m", "pip", "download", "--no-deps", "-d", wheels, f"bpy=={version}"],
            [vpython, "-m", "pip", "install", "--find-links", wheels, f"bpy=={version}"],
        ):
            self.log.say("running " + " ".join(os.path.basename(a) if a == step[0] else a for a in step))
            if self.run_logged(step) != 0:
                raise JobFailed("download", f"Installing bpy {version} from PyPI failed.")
        for wheel in sorted(os.listdir(wheels)):
            if wheel.startswith("bpy-") and wheel.endswith(".whl"):
                self.cache_upload(os.path.join(wheels, wheel), wheel)
        return [vpython, os.path.join(HERE, "blender_launcher.py")]

    def install_python(self, minor: str) -> None:
        for tool, args in (
            ("dnf", ["install", "-y", f"python{minor}"]),
            ("apt-get", ["install", "-y", f"python{minor}-venv"]),
        ):
            if shutil.which(tool):
                self.log.say(f"installing Python {minor} with {tool}")
                self.run_logged([tool, *args])
                return

    def run_logged(self, command: list[str]) -> int:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert proc.stdout is not None
        for raw in proc.stdout:
            self.log.write(raw.decode("utf-8", "replace"))
        return proc.wait()

    def cache_upload(self, path: str, name: str) -> None:
        """Hand a Blender build fetched from outside the bucket to the add-on, to keep for next time.

        No checksum goes with it: the add-on keeps a build only when its own hash of the object
        matches the official checksum it fetched itself, so nothing the machine says counts.
        """
        try:
            with open(path, "rb") as handle:
                body = handle.read()
            with_retries(
                "upload of the Blender build",
                lambda: self.poster.put(f"blender-cache/{name}", body, 600),
                self.log.say,
            )
            self.log.say(f"uploaded {name} to the job's blender-cache for later boots")
        except (OSError, http.client.HTTPException) as exc:
            self.log.say(f"could not keep {name} in the bucket ({exc}); the job goes on")
