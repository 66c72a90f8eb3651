"""Shared fixtures: the emulated AWS account and a throwaway home for credentials."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from cloud.aws.session import AwsSettings
from dev import process_sweep
from dev.aws_emulator import emulator_url, endpoint_variables, moto_server, reset
from dev.emulator import create_artist

# Before anything imports bpy: the extension installs into a throwaway user directory, never
# the developer's own Blender configuration; one per pytest-xdist worker (a worker inherits the
# controller's environment, and two workers sharing one directory installed the extension over
# each other and read each other's saved keys: "AWS did not accept your access keys").
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
if _WORKER:
    os.environ["BLENDER_USER_RESOURCES"] = tempfile.mkdtemp(prefix=f"cloud-render-blender-user-{_WORKER}-")
else:
    os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="cloud-render-blender-user-"))
# Every process this pytest process starts carries this mark, and so do their children (the
# stand-in machines copy it into the environments they build): `_no_process_left` finds them.
# Each pytest-xdist worker sets its own, so a worker never counts another's processes.
os.environ[process_sweep.RUN_MARK] = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
LEFT_GRACE_S = 20.0  # for processes already being stopped as the run ends

ROOT = Path(__file__).resolve().parent.parent
TESTDATA = ROOT.parent / "shared" / "testdata" / "blendfiles"


def pytest_configure(config: pytest.Config) -> None:
    """Every emulator this session starts logs the policy grants that allowed a request. Under
    pytest-xdist the workers inherit the controller's log (they start after this runs there),
    and only the controller reads it back, at the end."""
    if hasattr(config, "workerinput"):
        return
    handle, path = tempfile.mkstemp(prefix="cloud-render-grants-", suffix=".jsonl")
    os.close(handle)
    os.environ["STRICT_AWS_GRANTS_LOG"] = path


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Each permission Cloud Render's policies grant that no request of this run used: on a full
    run, a grant listed here is one no code path of the tests needs (DESIGN.md rule 10)."""
    from cloud.aws.iam_policy import POLICY_NAMES, POLICY_TITLES, load_policy

    if hasattr(terminalreporter.config, "workerinput"):
        return  # a pytest-xdist worker: the controller reads the log once every worker is done
    path = Path(os.environ.get("STRICT_AWS_GRANTS_LOG", ""))
    if not path.is_file():
        return
    used = {tuple(json.loads(line).values()) for line in path.read_text().splitlines() if line.strip()}
    path.unlink()
    if not used:
        return
    lines = []
    for name in POLICY_NAMES:
        title = POLICY_TITLES[name]
        for statement in load_policy(name)["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            for action in actions:
                key = (f"managed:arn:aws:iam::123456789012:policy/{title}", statement["Sid"], action.lower())
                if key not in used:
                    lines.append(f"{title} / {statement['Sid']}: {action}")
    terminalreporter.section("IAM grants no request of this run used")
    for line in lines or ["none: every grant of both policies allowed a request"]:
        terminalreporter.write_line(line)


def pytest_unconfigure(config: pytest.Config) -> None:
    """The bpy module of Blender 4.2 crashes (SIGSEGV) at interpreter exit once its driver
    namespace has been used (a driver evaluated, the preflight looking up driver functions),
    unless the namespace is emptied first; bpy 5.0 exits cleanly either way."""
    bpy = sys.modules.get("bpy")
    if bpy is not None:
        bpy.app.driver_namespace.clear()


@pytest.fixture(scope="session", autouse=True)
def _no_process_left() -> Iterator[None]:
    """Set up first, so it ends last: once every other fixture of the run (or of this xdist
    worker) has ended, no process this run started may still be alive. Any that are (a stand-in
    machine's dead-man timer, a Blender) are named, killed, and fail the run."""
    yield
    mark = os.environ[process_sweep.RUN_MARK]
    left = process_sweep.wait_gone(process_sweep.RUN_MARK, mark, LEFT_GRACE_S)
    if left:
        process_sweep.end_marked(process_sweep.RUN_MARK, mark)
        pytest.fail(
            f"{len(left)} process(es) this test run started outlived it (now killed): "
            + "; ".join(str(p) for p in left),
            pytrace=False,
        )


@pytest.fixture(scope="session", autouse=True)
def _no_real_aws(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Nothing in the suite may reach a real AWS account, whatever this machine has configured."""
    home = tmp_path_factory.mktemp("aws-home")
    os.environ["AWS_CONFIG_FILE"] = str(home / "config")
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = str(home / "credentials")
    os.environ["AWS_ACCESS_KEY_ID"] = "AKIAEXAMPLETESTKEY00"
    os.environ["AWS_SECRET_ACCESS_KEY"] = "test-secret-not-real"
    os.environ.pop("AWS_PROFILE", None)
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    for name in [n for n in os.environ if n.startswith("AWS_ENDPOINT_URL")]:
        del os.environ[name]  # a developer's own endpoints must not redirect the tests


@pytest.fixture(scope="session")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with moto_server(log) as url:
        yield url


@pytest.fixture(scope="session")
def moto_url_managed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second server that knows AWS's managed policies, for the tests marked
    `iam_managed_policies` (Set Up's Batch step): loading them costs every reset."""
    log = tmp_path_factory.mktemp("moto-managed") / "moto.log"
    with moto_server(log, managed_policies=True) as url:
        yield url


@dataclass(frozen=True)
class EmulatedAws:
    """The emulator's address and two ways in. `settings`: the artist's IAM user, holding
    Cloud Render's two policies (README: as during Set Up), which is what every product call
    signs with; the strict layer authorises each request against them as AWS would. `admin`:
    the account's root, for the harness's own steps (what a test arranges or reads back) and
    nothing the product does. S3 goes through the Endpoint URL, the other services through
    botocore's per-service variables, which the `aws` fixture sets for the test."""

    url: str
    settings: AwsSettings
    admin: AwsSettings


@pytest.fixture
def aws(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> EmulatedAws:
    """A fresh, empty emulated account for each test, with the artist's IAM user in it."""
    moto_url = emulator_url(request)
    reset(moto_url)
    for name, value in endpoint_variables(moto_url).items():
        monkeypatch.setenv(name, value)
    admin = AwsSettings(
        region="us-east-1",
        access_key_id="AKIAEXAMPLETESTKEY00",
        secret_access_key="test-secret-not-real",
        endpoint_url=moto_url,
    )
    key_id, secret = create_artist(admin)
    settings = replace(admin, access_key_id=key_id, secret_access_key=secret)
    return EmulatedAws(url=moto_url, settings=settings, admin=admin)


@pytest.fixture(scope="session")
def testdata() -> Path:
    if not TESTDATA.is_dir():
        pytest.fail(f"shared test data not found at {TESTDATA}")
    return TESTDATA


@pytest.fixture(scope="session")
def extension_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The extension built once with Blender's own tool, for this platform."""
    from dev.build import build, zip_for_this_platform

    return zip_for_this_platform(build(tmp_path_factory.mktemp("dist")))


@pytest.fixture
def installed(extension_zip: Path):  # type: ignore[no-untyped-def]
    """The extension installed from its zip into this process's bpy and enabled (again, if a
    test in between loaded factory settings, which disables add-ons)."""
    from dev import addon_harness as harness

    return harness.install(extension_zip)
