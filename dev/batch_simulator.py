"""AWS Batch emulated for whole jobs: moto's Batch, each array child a machine on this computer.

moto runs every child's container through the Docker Engine API; `dev/docker_standin.py`
answers it and runs the container's command (the job definition's: fetch the boot script by
presigned URL, run it) as a local process in its own machine folder, with the variables Batch
sets (`AWS_BATCH_JOB_ARRAY_INDEX`, `..._SIZE`, `..._ATTEMPT`). What differs from a Batch
container on AWS is small and explicit, as in the instance simulator: `python3` is this
computer's Python (stdlib only, `-S`), `dnf`/`apt-get` only log, there is no `shutdown`
(a container has none either), the instance metadata service is unreachable (hop limit 1 keeps
it from containers on AWS too), and `blender` in the bucket's Blender tarball is the bpy
launcher (`make_blender_tarball`).

moto's gaps (see docker_standin's docstring): no EC2 instances for a managed compute
environment, no retries, terminating a parent reaches no child. Where a gap bites the harness
plays AWS's part: `rerun()` starts a child again with the next attempt number, as Batch's retry
strategy does after a lost host; the engine itself terminates every child (as AWS would).
moto 5.2 keeps a job's `containerOverrides.resourceRequirements` but shows them nowhere (its
`describe_jobs` gives the definition's vCPUs and memory) and passes no resources to Docker:
`BatchFront`, in front of moto for Batch only, adds to each described job the requirements its
definition and overrides make, as AWS shows them, so the product's calls and the stand-in (which
records them as `Machine.resources`) see a child's size. Nothing enforces it: a machine here is a
local process with no memory limit.

    with BatchSimulator(work_root) as sim:
        settings = sim.settings        # AwsSettings for the product, pointed at moto
        ... submit through cloud.aws.batch ...
        sim.kill_mid_frame(job, 0)     # a host lost in the middle of a frame
        sim.rerun(job, 0)              # Batch's retry
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cloud.aws.session import AwsSettings
from dev import process_sweep
from dev.aws_emulator import MOTO_SERVICES, moto_server
from dev.docker_standin import DockerStandin, Machine
from dev.simulator import StandInGpu, nvidia_smi
from dev.standin_path import machine_path

KEY_ID = "AKIAEMULATEDTEST0001"
SECRET = "emulatedSecretKeyForTestsOnly0123456789ab"
SHIMS = {
    "dnf": '#!/bin/sh\necho "(simulated) dnf $*"\n',
    "apt-get": '#!/bin/sh\necho "(simulated) apt-get $*"\n',
    # A container has none: the boot script's dead-man timer falls back to `sleep; poweroff`,
    # which finds this shim (the PATH holds no host power command: dev/standin_path.py), and
    # the timer dies with its machine (DockerStandin, `_reap_rerun`).
    "shutdown": '#!/bin/sh\necho "(container) no shutdown here"\nexit 1\n',
    "poweroff": "#!/bin/sh\nexit 1\n",
}


class BatchFront:
    """Batch's calls forwarded to moto, with AWS's answer where moto's falls short: each job in a
    DescribeJobs answer gets `container.resourceRequirements`, the vCPUs and memory moto reports
    for its definition overridden by what its SubmitJob's `containerOverrides` asked (an array's
    children take their parent's). A GPU requirement shows only where the overrides give one."""

    def __init__(self, moto_url: str) -> None:
        self.moto = urlsplit(moto_url)
        self.overrides: dict[str, list[dict[str, str]]] = {}  # job id -> its override requirements
        self._lock = threading.Lock()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="batch-front", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> BatchFront:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes | None
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """moto's (status, headers, body) for one request."""
        conn = http.client.HTTPConnection(self.moto.hostname or "127.0.0.1", self.moto.port or 80, timeout=60)
        try:
            conn.request(method, path, body, headers)
            response = conn.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            conn.close()

    def amend(self, path: str, request: bytes | None, status: int, answer: bytes) -> bytes:
        """What AWS would have answered: SubmitJob's overrides noted, DescribeJobs' filled in."""
        if status != 200:
            return answer
        operation = path.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1].lower()
        if operation == "submitjob":
            asked = json.loads(request or b"{}").get("containerOverrides", {}).get("resourceRequirements")
            if asked:
                with self._lock:
                    self.overrides[str(json.loads(answer)["jobId"])] = list(asked)
            return answer
        if operation != "describejobs":
            return answer
        document = json.loads(answer)
        for job in document.get("jobs", []):
            with self._lock:
                asked = self.overrides.get(str(job.get("jobId", "")).split(":", 1)[0])
            container = job.get("container")
            if asked is None or container is None:
                continue
            merged = {
                "VCPU": str(int(float(container.get("vcpus", 1)))),
                "MEMORY": str(container.get("memory", 512)),
            }
            merged.update({str(r["type"]): str(r["value"]) for r in asked})
            container["resourceRequirements"] = [{"type": k, "value": v} for k, v in merged.items()]
        return json.dumps(document).encode()

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        front = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # botocore keeps its connections open

            def log_message(self, *args: Any) -> None:
                return

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "expect")}
                status, answer_headers, answer = front.forward(self.command, self.path, headers, body)
                answer = front.amend(self.path, body, status, answer)
                self.send_response(status)
                for key, value in answer_headers:
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(answer)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward

        return Handler


