"""An instance simulator: boots the emulated EC2's render instances on this machine, for real.

It watches the moto server for instances tagged `cloud-render:job`, decodes their user-data
and runs it with bash in a throwaway "machine" directory. What differs from EC2 is small and
explicit: `shutdown`/`poweroff` are shims that terminate the instance in the emulator, `dnf`
and `apt-get` only log, the instance metadata service (IMDSv2) is a fake on loopback, the
machine's HTTP goes through a local proxy that a fault can cut, and `blender` inside the
release tarball is the bpy launcher (`cloud/machine/blender_launcher.py`) wired to a Python
that has the bpy module. The supervisor's download, checksum, unpack and render path is the
production one.

    with InstanceSimulator(aws_url) as sim:
        ...launch an instance...
        sim.wait_terminated(instance_id)

`python -m dev.simulator --endpoint URL` runs it until Ctrl-C (for `make demo`).
"""

from __future__ import annotations

import argparse
import base64
import calendar
import contextlib
import gzip
import hashlib
import http.client
import http.server
import io
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from dev import process_sweep
from dev.standin_path import host_tools, machine_path

ROOT = Path(__file__).resolve().parent.parent
LAUNCHER = ROOT / "cloud" / "machine" / "blender_launcher.py"
JOB_TAG = "cloud-render:job"


def make_blender_tarball(version: str, dest: Path, blender_python: str = sys.executable) -> tuple[Path, str]:
    """A small `blender-<version>-linux-x64.tar.xz` whose `blender` runs the bpy launcher.

    Returns (path, SHA-256). The add-on would stage the official tarball in the bucket's
    Blender cache; this one has the same layout and goes through the same checks.
    """
    dest.mkdir(parents=True, exist_ok=True)
    top = f"blender-{version}-linux-x64"
    path = dest / f"{top}.tar.xz"
    # The suite's bpy module: under `make test-bpy42` PYTHONPATH puts Blender 4.2's ahead, and the
    # machine's Blender must be that one too (the machine's environment is otherwise clean).
    # Another interpreter (a venv of another release) has its own bpy: no PYTHONPATH for it.
    carried = os.environ.get("PYTHONPATH", "") if blender_python == sys.executable else ""
    python_path = os.pathsep.join(os.path.abspath(p) for p in carried.split(os.pathsep) if p)
    path_line = f'export PYTHONPATH="{python_path}"\n' if python_path else ""
    # On a machine with a stand-in GPU the stand-in driver fills the kernel caches as Blender
    # starts (dev/standin_driver.py), where the real driver does so during "Loading render kernels".
    driver_line = (
        f'[ -n "$CLOUD_RENDER_STANDIN_DRIVER" ] && "{blender_python}" -S "$CLOUD_RENDER_STANDIN_DRIVER"\n'
    )
    script = (
        f'#!/bin/sh\n{path_line}{driver_line}exec "{blender_python}" "$(dirname "$0")/blender_launcher.py" "$@"\n'
    ).encode()
    with tarfile.open(path, "w:xz") as archive:
        for name, data, mode in (
            ("blender", script, 0o755),
            ("blender_launcher.py", LAUNCHER.read_bytes(), 0o644),
        ):
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size, info.mode, info.mtime = len(data), mode, int(time.time())
            archive.addfile(info, io.BytesIO(data))
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class StandInGpu:
    """A GPU for a simulated machine: an `nvidia-smi` on its PATH that names this model and
    driver, and the stand-in driver (dev/standin_driver.py) filling the kernel caches."""

    name: str = "NVIDIA A10G"
    driver: str = "550.54.15"

    def nvidia_smi(self) -> str:
        return f'#!/bin/sh\necho "{self.name}, {self.driver}"\n'

    def environment(self) -> dict[str, str]:
        return {
            "CLOUD_RENDER_STANDIN_DRIVER": str(ROOT / "dev" / "standin_driver.py"),
            "SIM_GPU_NAME": self.name,
            "SIM_GPU_DRIVER": self.driver,
        }


