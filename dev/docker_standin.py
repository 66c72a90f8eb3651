"""A stand-in for the Docker Engine API, so moto's AWS Batch runs each job as a local process.

moto's Batch (server mode) runs every job, and every child of an array job, through the Docker
Engine API of whatever `DOCKER_HOST` names when the moto server starts. This server answers the
calls moto makes (docker-py's `containers.run(detach=True)`, then `reload`, `logs`, `wait`,
`kill`, `remove`) and runs each "container" as a local process instead:

- in its own throwaway machine folder under `base_dir` (cwd, `HOME` and `TMPDIR`), removed with
  the container unless `keep_folders`; the image, mounts and networks are recorded, not used;
- with the container's environment (what the job definition and overrides give, which moto
  passes) on top of a bare one (`PATH`, `LANG`): the caller's AWS credentials never leak in;
- with the variables AWS Batch sets and moto does not. moto passes `AWS_BATCH_JOB_ID`, which
  for an array child is `<parent-id>:<index>`, and no other Batch variable. The stand-in adds
  `AWS_BATCH_JOB_ARRAY_INDEX` (from that id, as the container's name spells it),
  `AWS_BATCH_JOB_ARRAY_SIZE`, `AWS_BATCH_JOB_ATTEMPT`, `AWS_BATCH_JQ_NAME` and
  `AWS_BATCH_CE_NAME` (asked of moto itself:
  `describe_jobs` / `describe_job_queues` at `moto_url` in `region`, so set `moto_url` once moto
  is up and before submitting). moto's `MOTO_HOST`/`MOTO_PORT`/`MOTO_HTTP_ENDPOINT` (meant for
  host.docker.internal) are pointed at `moto_url`;
- logs are the process's stdout and stderr, line by line with timestamps (docker's multiplexed
  stream, bounded); `wait` is its exit code (128 + signal when killed); `kill` signals its whole
  process group; when the main process exits, what is left of its group is killed, as Docker
  does when a container's first process ends.

Only a unix socket in a private (0700) folder is served, never TCP: whoever can reach a Docker
API can run commands. `close()` (or leaving the `with` block) kills every process group still
running. Endpoints moto is not known to call answer 404 and are listed in `unhandled`.

What the stand-in cannot cover, moto's own gaps that a harness must play AWS's part for:

- a managed compute environment gets EC2 instances only for its `desiredvCpus` at creation
  (none with `minvCpus` 0), never per job, and those run no user data;
- a failed job or child is never retried (`retryStrategy` is ignored, one attempt only);
- terminating or cancelling an array job's parent stops none of its children, and a parent
  whose child failed stays SUBMITTED (it becomes SUCCEEDED only when all children did);
- `containerOverrides.environment` is one list shared by every child, and each child (and
  each describe) appends its `AWS_BATCH_JOB_ID` to it: `describe_jobs` shows the variable once
  per append, and a child's container may get a sibling's id. The stand-in takes the job id
  from the container's name instead (`<job name>-<parent id>-<index>`), which is per child;
- `describe_jobs` shows no `container.exitCode` (`list_jobs` summaries do);
- `containerOverrides.resourceRequirements` are kept but shown nowhere (`describe_jobs` gives the
  definition's vCPUs and memory) and no resource reaches Docker: a container's size is what a
  front before moto adds to `describe_jobs` (`Machine.resources`), recorded, never enforced;
- an array job's parent gets its size only once moto has started every child, so a child that
  starts early waits for it (the stand-in asks again) before `AWS_BATCH_JOB_ARRAY_SIZE` is known.

Use (a test fixture; `tests/unit/test_batch_emulation.py` does this):

    with DockerStandin(tmp / "machines") as standin, contextlib.ExitStack() as stack:
        with pytest.MonkeyPatch.context() as env:  # moto reads DOCKER_HOST when it starts
            env.setenv("DOCKER_HOST", standin.docker_host)
            url = stack.enter_context(moto_server(log))
        standin.moto_url = url
        ... create a compute environment, queue and job definition; submit_job ...
        standin.machines()  # what ran: folders, environments, exit codes, logs
        standin.running()   # what still runs

By hand: `python -m dev.docker_standin --moto-url http://127.0.0.1:5000` prints the
`DOCKER_HOST` to start `python -m moto.server` with.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socketserver
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from dev import process_sweep

log = logging.getLogger(__name__)

API_VERSION = "1.45"
ARRAY_SIZE_WAIT_S = 20.0  # how long a child waits for moto to know its array's size
LOG_LIMIT_BYTES = 4 << 20  # per container; later lines are dropped with a note
BATCH_ID = re.compile(r"^(?P<parent>[^:]+):(?P<index>\d+)$")
# moto names a job's container `<job name>-<job id>`, an array child's id `<parent id>:<index>`
# written with a dash: `<job name>-<parent id>-<index>`. Job ids are UUIDs.
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
CONTAINER_NAME = re.compile(rf"-(?P<job>{_UUID})(?:-(?P<index>\d+))?$")


@dataclass
class Machine:
    """One container: what moto asked for, and what the local process did."""

    id: str
    name: str
    image: str
    command: list[str]
    env: dict[str, str]  # the container's environment as moto created it
    folder: Path
    created_at: float
    host_config: dict[str, Any] = field(default_factory=dict)
    process_env: dict[str, str] = field(default_factory=dict)  # what the process was given
    # What Batch gave the job (type -> value: VCPU, MEMORY in MiB, GPU), where `describe_jobs`
    # says (a front such as batch_simulator.BatchFront; moto alone does not); not enforced.
    resources: dict[str, str] = field(default_factory=dict)
    pid: int | None = None
    started_at: float | None = None
    finished_at: float | None = None
    exit_code: int | None = None
    signals: list[int] = field(default_factory=list)  # what `kill` sent
    removed: bool = False
    error: str = ""
    _claimed: bool = False  # a start is under way or done: a second one is refused
    _logs: list[tuple[float, int, bytes]] = field(default_factory=list, repr=False)
    _log_bytes: int = 0
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _reaped: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _exited: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def status(self) -> str:
        if self.started_at is None:
            return "created"
        return "exited" if self._exited.is_set() else "running"

    @property
    def running(self) -> bool:
        return self.status == "running"

    def logs(self, stdout: bool = True, stderr: bool = True) -> str:
        """The output so far, stdout and stderr lines in the order they were read."""
        with self._lock:
            lines = [
                line for _, stream, line in self._logs if (stream == 1 and stdout) or (stream == 2 and stderr)
            ]
        return b"".join(lines).decode(errors="replace")

    def wait(self, timeout: float | None = None) -> bool:
        """Whether the process has exited (and its output is all read) within `timeout`."""
        return self._exited.wait(timeout)

    def _add_log(self, stream: int, line: bytes) -> None:
        with self._lock:
            if self._log_bytes >= LOG_LIMIT_BYTES:
                return
            self._log_bytes += len(line)
            if self._log_bytes >= LOG_LIMIT_BYTES:
                line = b"[docker stand-in: log limit reached, later output dropped]\n"
            self._logs.append((time.time(), stream, line))


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    block_on_close = False
    # moto opens a Docker client per child, all at once for an array job: with socketserver's
    # backlog of 5 the 6th connect fails (EAGAIN on a unix socket) and moto drops that child.
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if isinstance(sys.exc_info()[1], ConnectionError):  # moto went away mid-request: not our bug
            return
        super().handle_error(request, client_address)


class DockerStandin:
    """The Docker Engine API on a private unix socket; each container runs as a local process."""

    def __init__(
        self,
        base_dir: Path | str | None = None,
        *,
        moto_url: str | None = None,
        region: str = "us-east-1",
        keep_folders: bool = False,
        credentials: tuple[str, str] = ("AKIAEXAMPLETESTKEY00", "test-secret-not-real"),
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self._own_base = base_dir is None
        self.base_dir = Path(base_dir) if base_dir is not None else Path(tempfile.mkdtemp(prefix="machines-"))
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.moto_url = moto_url
        self.region = region
        self.keep_folders = keep_folders
        self.credentials = credentials
        # Variables every container gets on top of the bare environment (a harness's shims on
        # PATH, say); "{folder}" in a value becomes the container's machine folder.
        self.extra_env = dict(extra_env or {})
        self.unhandled: list[str] = []  # "METHOD /path" of calls this stand-in does not answer
        self.errors: list[str] = []  # starts that failed (a Batch variable it could not learn)
        self._machines: dict[str, Machine] = {}
        self._lock = threading.Lock()
        self._batch_client: Any = None
        self._socket_dir = Path(tempfile.mkdtemp(prefix="docker-standin-"))  # 0700
        self.socket_path = self._socket_dir / "docker.sock"
        self._server = _UnixServer(str(self.socket_path), _handler_for(self))
        self._thread = threading.Thread(target=self._server.serve_forever, name="docker-standin", daemon=True)
        self._thread.start()
        self._closed = False

    @property
    def docker_host(self) -> str:
        """The value for `DOCKER_HOST` in the environment moto's server starts with."""
        return f"unix://{self.socket_path}"

    def machines(self) -> list[Machine]:
        """Every container created so far (removed ones included), oldest first."""
        with self._lock:
            return sorted(self._machines.values(), key=lambda m: m.created_at)

    def running(self) -> list[Machine]:
        return [m for m in self.machines() if m.running]

    def close(self) -> None:
        """Kill every process still running, stop serving, and remove what the stand-in made."""
        if self._closed:
            return
        self._closed = True
        machines = self.machines()
        for machine in machines:
            _signal_group(machine, signal.SIGKILL)
        for machine in machines:
            if machine.started_at is not None and not machine.wait(10):
                log.warning("docker stand-in: %s did not exit after SIGKILL", machine.name)
        self._server.shutdown()
        self._server.server_close()
        shutil.rmtree(self._socket_dir, ignore_errors=True)
        if not self.keep_folders:
            for machine in machines:
                shutil.rmtree(machine.folder, ignore_errors=True)
            if self._own_base:
                shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> DockerStandin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the containers ---------------------------------------------------------------------

    def find(self, ref: str) -> Machine | None:
        """A container by id, unique id prefix or name, as Docker resolves them."""
        ref = ref.lstrip("/")
        with self._lock:
            if ref in self._machines:
                return self._machines[ref]
            named = [m for m in self._machines.values() if m.name == ref and not m.removed]
            if named:
                return named[0]
            prefixed = [m for m in self._machines.values() if m.id.startswith(ref)]
            return prefixed[0] if len(prefixed) == 1 else None

    def create(self, name: str, config: dict[str, Any]) -> Machine:
        command = list(config.get("Entrypoint") or []) + list(config.get("Cmd") or [])
        if not command:
            raise _ApiError(400, "no command specified")
        env: dict[str, str] = {}
        for item in config.get("Env") or []:
            key, _, value = str(item).partition("=")
            env[key] = value
        container_id = secrets.token_hex(32)
        name = name or f"standin_{container_id[:12]}"
        with self._lock:
            if any(m.name == name and not m.removed for m in self._machines.values()):
                raise _ApiError(409, f'Conflict. The container name "/{name}" is already in use')
            folder = self.base_dir / re.sub(r"[^A-Za-z0-9_.-]", "_", name)
            if folder.exists():
                folder = self.base_dir / f"{folder.name}-{container_id[:12]}"
            folder.mkdir(parents=True)
            (folder / "tmp").mkdir()
            machine = Machine(
                id=container_id,
                name=name,
                image=str(config.get("Image", "")),
                command=command,
                env=env,
                folder=folder,
                created_at=time.time(),
                host_config=dict(config.get("HostConfig") or {}),
            )
            self._machines[container_id] = machine
        return machine

    def start(self, machine: Machine) -> None:
        with machine._lock:
            if machine._claimed:
                raise _ApiError(304, "container already started")
            machine._claimed = True
        try:
            batch_env, machine.resources = self._batch_variables(machine.name, machine.env)
        except Exception as err:
            machine._claimed = False
            machine.error = f"cannot set the Batch variables: {err}"
            self.errors.append(f"{machine.name}: {machine.error}")
            log.error("docker stand-in: %s: %s", machine.name, machine.error)
            raise _ApiError(500, machine.error) from err
        env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "LANG": "C.UTF-8",
            "HOME": str(machine.folder),
            "TMPDIR": str(machine.folder / "tmp"),
            "HOSTNAME": machine.id[:12],
            **{
                name: value.replace("{folder}", str(machine.folder)) for name, value in self.extra_env.items()
            },
            **machine.env,
            **self._moto_variables(),
            **batch_env,
            **process_sweep.inherited(),
            process_sweep.MACHINE_MARK: str(machine.folder),  # how its strays are found (_reap)
        }
        machine.process_env = env
        try:
            process = subprocess.Popen(
                machine.command,
                cwd=machine.folder,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # its own process group: kill reaches its children too
            )
        except OSError as err:
            machine._claimed = False
            machine.error = str(err)
            raise _ApiError(400, f"failed to start {machine.command[0]!r}: {err}") from err
        machine._process = process
        machine.pid = process.pid
        machine.started_at = time.time()
        readers = [
            threading.Thread(target=_read_lines, args=(machine, stream, pipe), daemon=True)
            for stream, pipe in ((1, process.stdout), (2, process.stderr))
        ]
        for reader in readers:
            reader.start()
        threading.Thread(target=_reap, args=(machine, readers), daemon=True).start()

    def kill(self, machine: Machine, sig: int) -> None:
        if not machine.running:
            raise _ApiError(409, f"Container {machine.id} is not running")
        machine.signals.append(sig)
        _signal_group(machine, sig)

    def remove(self, machine: Machine, force: bool) -> None:
        if machine.running:
            if not force:
                raise _ApiError(409, f"cannot remove container {machine.name}: container is running")
            _signal_group(machine, signal.SIGKILL)
            machine.wait(10)
        machine.removed = True
        if not self.keep_folders:
            shutil.rmtree(machine.folder, ignore_errors=True)

    def _moto_variables(self) -> dict[str, str]:
        """moto tells containers where it is (as seen from Docker); a local process sees it here."""
        if not self.moto_url:
            return {}
        url = urlsplit(self.moto_url)
        host = f"{url.scheme}://{url.hostname}"
        port = str(url.port or (443 if url.scheme == "https" else 80))
        return {"MOTO_HOST": host, "MOTO_PORT": port, "MOTO_HTTP_ENDPOINT": f"{host}:{port}"}

    def _batch_variables(self, name: str, env: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
        """What AWS Batch sets in a job's container and moto does not, asked of moto itself; and
        the job's resources as `describe_jobs` gives them (type -> value, empty where it does not)."""
        job_id = env.get("AWS_BATCH_JOB_ID")
        if not job_id:
            return {}, {}  # not a Batch container job (or a multi-node one): nothing to add
        # With containerOverrides.environment, moto's children share one list that every child
        # (and every describe) appends its AWS_BATCH_JOB_ID to: the container's name is the
        # reliable source of which child this is.
        named = CONTAINER_NAME.search(name)
        if named:
            job_id = named["job"] + (f":{int(named['index'])}" if named["index"] is not None else "")
        found: dict[str, str] = {"AWS_BATCH_JOB_ID": job_id}
        array = BATCH_ID.match(job_id)
        if array:
            found["AWS_BATCH_JOB_ARRAY_INDEX"] = str(int(array["index"]))
        if not self.moto_url:
            if array:
                raise RuntimeError("no moto_url: the array size can only be asked of moto")
            return {**found, "AWS_BATCH_JOB_ATTEMPT": "1"}, {}
        batch = self._batch()
        ids = [job_id] + ([array["parent"]] if array else [])
        # moto gives the parent its children (and so its size) only once it has created and
        # started every one of them: a child that starts first asks again for a while. On AWS
        # the variables are there from the start.
        deadline = time.monotonic() + ARRAY_SIZE_WAIT_S
        while True:
            jobs = {job["jobId"]: job for job in batch.describe_jobs(jobs=ids)["jobs"]}
            parent = jobs.get(array["parent"]) if array else None
            if (
                not array
                or "size" in (parent or {}).get("arrayProperties", {})
                or time.monotonic() > deadline
            ):
                break
            time.sleep(0.05)
        job = jobs.get(job_id)
        if job is None:
            raise RuntimeError(f"moto does not know job {job_id} in {self.region}")
        found["AWS_BATCH_JOB_ATTEMPT"] = str(max(1, len(job.get("attempts") or [])))
        if array:
            parent = jobs.get(array["parent"])
            size = (parent or {}).get("arrayProperties", {}).get("size")
            if size is None:
                raise RuntimeError(f"moto does not know the size of array job {array['parent']}")
            found["AWS_BATCH_JOB_ARRAY_SIZE"] = str(size)
        queue_arn = job.get("jobQueue", "")
        if queue_arn:
            found["AWS_BATCH_JQ_NAME"] = queue_arn.rsplit("/", 1)[-1]
            queues = batch.describe_job_queues(jobQueues=[queue_arn])["jobQueues"]
            order = sorted(queues[0]["computeEnvironmentOrder"], key=lambda e: e["order"]) if queues else []
            if order:
                found["AWS_BATCH_CE_NAME"] = order[0]["computeEnvironment"].rsplit("/", 1)[-1]
        asked = job.get("container", {}).get("resourceRequirements") or []
        return found, {str(r["type"]): str(r["value"]) for r in asked}

    def _batch(self) -> Any:
        with self._lock:
            if self._batch_client is None:
                import boto3
                from botocore.config import Config

                self._batch_client = boto3.session.Session().client(
                    "batch",
                    region_name=self.region,
                    endpoint_url=self.moto_url,
                    aws_access_key_id=self.credentials[0],
                    aws_secret_access_key=self.credentials[1],
                    config=Config(connect_timeout=5, read_timeout=20, retries={"total_max_attempts": 3}),
                )
            return self._batch_client


# --- the processes ----------------------------------------------------------------------------


def _read_lines(machine: Machine, stream: int, pipe: Any) -> None:
    with pipe:
        for line in iter(pipe.readline, b""):
            machine._add_log(stream, line)


def _reap(machine: Machine, readers: list[threading.Thread]) -> None:
    """Wait for the main process, kill what is left of its group, then reap it.

    The group is killed before the leader is reaped, so its id cannot have been reused yet.
    """
    process = machine._process
    assert process is not None
    with contextlib.suppress(ChildProcessError):
        os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)
    with machine._lock:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        # And what left the group: a process of a session of its own (the supervisor's Blender).
        process_sweep.end_marked(process_sweep.MACHINE_MARK, str(machine.folder))
        code = process.wait()
        machine._reaped = True
    for reader in readers:
        reader.join(timeout=5)
    machine.exit_code = 128 - code if code < 0 else code
    machine.finished_at = time.time()
    machine._exited.set()