class BatchSimulator:
    """A moto server whose Batch children run for real, one machine folder each."""

    def __init__(
        self,
        work_root: Path | str | None = None,
        system_python: str | None = None,
        gpu: StandInGpu | None = None,
    ) -> None:
        self.gpu = gpu  # None: the children's nvidia-smi finds no GPU
        self._tmp = None if work_root else tempfile.TemporaryDirectory(prefix="cloud-render-batch-")
        self.work_root = Path(work_root) if work_root else Path(self._tmp.name)  # type: ignore[union-attr]
        self.system_python = system_python or os.environ.get("CLOUD_RENDER_SIM_PYTHON") or sys.executable
        self._stack = contextlib.ExitStack()
        self.url = ""
        self.front: BatchFront | None = None
        self.standin: DockerStandin | None = None
        self.reruns: list[subprocess.Popen[bytes]] = []
        self.reran: dict[int, subprocess.Popen[bytes]] = {}  # array index -> its latest re-run
        self.rerun_folders: list[tuple[str, int, int, Path]] = []  # (Batch job, index, attempt, folder)
        self._lock = threading.Lock()

    # --- life ---------------------------------------------------------------------------------
    def __enter__(self) -> BatchSimulator:
        self.work_root.mkdir(parents=True, exist_ok=True)
        shims = self.work_root / "bin"
        shims.mkdir(exist_ok=True)
        shim_texts = {
            **SHIMS,
            "python3": f'#!/bin/sh\nexec "{self.system_python}" -S "$@"\n',
            "nvidia-smi": nvidia_smi(self.gpu),
        }
        for name, text in shim_texts.items():
            (shims / name).write_text(text)
            (shims / name).chmod(0o755)
        extra = {
            "PATH": machine_path(shims, self.work_root),
            "CLOUD_RENDER_ROOT": "{folder}/root",
            "CLOUD_RENDER_IMDS_URL": "http://127.0.0.1:9",  # nothing listens: no metadata in a container
            "CLOUD_RENDER_IMDS_POLL_S": "60",
            "CLOUD_RENDER_RETRY_ATTEMPTS": "6",
            **(self.gpu.environment() if self.gpu is not None else {}),
        }
        self.standin = self._stack.enter_context(
            DockerStandin(
                self.work_root / "machines", keep_folders=True, credentials=(KEY_ID, SECRET), extra_env=extra
            )
        )
        # moto reads it when it starts: the Docker API to run containers on.
        wanted = {"DOCKER_HOST": self.standin.docker_host}
        saved = {name: os.environ.get(name) for name in wanted}
        os.environ.update(wanted)
        try:
            self.url = self._stack.enter_context(
                moto_server(self.work_root / "moto.log", managed_policies=True)  # the ECS instance role
            )
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
        self.front = self._stack.enter_context(BatchFront(self.url))
        self.standin.moto_url = self.front.url  # Batch's answers as AWS gives them (a child's size)
        self._stack.callback(self._end_reruns)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stack.close()
        if self._tmp is not None:
            self._tmp.cleanup()

    @property
    def settings(self) -> AwsSettings:
        """The product's settings for this emulated account (S3 by endpoint URL, the rest per service)."""
        batch_url = self.front.url if self.front is not None else self.url
        return AwsSettings(
            region="us-east-1",
            access_key_id=KEY_ID,
            secret_access_key=SECRET,
            endpoint_url=self.url,
            service_endpoints=tuple(
                (service, batch_url if service == "batch" else self.url) for service in MOTO_SERVICES
            ),
        )

    # --- the machines -------------------------------------------------------------------------
    def machines(self) -> list[Machine]:
        assert self.standin is not None
        return self.standin.machines()

    def children_of(self, batch_job_id: str) -> list[Machine]:
        """The containers that ran for one Batch job (an array job's children), oldest first."""
        return [
            m for m in self.machines() if m.process_env.get("AWS_BATCH_JOB_ID", "").startswith(batch_job_id)
        ]

    def machine(self, batch_job_id: str, index: int, timeout: float = 60) -> Machine:
        """The container of array index `index` of one Batch job, once it started."""
        deadline = time.monotonic() + timeout
        while (machine := self._started(batch_job_id, index)) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no machine {index} started within {timeout} s")
            time.sleep(0.05)
        return machine

    def _started(self, batch_job_id: str, index: int) -> Machine | None:
        for machine in self.children_of(batch_job_id):
            if machine.process_env.get("AWS_BATCH_JOB_ARRAY_INDEX", "0") == str(index) and machine.started_at:
                return machine
        return None

    def folders(self, batch_job_id: str) -> list[tuple[str, Path]]:
        """(machine label, machine folder) of every machine that ran for the job, re-runs included:
        "0" is index 0's first attempt, "0#2" its second."""
        found = [
            (m.process_env.get("AWS_BATCH_JOB_ARRAY_INDEX", "0"), m.folder)
            for m in self.children_of(batch_job_id)
        ]
        found += [(f"{i}#{a}", f) for job, i, a, f in self.rerun_folders if job == batch_job_id]
        return found

    def kill_mid_frame(self, batch_job_id: str, index: int, timeout: float = 120) -> int:
        """Wait until machine `index` is in the middle of a frame, then lose its host (SIGKILL its
        whole container). Returns the frame it was rendering."""
        return self.kill_mid(batch_job_id, [index], r'"event": "frame", "frame": (-?\d+)', timeout)[1]

    def kill_first_mid_part(self, batch_job_id: str, machines: int, timeout: float = 120) -> tuple[int, int]:
        """As kill_mid_frame, for whichever of a still's machines first starts a part (on a busy
        computer one machine may boot late and find every part taken): (its index, the part's index)."""
        index, part = self.kill_mid(
            batch_job_id, list(range(machines)), r"rendering part (\d+) of", timeout, r"part {} rendered in"
        )
        return index, part - 1

    def kill_merger(self, batch_job_id: str, machines: int, timeout: float = 120) -> int:
        """Lose the host of the still's machine that has just claimed the merge (its index)."""
        return self.kill_mid(
            batch_job_id, list(range(machines)), r"merging here: \d+ of (\d+) parts in", timeout
        )[0]

    def kill_mid(
        self,
        batch_job_id: str,
        indices: list[int],
        started_pattern: str,
        timeout: float,
        ended_pattern: str = "",
    ) -> tuple[int, int]:
        """Lose the host of the first machine of `indices` whose log shows `started_pattern`:
        (its index, the number the pattern caught). With `ended_pattern` (a format taking that
        number), not once the log shows it ended: a busy computer can see the start late, and
        the harness then waits for the next start rather than kill between two."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ended = []
            for index in indices:
                machine = self._started(batch_job_id, index)
                if machine is None:
                    continue
                log = machine.folder / "root" / "run" / "render.log"
                text = log.read_text(errors="replace") if log.exists() else ""
                started = re.findall(started_pattern, text)
                if started and ended_pattern:
                    time.sleep(0.05)  # into the frame, past scene sync
                    text = log.read_text(errors="replace")
                    if re.search(ended_pattern.format(re.escape(started[-1])), text):
                        if not machine.running:
                            ended.append(index)
                        continue  # that one ended already: wait for its next start
                if started:
                    if not ended_pattern:
                        time.sleep(0.05)  # into the frame, past scene sync
                    assert self.standin is not None
                    with contextlib.suppress(Exception):
                        self.standin.kill(machine, int(signal.SIGKILL))
                    machine.wait(30)
                    return index, int(started[-1])
                if not machine.running:
                    ended.append(index)
            if ended == indices:
                raise RuntimeError(
                    f"machines {indices} ended before any of them started: see their render.log"
                )
            time.sleep(0.02)
        raise TimeoutError(f"none of machines {indices} started within {timeout} s")

    def rerun(self, batch_job_id: str, index: int, attempt: int = 2) -> subprocess.Popen[bytes]:
        """Start child `index` again, as Batch's retry strategy does after a lost host: the same
        container command and variables, the next attempt number, a fresh machine folder."""
        first = self.machine(batch_job_id, index)
        folder = self.work_root / "machines" / f"{first.folder.name}-attempt{attempt}"
        (folder / "tmp").mkdir(parents=True, exist_ok=True)
        env = dict(first.process_env)
        env.update(
            AWS_BATCH_JOB_ATTEMPT=str(attempt),
            HOME=str(folder),
            TMPDIR=str(folder / "tmp"),
            CLOUD_RENDER_ROOT=str(folder / "root"),
        )
        env[process_sweep.MACHINE_MARK] = str(folder)
        with open(folder / "console.log", "wb") as console:
            proc = subprocess.Popen(
                first.command,
                cwd=folder,
                env=env,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        threading.Thread(target=_reap_rerun, args=(proc, folder), daemon=True).start()
        with self._lock:
            self.reruns.append(proc)
            self.reran[index] = proc
            self.rerun_folders.append((batch_job_id, index, attempt, folder))
        return proc

    def running(self) -> list[Any]:
        """Containers and re-runs still running."""
        assert self.standin is not None
        return [*self.standin.running(), *[p for p in self.reruns if p.poll() is None]]

    def _end_reruns(self) -> None:
        for proc in self.reruns:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        for _job, _index, _attempt, folder in self.rerun_folders:
            process_sweep.end_marked(process_sweep.MACHINE_MARK, str(folder))


def _reap_rerun(proc: subprocess.Popen[bytes], folder: Path) -> None:
    """As the stand-in does for a container: once the re-run's main process ends, what it left
    (the dead-man timer, Blender in its own session) is killed before the main one is reaped."""
    with contextlib.suppress(ChildProcessError):
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    process_sweep.end_marked(process_sweep.MACHINE_MARK, str(folder))
    proc.wait()