# No stand-in GPU: an nvidia-smi that finds none, even where this computer has a GPU.
NO_GPU_SMI = '#!/bin/sh\necho "NVIDIA-SMI has failed: no NVIDIA driver (simulated)" >&2\nexit 9\n'


def nvidia_smi(gpu: StandInGpu | None) -> str:
    """The `nvidia-smi` a simulated machine gets: the stand-in GPU's, or one that finds none."""
    return gpu.nvidia_smi() if gpu is not None else NO_GPU_SMI


@dataclass
class Faults:
    """Things that go wrong on real machines, each triggered after `after_frames` saved frames."""

    after_frames: int = 1
    kill_render: bool = False  # SIGKILL Blender in the middle of the next frame (as the OOM killer does)
    crash_render: bool = False  # SIGSEGV Blender in the middle of the next frame
    spot_notice: bool = False  # IMDS starts answering spot/instance-action
    cut_network_s: float = 0.0  # the machine's HTTP fails for this long
    clock_jump_s: float = 0.0  # S3's clock jumps this far ahead: the job's presigned links expire
    missing_input: str = ""  # this job file (spec input path) is deleted from the bucket before boot


# ---------------------------------------------------------------- loopback services


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


@contextlib.contextmanager
def _serve(handler: type[http.server.BaseHTTPRequestHandler], host: str = "127.0.0.1") -> Any:
    server = _Server((host, 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


class FakeImds:
    """IMDSv2: a token from PUT /latest/api/token, then spot/instance-action (404 until noticed)."""

    def __init__(self) -> None:
        self.notice: dict[str, str] | None = None
        self.token = os.urandom(8).hex()
        imds = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def _send(self, code: int, body: str) -> None:
                data = body.encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self) -> None:
                if self.path == "/latest/api/token" and self.headers.get(
                    "X-aws-ec2-metadata-token-ttl-seconds"
                ):
                    self._send(200, imds.token)
                else:
                    self._send(400, "")

            def do_GET(self) -> None:
                if self.headers.get("X-aws-ec2-metadata-token") != imds.token:
                    self._send(401, "")
                elif self.path == "/latest/meta-data/spot/instance-action" and imds.notice:
                    self._send(200, json.dumps(imds.notice))
                else:
                    self._send(404, "")

        self.handler = Handler

    def send_notice(self) -> None:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 120))
        self.notice = {"action": "terminate", "time": when}


def _amz_time(text: str, pattern: str) -> float:
    return calendar.timegm(time.strptime(text, pattern))