def _signal_group(machine: Machine, sig: int) -> None:
    process = machine._process
    if process is None:
        return
    with machine._lock:
        if not machine._reaped:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, sig)


def _signal_number(value: str | None) -> int:
    if not value:
        return int(signal.SIGKILL)
    if value.isdigit():
        return int(value)
    name = value.upper()
    return int(signal.Signals[name if name.startswith("SIG") else f"SIG{name}"])


# --- the HTTP side ----------------------------------------------------------------------------


class _ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _rfc3339(moment: float | None) -> str:
    if moment is None:
        return "0001-01-01T00:00:00Z"
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


def _inspect(machine: Machine) -> dict[str, Any]:
    running = machine.running
    return {
        "Id": machine.id,
        "Name": f"/{machine.name}",
        "Created": _rfc3339(machine.created_at),
        "Path": machine.command[0],
        "Args": machine.command[1:],
        "Image": f"sha256:{'0' * 64}",
        "State": {
            "Status": machine.status,
            "Running": running,
            "Paused": False,
            "Restarting": False,
            "OOMKilled": False,
            "Dead": False,
            "Pid": machine.pid if running else 0,
            "ExitCode": machine.exit_code or 0,
            "Error": machine.error,
            "StartedAt": _rfc3339(machine.started_at),
            "FinishedAt": _rfc3339(machine.finished_at),
        },
        "Config": {
            "Hostname": machine.id[:12],
            "Image": machine.image,
            "Cmd": machine.command,
            "Env": [f"{k}={v}" for k, v in machine.env.items()],
            "Tty": False,
            "OpenStdin": False,
            "WorkingDir": str(machine.folder),
            "Labels": {},
        },
        "HostConfig": machine.host_config,
        "Mounts": [],
        "NetworkSettings": {
            "IPAddress": "127.0.0.1",
            "Networks": {"bridge": {"IPAddress": "127.0.0.1"}},
        },
    }


def _log_frames(machine: Machine, query: dict[str, str]) -> bytes:
    """Docker's multiplexed log stream (no TTY): an 8-byte header per frame, then the line."""
    want = {1: query.get("stdout") in {"1", "true"}, 2: query.get("stderr") in {"1", "true"}}
    since = float(query.get("since") or 0)
    until = float(query.get("until") or 0)
    timestamps = query.get("timestamps") in {"1", "true"}
    with machine._lock:
        entries = [e for e in machine._logs if want[e[1]] and e[0] >= since and (not until or e[0] < until)]
    tail = query.get("tail", "all")
    if tail.isdigit():
        entries = entries[-int(tail) :] if int(tail) else []
    out = bytearray()
    for moment, stream, line in entries:
        payload = (_rfc3339(moment).encode() + b" " + line) if timestamps else line
        out += struct.pack(">BxxxL", stream, len(payload)) + payload
    return bytes(out)


Route = Callable[["_Handler", dict[str, str], re.Match[str]], None]


def _handler_for(standin: DockerStandin) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        pass

    Handler.standin = standin
    return Handler


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    standin: DockerStandin
    body: bytes = b""

    def address_string(self) -> str:
        return "unix"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("docker stand-in: " + format, *args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        path = re.sub(r"^/v\d+\.\d+(?=/)", "", unquote(url.path))
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            for verb, pattern, route in ROUTES:
                match = re.fullmatch(pattern, path)
                if match and (verb == method or (verb == "GET" and method == "HEAD")):
                    self.body = body
                    route(self, query, match)
                    return
            self.standin.unhandled.append(f"{method} {path}")
            log.warning("docker stand-in: no answer for %s %s", method, path)
            raise _ApiError(404, f"the docker stand-in does not implement {method} {path}")
        except _ApiError as err:
            self.reply(err.status, {"message": str(err)})
        except Exception as err:  # a bug here must reach moto as an error, not a hang
            log.exception("docker stand-in: %s %s failed", method, path)
            self.reply(500, {"message": f"docker stand-in: {err}"})

    def reply(self, status: int, payload: Any = None, raw: bytes | None = None, kind: str = "") -> None:
        data = raw if raw is not None else (b"" if payload is None else json.dumps(payload).encode())
        self.send_response(status)
        if data or kind:
            self.send_header("Content-Type", kind or "application/json")
        self.send_header("Api-Version", API_VERSION)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD" and status not in (204, 304):
            self.wfile.write(data)

    def machine(self, match: re.Match[str]) -> Machine:
        found = self.standin.find(match["ref"])
        if found is None:
            raise _ApiError(404, f"No such container: {match['ref']}")
        return found

    # --- the endpoints ------------------------------------------------------------------------

    def ping(self, query: dict[str, str], match: re.Match[str]) -> None:
        self.reply(200, raw=b"OK", kind="text/plain")

    def version(self, query: dict[str, str], match: re.Match[str]) -> None:
        self.reply(
            200,
            {
                "Version": "docker-standin",
                "ApiVersion": API_VERSION,
                "MinAPIVersion": "1.24",
                "Os": "linux",
                "Arch": os.uname().machine,
                "KernelVersion": os.uname().release,
                "Components": [],
            },
        )

    def info(self, query: dict[str, str], match: re.Match[str]) -> None:
        running = len(self.standin.running())
        total = len([m for m in self.standin.machines() if not m.removed])
        self.reply(200, {"ID": "docker-standin", "Containers": total, "ContainersRunning": running})

    def create(self, query: dict[str, str], match: re.Match[str]) -> None:
        config = json.loads(self.body or b"{}")
        machine = self.standin.create(query.get("name", ""), config)
        self.reply(201, {"Id": machine.id, "Warnings": []})

    def list_containers(self, query: dict[str, str], match: re.Match[str]) -> None:
        every = query.get("all") in {"1", "true"}
        shown = [m for m in self.standin.machines() if not m.removed and (every or m.running)]
        self.reply(
            200,
            [
                {
                    "Id": m.id,
                    "Names": [f"/{m.name}"],
                    "Image": m.image,
                    "State": m.status,
                    "Command": " ".join(m.command),
                }
                for m in shown
            ],
        )

    def inspect(self, query: dict[str, str], match: re.Match[str]) -> None:
        self.reply(200, _inspect(self.machine(match)))

    def start(self, query: dict[str, str], match: re.Match[str]) -> None:
        self.standin.start(self.machine(match))
        self.reply(204)

    def logs(self, query: dict[str, str], match: re.Match[str]) -> None:
        machine = self.machine(match)
        if query.get("follow") in {"1", "true"}:
            machine.wait()
        data = _log_frames(machine, query)
        self.reply(200, raw=data, kind="application/vnd.docker.multiplexed-stream")

    def wait(self, query: dict[str, str], match: re.Match[str]) -> None:
        machine = self.machine(match)
        if machine.started_at is not None:
            machine.wait()
        self.reply(200, {"StatusCode": machine.exit_code or 0, "Error": None})

    def kill(self, query: dict[str, str], match: re.Match[str]) -> None:
        self.standin.kill(self.machine(match), _signal_number(query.get("signal")))
        self.reply(204)

    def stop(self, query: dict[str, str], match: re.Match[str]) -> None:
        machine = self.machine(match)
        if not machine.running:
            self.reply(304)
            return
        self.standin.kill(machine, int(signal.SIGTERM))
        if not machine.wait(float(query.get("t") or 10)) and machine.running:
            self.standin.kill(machine, int(signal.SIGKILL))
            machine.wait(10)
        self.reply(204)

    def remove(self, query: dict[str, str], match: re.Match[str]) -> None:
        self.standin.remove(self.machine(match), force=query.get("force") in {"1", "true", "True"})
        self.reply(204)

    def image(self, query: dict[str, str], match: re.Match[str]) -> None:
        self.reply(200, {"Id": f"sha256:{'0' * 64}", "RepoTags": [match["name"]], "Os": "linux"})

    def pull(self, query: dict[str, str], match: re.Match[str]) -> None:
        name = f"{query.get('fromImage', '')}:{query.get('tag') or 'latest'}"
        self.reply(200, raw=json.dumps({"status": f"Pulled {name} (stand-in: nothing pulled)"}).encode())


_REF = r"(?P<ref>[^/]+)"
ROUTES: list[tuple[str, str, Route]] = [
    ("GET", r"/_ping", _Handler.ping),
    ("GET", r"/version", _Handler.version),
    ("GET", r"/info", _Handler.info),
    ("POST", r"/containers/create", _Handler.create),
    ("GET", r"/containers/json", _Handler.list_containers),
    ("GET", rf"/containers/{_REF}/json", _Handler.inspect),
    ("POST", rf"/containers/{_REF}/start", _Handler.start),
    ("GET", rf"/containers/{_REF}/logs", _Handler.logs),
    ("POST", rf"/containers/{_REF}/wait", _Handler.wait),
    ("POST", rf"/containers/{_REF}/kill", _Handler.kill),
    ("POST", rf"/containers/{_REF}/stop", _Handler.stop),
    ("DELETE", rf"/containers/{_REF}", _Handler.remove),
    ("GET", r"/images/(?P<name>.+)/json", _Handler.image),
    ("POST", r"/images/create", _Handler.pull),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--base", help="where machine folders go (default: a temporary folder)")
    parser.add_argument("--moto-url", help="moto server's URL, for the Batch variables moto does not set")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--keep-folders", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    with DockerStandin(
        args.base, moto_url=args.moto_url, region=args.region, keep_folders=args.keep_folders
    ) as s:
        print(f"DOCKER_HOST={s.docker_host}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