def s3_refusal(method: str, url: str, body: bytes | None, now: float) -> str:
    """What S3 enforces and moto does not: expired presigned links and POST policies, and a
    POST key outside the policy's `starts-with` prefix. Returns S3's error message, or ''.
    """
    if method == "POST" and body and b'name="policy"' in body:
        fields = {
            m.group(1).decode(): m.group(2).decode("utf-8", "replace")
            for m in re.finditer(rb'name="([^"]+)"\r\n\r\n([^\r]*)\r\n', body)
        }
        try:
            policy = json.loads(base64.b64decode(fields.get("policy", "")))
            expiration = _amz_time(policy["expiration"].split(".")[0].rstrip("Z"), "%Y-%m-%dT%H:%M:%S")
        except (ValueError, KeyError, TypeError):
            return "Invalid Policy: Invalid JSON."
        if now > expiration:
            return "Invalid according to Policy: Policy expired."
        for condition in policy.get("conditions", []):
            starts_with = isinstance(condition, list) and condition[:2] == ["starts-with", "$key"]
            if starts_with and not fields.get("key", "").startswith(condition[2]):
                return f"Invalid according to Policy: Policy Condition failed: {json.dumps(condition)}"
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    if "X-Amz-Date" in query and "X-Amz-Expires" in query:
        signed = _amz_time(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ")
        if now > signed + int(query["X-Amz-Expires"][0]):
            return "Request has expired"
    return ""


class CuttableProxy:
    """A forward HTTP proxy for the machine's traffic; `cut(seconds)` makes every request fail.

    It also plays S3's part where moto does not: presigned links and POST policies expire (by
    this proxy's clock, which `jump(seconds)` moves ahead) and a POST key must keep to the
    policy's prefix. Refusals are answered as S3 does: 403 AccessDenied with S3's message.
    """

    def __init__(self) -> None:
        self.cut_until = 0.0
        self.refused = 0
        self.clock_offset = 0.0
        self.denied: list[str] = []  # S3's messages, one per refused request
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args: Any) -> None:
                return

            def _forward(self) -> None:
                if time.monotonic() < proxy.cut_until:
                    proxy.refused += 1
                    self.close_connection = True
                    return  # no answer at all, as with a dropped connection
                url = urllib.parse.urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                message = s3_refusal(self.command, self.path, body, time.time() + proxy.clock_offset)
                if message:
                    proxy.denied.append(message)
                    error = (
                        '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
                        f"<Message>{message}</Message><RequestId>SIMULATED</RequestId></Error>"
                    ).encode()
                    self.send_response(403, "Forbidden")
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(error)))
                    self.end_headers()
                    self.wfile.write(error)
                    return
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("proxy-connection", "connection", "expect")
                }
                conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port or 80, timeout=60)
                try:
                    conn.request(
                        self.command, url.path + (f"?{url.query}" if url.query else ""), body, headers
                    )
                    response = conn.getresponse()
                    data = response.read()
                finally:
                    conn.close()
                self.send_response(response.status, response.reason)
                for key, value in response.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward

        self.handler = Handler

    def cut(self, seconds: float) -> None:
        self.cut_until = time.monotonic() + seconds

    def jump(self, seconds: float) -> None:
        """S3's clock, as the machine's requests meet it, moves `seconds` ahead."""
        self.clock_offset += seconds

    @contextlib.contextmanager
    def serving(self) -> Any:
        """Run the proxy on loopback; yields its URL (for http_proxy, or a ProxyHandler)."""
        with _serve(self.handler) as server:
            yield f"http://127.0.0.1:{server.server_address[1]}"


# ---------------------------------------------------------------- one machine


# A shim acts only inside its own machine folder (where the simulator put it); anywhere else it
# refuses, and the machine's PATH (dev/standin_path.py) holds no host command that powers off.
_ONLY_IN_MACHINE = """case "$0" in
  "${SIM_MACHINE:-/nonexistent}"/bin/*) [ -d "$SIM_MACHINE" ] || exit 1 ;;
  *) echo "stand-in $0 refuses to run outside its machine folder" >&2; exit 1 ;;
esac
"""
SHIMS = {
    "shutdown": """#!/bin/sh
"""
    + _ONLY_IN_MACHINE
    + """for a in "$@"; do
  case "$a" in
    now|+0) echo "shutdown $*" > "$SIM_MACHINE/power-off"; echo "(simulated) powering off"; exit 0 ;;
    +*) echo "${a#+}" > "$SIM_MACHINE/deadman.new" && mv -f "$SIM_MACHINE/deadman.new" "$SIM_MACHINE/deadman"
        echo "(simulated) shutdown scheduled in ${a#+} min"; exit 0 ;;
    -c) rm -f "$SIM_MACHINE/deadman"; exit 0 ;;
  esac
done
echo "shutdown $*" > "$SIM_MACHINE/power-off"
""",
    "poweroff": "#!/bin/sh\n" + _ONLY_IN_MACHINE + 'echo poweroff > "$SIM_MACHINE/power-off"\n',
    "halt": '#!/bin/sh\necho "halt $*" >> "$SIM_MACHINE/halted"\necho "(simulated) halted: still billing"\n',
    "dnf": '#!/bin/sh\necho "(simulated) dnf $*"\n',
    "apt-get": '#!/bin/sh\necho "(simulated) apt-get $*"\n',
}


def _deadman_minutes(path: Path) -> float | None:
    """The minutes `shutdown -h +N` scheduled, or None while none is (no file, or no number in it)."""
    try:
        return float(path.read_text().strip())
    except (OSError, ValueError):
        return None


class Machine:
    """One simulated instance: its directory, processes, IMDS and proxy."""

    def __init__(
        self, sim: InstanceSimulator, instance_id: str, job_id: str, user_data: str, faults: Faults
    ) -> None:
        self.sim = sim
        self.instance_id = instance_id
        self.job_id = job_id
        self.user_data = user_data
        self.faults = faults
        self.dir = sim.work_root / instance_id
        self.root = self.dir / "root"
        self.console = self.dir / "console.log"
        self.terminated = threading.Event()
        self.stopped_from_outside = threading.Event()  # terminate_instances by the add-on (cancel)
        self.fault_fired = ""
        self.imds = FakeImds()
        self.proxy = CuttableProxy()
        self.thread = threading.Thread(target=self._run, name=f"machine-{instance_id}", daemon=True)

    @property
    def render_log(self) -> Path:
        return self.root / "run" / "render.log"

    def _install_shims(self) -> Path:
        bin_dir = self.dir / "bin"
        bin_dir.mkdir(parents=True, exist_ok=True)
        shims = dict(SHIMS)
        # The instance's system Python, without this process's site-packages (the supervisor is stdlib only).
        shims["python3"] = f'#!/bin/sh\nexec "{self.sim.system_python}" -S "$@"\n'
        shims["nvidia-smi"] = nvidia_smi(self.sim.gpu)
        for name, text in shims.items():
            path = bin_dir / name
            path.write_text(text)
            path.chmod(0o755)
        return bin_dir

    def _run(self) -> None:
        try:
            self._boot()
        except Exception as exc:  # keep the simulator alive and say what broke
            with open(self.console, "a") as out:
                out.write(f"simulator error: {exc!r}\n")
        finally:
            self.terminate()

    def _boot(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        bin_dir = self._install_shims()
        if self.faults.missing_input:
            self.sim.delete_input(self.user_data, self.faults.missing_input)
        script = self.dir / "user-data.sh"
        script.write_text(self.user_data)
        with (
            _serve(self.imds.handler) as imds,
            _serve(self.proxy.handler) as proxy,
            open(self.console, "wb") as out,
        ):
            env = {
                "PATH": machine_path(bin_dir, self.sim.work_root),
                "HOME": str(self.dir),
                "LANG": "C.UTF-8",
                "SIM_MACHINE": str(self.dir),
                process_sweep.MACHINE_MARK: str(self.dir),
                **process_sweep.inherited(),
                "CLOUD_RENDER_ROOT": str(self.root),
                "CLOUD_RENDER_IMDS_URL": f"http://127.0.0.1:{imds.server_address[1]}",
                "CLOUD_RENDER_IMDS_POLL_S": "0.2",
                "CLOUD_RENDER_RETRY_ATTEMPTS": "6",
                "http_proxy": f"http://127.0.0.1:{proxy.server_address[1]}",
            }
            if os.environ.get("CLOUD_RENDER_SOFTWARE_GPU"):  # the demo's stand-in for a GPU's OpenGL
                env["CLOUD_RENDER_SOFTWARE_GPU"] = "1"
            if self.sim.gpu is not None:
                env.update(self.sim.gpu.environment())
            proc = subprocess.Popen(
                ["bash", str(script)],
                cwd=self.dir,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            booted = time.monotonic()
            saved_seen = 0
            log_pos = 0
            armed_frame = False
            while True:
                if (self.dir / "power-off").exists():
                    break
                # The shim renames the minutes into place whole; an empty file (an older shim caught
                # mid-write) is not a shutdown at once: a machine once powered off before it booted so.
                minutes = _deadman_minutes(self.dir / "deadman")
                if minutes is not None and time.monotonic() > booted + 60 * minutes:
                    break
                if self.sim.stopping.is_set():
                    break
                if self.stopped_from_outside.is_set():
                    with open(self.console, "ab") as note:
                        note.write(b"simulator: instance terminated through the EC2 API; machine stops\n")
                    break
                if proc.poll() is not None:
                    time.sleep(0.2)  # a machine whose script ended without powering off keeps billing...
                    if not (self.dir / "power-off").exists():
                        with open(self.console, "ab") as note:
                            note.write(b"simulator: user-data ended without powering off; terminating\n")
                    break
                if self.render_log.exists():
                    with open(self.render_log, encoding="utf-8", errors="replace") as handle:
                        handle.seek(log_pos)
                        chunk = handle.read()
                        log_pos = handle.tell()
                    for line in chunk.splitlines():
                        if re.search(r"Saved: '", line):
                            saved_seen += 1
                            if saved_seen == self.faults.after_frames:
                                self._fire_at_frame_end()
                                armed_frame = True
                        elif armed_frame and '"event": "frame"' in line:
                            armed_frame = False
                            self._fire_mid_frame()
                time.sleep(0.02)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            # What left the group (Blender in a session of its own, a dead-man timer) goes too.
            process_sweep.end_marked(process_sweep.MACHINE_MARK, str(self.dir))

    def _fire_at_frame_end(self) -> None:
        if self.faults.spot_notice:
            self.imds.send_notice()
            self.fault_fired = "spot_notice"
        if self.faults.cut_network_s:
            self.proxy.cut(self.faults.cut_network_s)
            self.fault_fired = "cut_network"
        if self.faults.clock_jump_s:
            self.proxy.jump(self.faults.clock_jump_s)
            self.fault_fired = "clock_jump"

    def _fire_mid_frame(self) -> None:
        sig = (
            signal.SIGKILL
            if self.faults.kill_render
            else signal.SIGSEGV
            if self.faults.crash_render
            else None
        )
        if sig is None:
            return
        pid = int((self.root / "run" / "blender.pid").read_text())
        time.sleep(0.05)  # into the frame, past scene sync
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        self.fault_fired = sig.name

    def terminate(self) -> None:
        if not self.terminated.is_set():
            with contextlib.suppress(Exception):
                self.sim.ec2.terminate_instances(InstanceIds=[self.instance_id])
            self.terminated.set()


# ---------------------------------------------------------------- the simulator


class InstanceSimulator:
    """Runs every new tagged instance of the emulated account as a Machine, until closed."""

    def __init__(
        self,
        endpoint_url: str,
        region: str = "us-east-1",
        blender_python: str = sys.executable,
        work_root: Path | str | None = None,
        faults: Faults | None = None,
        poll_s: float = 0.3,
        system_python: str | None = None,
        gpu: StandInGpu | None = None,
    ) -> None:
        self.endpoint_url = endpoint_url
        self.gpu = gpu  # None: no nvidia-smi on the machines, as on a CPU instance
        self.region = region
        self.blender_python = blender_python
        # The instance's own Python 3.9+ that runs the boot script's python3 and the supervisor
        # (Amazon Linux 2023 has 3.9): CLOUD_RENDER_SIM_PYTHON picks one, else this interpreter.
        self.system_python = system_python or os.environ.get("CLOUD_RENDER_SIM_PYTHON") or sys.executable
        self._tmp = None if work_root else tempfile.TemporaryDirectory(prefix="cloud-render-sim-")
        self.work_root = Path(work_root) if work_root else Path(self._tmp.name)  # type: ignore[union-attr]
        self.faults = faults or Faults()
        self.poll_s = poll_s
        session = boto3.session.Session(
            aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
            aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
            region_name=region,
        )
        config = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3})
        self.ec2 = session.client("ec2", endpoint_url=endpoint_url, config=config)
        self.s3 = session.client("s3", endpoint_url=endpoint_url, config=config)
        self.machines: dict[str, Machine] = {}
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._watch, name="instance-simulator", daemon=True)

    def __enter__(self) -> InstanceSimulator:
        self.work_root.mkdir(parents=True, exist_ok=True)
        host_tools(self.work_root / "host-tools")  # once, before machines boot in their threads
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)
        for machine in list(self.machines.values()):
            machine.thread.join(timeout=15)
        if self._tmp is not None:
            self._tmp.cleanup()

    def _watch(self) -> None:
        while not self.stopping.is_set():
            with contextlib.suppress(Exception):  # the emulator may be resetting between tests
                self._poll()
            self.stopping.wait(self.poll_s)

    def _poll(self) -> None:
        pages = self.ec2.get_paginator("describe_instances").paginate(
            Filters=[{"Name": "tag-key", "Values": [JOB_TAG]}]
        )
        for page in pages:
            for reservation in page["Reservations"]:
                for instance in reservation["Instances"]:
                    instance_id = instance["InstanceId"]
                    alive = instance["State"]["Name"] in ("pending", "running")
                    if instance_id in self.machines:
                        if not alive:  # stopped or terminated from outside: the machine goes away
                            self.machines[instance_id].stopped_from_outside.set()
                        continue
                    if not alive:
                        continue
                    tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
                    machine = Machine(
                        self, instance_id, tags.get(JOB_TAG, ""), self.user_data(instance_id), self.faults
                    )
                    self.machines[instance_id] = machine
                    machine.thread.start()

    def user_data(self, instance_id: str) -> str:
        """The instance's user-data as text (EC2 hands it back base64; it may be gzipped)."""
        attr = self.ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
        raw = base64.b64decode(attr.get("UserData", {}).get("Value", ""))
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        return raw.decode("utf-8")

    def delete_input(self, user_data: str, path: str) -> None:
        """Fault "missing_input": remove one job file from the bucket, found through the job spec."""
        match = re.search(r"fetch '([^']+)' \"\$ROOT/job-spec.json\"", user_data)
        if not match:
            raise RuntimeError("no job spec URL in the user-data")
        with urllib.request.urlopen(match.group(1), timeout=10) as response:
            spec = json.loads(response.read())
        for item in spec["inputs"]:
            if item["path"] == path:
                url = item["url"] or item["chunks"][0]["url"]  # a chunked .blend: its first chunk
                url_path = urllib.parse.unquote(urllib.parse.urlsplit(url).path).lstrip("/")
                bucket, key = url_path.split("/", 1)
                self.s3.delete_object(Bucket=bucket, Key=key)
                return
        raise RuntimeError(f"no input {path} in the job spec")

    def machine(self, instance_id: str, timeout: float = 30) -> Machine:
        deadline = time.monotonic() + timeout
        while instance_id not in self.machines:
            if time.monotonic() > deadline:
                raise TimeoutError(f"instance {instance_id} was never booted by the simulator")
            time.sleep(0.05)
        return self.machines[instance_id]

    def wait_terminated(self, instance_id: str, timeout: float = 120) -> Machine:
        """Wait until the machine powered itself off (or its time ran out) and EC2 shows it terminated."""
        machine = self.machine(instance_id, timeout)
        if not machine.terminated.wait(timeout):
            raise TimeoutError(
                f"instance {instance_id} still running after {timeout} s; see {machine.console}"
            )
        machine.thread.join(timeout=15)
        return machine


def main() -> int:
    parser = argparse.ArgumentParser(description="Boot the emulated EC2's render instances on this machine.")
    parser.add_argument("--endpoint", required=True, help="moto server URL, e.g. http://127.0.0.1:5000")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--blender-python", default=sys.executable, help="a Python with the bpy module")
    parser.add_argument("--work-root", default=None)
    args = parser.parse_args()
    with InstanceSimulator(args.endpoint, args.region, args.blender_python, args.work_root) as sim:
        print(f"simulating instances of {args.endpoint} in {sim.work_root} (Ctrl-C to stop)")
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
