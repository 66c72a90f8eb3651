"""The job on a phone (issue 24, item 2): the static page written to the job's folder at submit,
against moto over real HTTP: served as HTML through its presigned link, the job's numbers in
it, links that live no longer than SigV4 and the signing credentials allow, and machine text
that can never become markup."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from cloud.aws import bucket_setup
from cloud.aws.session import client
from cloud.job import phone_page
from cloud.job.records import JobRecord
from cloud.machine import contract

HOSTILE = "</script><img src=x onerror=alert(1)>\u202egnp.exe<!--"
WEEK = 7 * 24 * 3600


def node() -> str:
    """Node.js runs the page's script as a browser would (this project's machines have it:
    /usr/bin/node); a machine without it fails here rather than skipping the check."""
    found = shutil.which("node")
    assert found, "node.js is needed to run the job page's script (install Debian's nodejs)"
    return found


def shown_by_page(tmp_path: Path, data: str, documents: dict[str, str]) -> dict[str, Any]:
    """The page's script run in Node.js over a fake page (NODE_DOM) with `data` embedded and the
    machine documents the fake fetch answers with: what each element shows."""
    script = tmp_path / "dom.js"
    script.write_text(NODE_DOM)
    answers = tmp_path / "documents.json"  # a file: a large body would not fit in an argument
    answers.write_text(json.dumps(documents))
    ran = subprocess.run(
        [node(), str(script), data, str(answers)],
        input=phone_page.SCRIPT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return dict(json.loads(ran.stdout))


def record(bucket: str, **changes: object) -> JobRecord:
    rec = JobRecord(
        job_id="job-phone-1",
        blend_name="shot.blend",
        scene_name="Scene",
        region="us-east-1",
        instance_type="g5.xlarge",
        spot=True,
        frames=list(range(1, 25)),
        output_dir="/tmp/out",
        price_per_hour=0.5,
        max_cost=12.0,
        max_hours=4.0,
        bucket=bucket,
        launched_at=time.time() - 1800,
    )
    return replace(rec, **changes)  # type: ignore[arg-type]


def embedded(html: str) -> dict:
    found = re.search(r'<script type="application/json" id="job">(.*?)</script>', html, re.S)
    assert found
    return json.loads(found.group(1))


def expires_param(url: str) -> int:
    return int(parse_qs(urlsplit(url).query)["X-Amz-Expires"][0])


@pytest.fixture
def bucket(aws, tmp_path):
    return bucket_setup.ensure_bucket(aws.settings, tmp_path / "buckets.json")


def test_the_page_is_written_as_html_and_its_link_opens_it(aws, bucket):
    before = time.time()
    link = phone_page.write_page(aws.settings, record(bucket))
    head = client(aws.admin, "s3").head_object(Bucket=bucket, Key="jobs/job-phone-1/phone.html")
    assert head["ContentType"] == "text/html; charset=utf-8"
    reply = requests.get(link.url, timeout=30)
    assert reply.status_code == 200
    assert reply.headers["Content-Type"].startswith("text/html")
    assert reply.text.startswith("<!DOCTYPE html>")
    # IAM-user keys: SigV4's 7 days, and the page says until when
    assert expires_param(link.url) == WEEK
    assert before + WEEK - 5 <= link.expires_at <= time.time() + WEEK
    assert not link.carries_session_token
    # outside out/: no machine's presigned POST can replace the page
    assert not phone_page.page_key("job-phone-1").startswith(contract.out_prefix("job-phone-1"))


def test_the_pages_data_has_the_jobs_numbers_and_links_to_what_the_machines_write(aws, bucket):
    rec = record(bucket)
    link = phone_page.write_page(aws.settings, rec)
    data = embedded(requests.get(link.url, timeout=30).text)
    assert data["frames_total"] == 24
    assert data["machines"] == 1
    assert data["price_per_hour"] == 0.5
    assert data["max_cost"] == 12.0
    assert data["launched_at"] == pytest.approx(rec.launched_at)
    assert data["expires_at"] == pytest.approx(link.expires_at)
    assert data["instance_type"] == "g5.xlarge" and data["spot"] is True
    status = {"state": "rendering", "frames_done": [1, 2, 3], "seconds_per_frame": 20.0}
    client(aws.admin, "s3").put_object(
        Bucket=bucket, Key="jobs/job-phone-1/out/status.json", Body=json.dumps(status).encode()
    )
    assert requests.get(data["links"]["status"], timeout=30).json() == status
    for url in [data["links"]["status"], *data["links"]["end"].values()]:
        assert expires_param(url) == WEEK
    assert sorted(data["links"]["end"]) == ["done", "error", "interrupted"]
    assert requests.get(data["links"]["end"]["done"], timeout=30).status_code == 404  # not yet


def test_many_machines_get_each_machines_status_link(aws, bucket):
    link = phone_page.write_page(aws.settings, record(bucket, machines=3, cloud_engine="batch"))
    data = embedded(requests.get(link.url, timeout=30).text)
    assert data["machines"] == 3
    paths = [urlsplit(u).path for u in data["links"]["machines"]]
    assert paths == [f"/{bucket}/jobs/job-phone-1/out/machines/{i}/status.json" for i in range(3)]


def test_temporary_credentials_give_links_no_longer_than_the_session(aws, bucket):
    # the harness's own session (the strict layer has no rule for sts:GetSessionToken, which
    # AWS lets any user call): what matters is that the links carry and outlive no token
    creds = client(aws.admin, "sts").get_session_token(DurationSeconds=3600)["Credentials"]
    temporary = replace(
        aws.admin,
        access_key_id=creds["AccessKeyId"],
        secret_access_key=creds["SecretAccessKey"],
        session_token=creds["SessionToken"],
    )
    link = phone_page.write_page(temporary, record(bucket))
    assert link.carries_session_token  # kept in memory by the job thread, never in the record
    assert expires_param(link.url) <= 3600
    assert link.expires_at <= time.time() + 3600
    data = embedded(requests.get(link.url, timeout=30).text)
    assert all(expires_param(u) <= 3600 for u in [data["links"]["status"], *data["links"]["end"].values()])


def test_hostile_text_never_becomes_markup(aws, bucket):
    link = phone_page.write_page(aws.settings, record(bucket, scene_name=HOSTILE, job_id="job-phone-2"))
    hostile_status = {"state": "rendering", "message": HOSTILE, "device": HOSTILE, "frames_done": [1]}
    client(aws.admin, "s3").put_object(
        Bucket=bucket, Key="jobs/job-phone-2/out/status.json", Body=json.dumps(hostile_status).encode()
    )
    html = requests.get(link.url, timeout=30).text
    # the artist's text is data, JSON-escaped: it closes no block, opens no tag, no raw U+202E
    assert html.count("</script>") == 2 and html.count("<script") == 2
    assert html.count("<img") == 1 and '<img id="preview" alt="The latest frame">' in html  # no src
    assert "\u202e" not in html and "<!--" not in html
    assert embedded(html)["scene"] == HOSTILE
    # machine text is read at run time only, and the script puts text on the page as text
    for sink in (
        "innerHTML",
        "outerHTML",
        "document.write",
        "eval(",
        "insertAdjacentHTML",
        "Function(",
        "src=",
    ):
        assert sink not in phone_page.SCRIPT
    assert "textContent" in phone_page.SCRIPT
    # the one image source the script sets is a blob it typed itself from checked bytes
    assert re.findall(r"\.src\s*=\s*([\w.]+)", phone_page.SCRIPT) == ["shown"]
    assert 'shown = URL.createObjectURL(new Blob([bytes], {type: "image/jpeg"}))' in phone_page.SCRIPT


def test_the_page_loads_nothing_from_elsewhere(aws, bucket):
    link = phone_page.write_page(aws.settings, record(bucket))
    html = requests.get(link.url, timeout=30).text
    origin = phone_page.origin_of(link.url)
    data = embedded(html)
    urls = [data["links"]["status"], *data["links"]["end"].values(), data["links"]["preview"]]
    assert {phone_page.origin_of(u) for u in urls} == {origin}
    outside = [u for u in re.findall(r"https?://[^\s\"'<>\\]+", html) if not u.startswith(origin)]
    assert outside == []  # the links themselves are JSON-escaped (\u0026), inside the data block
    csp = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', html)
    assert csp
    rules = dict(part.strip().split(" ", 1) for part in csp.group(1).split(";"))
    assert rules["default-src"] == "'none'" and rules["connect-src"] == origin
    assert rules["img-src"] == "blob:" and rules["form-action"] == "'none'"  # the preview, see below
    scripts = re.findall(r"<script>(.*?)</script>", html, re.S)
    styles = re.findall(r"<style>(.*?)</style>", html, re.S)
    assert len(scripts) == 1 and len(styles) == 1
    for source, rule in ((scripts[0], "script-src"), (styles[0], "style-src")):
        digest = base64.b64encode(hashlib.sha256(source.encode()).digest()).decode()
        assert rules[rule] == f"'sha256-{digest}'"  # inline, allowed by hash: nothing else runs
    assert "width=device-width" in html  # a phone's screen


def test_embedded_json_cannot_close_its_block():
    text = phone_page.embed_json({"a": "</script>", "b": "<!-- & \u2028 \u202e"})
    assert not set(text) & set("<>&\u2028\u202e")
    assert json.loads(text) == {"a": "</script>", "b": "<!-- & \u2028 \u202e"}


NODE_DOM = r"""
const fs = require("fs");
const [script, data, docs] = [fs.readFileSync(0, "utf8"), process.argv[2], JSON.parse(fs.readFileSync(process.argv[3], "utf8"))];
const els = {};
const el = (id) => els[id] || (els[id] = {id, textContent: "", className: "", style: {}});
el("job").textContent = data;
global.document = {getElementById: el};
const bytes = (s) => Uint8Array.from(Buffer.from(s, "latin1")).buffer;  // a document's bytes, latin1
global.fetch = (url) => Promise.resolve(url in docs
  ? {ok: true, text: () => Promise.resolve(docs[url]), arrayBuffer: () => Promise.resolve(bytes(docs[url]))}
  : {ok: false, text: () => Promise.resolve(""), arrayBuffer: () => Promise.resolve(new ArrayBuffer(0))});
global.setTimeout = () => 0;
const blobs = {};
global.URL = {createObjectURL: (blob) => { const u = "blob:page/" + Object.keys(blobs).length; blobs[u] = blob; return u; },
  revokeObjectURL: (u) => { delete blobs[u]; }};
new Function(script)();
setTimeout(() => 0);
setImmediate(() => setImmediate(() => setImmediate(() => setImmediate(() => {
  const out = {};
  for (const k in els) if (k !== "job") out[k] = {text: els[k].textContent, cls: els[k].className, w: els[k].style.width,
    hidden: els[k].hidden, src: els[k].src || "", type: els[k].src && blobs[els[k].src] ? blobs[els[k].src].type : "",
    size: els[k].src && blobs[els[k].src] ? blobs[els[k].src].size : 0};
  console.log(JSON.stringify(out));
}))));
"""


def test_the_script_shows_machine_text_as_text_and_clamps_numbers(tmp_path: Path):
    now = time.time()
    links = {"status": "s", "machines": [], "end": {"done": "d", "error": "e", "interrupted": "i"}}
    rec = record("cloud-render-x", launched_at=now - 3600)
    data = phone_page.embed_json(phone_page.page_data(rec, links, now + 3600))
    status = {
        "state": "rendering",
        "message": HOSTILE,
        "frames_done": [1, 2, 3, 4, 5, 6, 1e9, "7", None],
        "seconds_per_frame": 60.0,
        "heartbeat_epoch": now,
    }
    shown = shown_by_page(tmp_path, data, {"s": json.dumps(status)})
    assert shown["state"]["text"] == "Rendering"
    assert shown["frames"]["text"] == "6 of 24"  # 1e9, "7" and null are not frames of the job
    assert shown["left"]["text"] == "about 18 min"  # 18 frames x 60 s on one machine
    assert shown["cost"]["text"] == "about $0.50 of $12.00"  # 1 h x $0.50/h
    assert shown["bar"]["w"] == "25.0%"
    assert "\u202e" not in shown["msg"]["text"] and shown["msg"]["text"].startswith("</script>")
    # a status that lies about its numbers: clamped, never drawn past the page's bounds
    status.update(frames_done=list(range(1, 10_000)), seconds_per_frame=-5, heartbeat_epoch="soon")
    shown = shown_by_page(tmp_path, data, {"s": json.dumps(status), "e": json.dumps({"cause": HOSTILE})})
    assert shown["frames"]["text"] == "24 of 24" and shown["bar"]["w"] == "100.0%"
    assert shown["state"]["text"] == "Failed" and shown["left"]["text"] == "\u2014"


def runner(aws, tmp_path: Path, settings, rec: JobRecord):  # type: ignore[no-untyped-def]
    from cloud.job.cloud_steps import CloudSteps
    from cloud.job.events import EventQueue, LogLines
    from cloud.job.job_thread import JobRunner
    from cloud.job.records import RecordStore

    events = EventQueue()
    store = RecordStore(tmp_path / "jobs")
    store.save(rec)
    job = JobRunner(rec, settings, events, store, CloudSteps(tmp_path))
    job.write_page()
    lines = [
        line for event in events.drain(budget_s=5) if isinstance(event, LogLines) for line in event.lines
    ]
    return store.load(rec.job_id), lines


def test_the_job_thread_keeps_the_link_in_the_record_and_says_until_when(aws, bucket, tmp_path):
    rec, lines = runner(aws, tmp_path, aws.settings, record(bucket, job_id="job-phone-3"))
    assert rec.page_url and rec.page_expires > time.time() + WEEK - 60
    assert requests.get(rec.page_url, timeout=30).text.startswith("<!DOCTYPE html>")
    assert any("page for this job on a phone" in line and "works until" in line for line in lines)
    assert "job-phone-3" not in phone_page.session_links


def test_a_link_with_a_session_token_stays_out_of_the_record(aws, bucket, tmp_path):
    creds = client(aws.admin, "sts").get_session_token(DurationSeconds=3600)["Credentials"]
    temporary = replace(
        aws.admin,
        access_key_id=creds["AccessKeyId"],
        secret_access_key=creds["SecretAccessKey"],
        session_token=creds["SessionToken"],
    )
    rec, _lines = runner(aws, tmp_path, temporary, record(bucket, job_id="job-phone-4"))
    assert rec.page_url == "" and rec.page_expires <= time.time() + 3600
    assert creds["SessionToken"] not in (tmp_path / "jobs").joinpath("job-phone-4.json").read_text()
    url = phone_page.session_links.pop("job-phone-4")
    assert requests.get(url, timeout=30).status_code == 200


def test_a_page_that_cannot_be_written_costs_only_the_page(aws, tmp_path):
    rec, lines = runner(
        aws, tmp_path, aws.settings, record("cloud-render-no-such-bucket", job_id="job-phone-5")
    )
    assert rec.page_url == "" and rec.page_expires == 0
    assert any("] No page for a phone: " in line for line in lines), lines


def test_a_saved_copy_fetches_nothing_and_shows_the_documents_it_carries(tmp_path: Path):
    saved = time.time()
    rec = record("cloud-render-x", launched_at=saved - 7200)
    done = {"frames_done": list(range(1, 25)), "seconds": 7000.0}
    status = {
        "state": "done",
        "message": HOSTILE,
        "frames_done": list(range(1, 25)),
        "heartbeat_epoch": saved - 60,
    }
    html = phone_page.snapshot_page(rec, [status], {"done": done}, saved)
    assert html.count("<img") == 1 and "\u202e" not in html and html.count("</script>") == 2
    assert "connect-src 'none'" in html
    data = embedded(html)
    assert data["snapshot"]["statuses"][0]["message"] == HOSTILE
    shown = shown_by_page(tmp_path, phone_page.embed_json(data), {})
    assert shown["state"]["text"] == "Done" and shown["frames"]["text"] == "24 of 24"
    assert shown["cost"]["text"] == "about $0.99 of $12.00"  # until the last heartbeat: 1 h 59 min at $0.50/h
    assert shown["expires"]["text"].startswith("A saved copy")


JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4 + b"\xff\xd9"  # a JPEG's first and last bytes


def test_the_latest_frame_shows_only_as_a_jpeg_of_bounded_size_the_page_types_itself(tmp_path: Path):
    now = time.time()
    links = {"status": "s", "machines": [], "end": {}, "preview": "p"}
    rec = record("cloud-render-x", launched_at=now - 60)
    data = phone_page.embed_json(phone_page.page_data(rec, links, now + 3600))
    status = json.dumps({"state": "rendering", "frames_done": [1], "heartbeat_epoch": now})

    shown = shown_by_page(tmp_path, data, {"s": status, "p": JPEG.decode("latin1")})
    assert shown["latest"]["hidden"] is False
    assert shown["preview"]["src"].startswith("blob:") and shown["preview"]["type"] == "image/jpeg"
    assert shown["preview"]["size"] == len(JPEG)

    markup = b"<html><script>alert(1)</script></html>"  # a machine that writes markup there
    too_big = JPEG + b"\0" * contract.MAX_PREVIEW_BYTES
    for body in (markup, too_big, b""):
        shown = shown_by_page(tmp_path, data, {"s": status, "p": body.decode("latin1")})
        assert not shown.get("preview", {}).get("src") and shown.get("latest", {}).get("hidden") is not False
    shown = shown_by_page(tmp_path, data, {"s": status})  # none yet (no frame rendered): a 404
    assert not shown.get("preview", {}).get("src")


def test_the_latest_frame_link_is_signed_to_answer_as_an_image(aws, bucket):
    link = phone_page.write_page(aws.settings, record(bucket, job_id="job-phone-6"))
    preview = embedded(requests.get(link.url, timeout=30).text)["links"]["preview"]
    assert "jobs/job-phone-6/out/preview.jpg" in preview and "response-content-type=image%2Fjpeg" in preview
    # whatever a machine stored there and however it typed it, S3 answers it as a JPEG
    client(aws.admin, "s3").put_object(
        Bucket=bucket, Key="jobs/job-phone-6/out/preview.jpg", Body=b"<b>hi</b>", ContentType="text/html"
    )
    answer = requests.get(preview, timeout=30)
    assert answer.status_code == 200 and answer.headers["Content-Type"] == "image/jpeg"


def test_a_saved_copy_carries_the_latest_frame(tmp_path: Path):
    rec = record("cloud-render-x", launched_at=time.time() - 60)
    html = phone_page.snapshot_page(rec, [{"state": "done", "frames_done": [1]}], {}, time.time(), JPEG)
    shown = shown_by_page(tmp_path, phone_page.embed_json(embedded(html)), {})
    assert shown["latest"]["hidden"] is False and shown["preview"]["size"] == len(JPEG)


def test_a_quote_first_job_waiting_for_its_answer_says_what_the_rest_would_cost(aws, bucket, tmp_path):
    link = phone_page.write_page(aws.settings, record(bucket, job_id="job-phone-7", quote_first=True))
    links = embedded(requests.get(link.url, timeout=30).text)["links"]
    assert "jobs/job-phone-7/out/quote.json" in links["quote"]
    plain = phone_page.write_page(aws.settings, record(bucket, job_id="job-phone-8"))
    assert embedded(requests.get(plain.url, timeout=30).text)["links"]["quote"] == ""

    now = time.time()
    page = {"status": "s", "machines": [], "end": {}, "quote": "q"}
    data = phone_page.embed_json(
        phone_page.page_data(record(bucket, launched_at=now - 300), page, now + 3600)
    )
    status = {"state": "quoting", "message": HOSTILE, "frames_done": [1, 12, 24], "heartbeat_epoch": now}
    quote = {
        "scout_frames": [1, 12, 24],
        "seconds_per_frame": 90.0,
        "frames_total": 24,
        "frames_left": list(range(2, 23)),
    }
    shown = shown_by_page(tmp_path, data, {"s": json.dumps(status), "q": json.dumps(quote)})
    assert shown["state"]["text"] == "Waiting for your answer"
    assert shown["msg"]["text"] == (
        "The scout frames took about 1 min each: the other 21 frames would cost about $0.26. "
        "Answer Go On or Stop in Blender; the machine waits up to 20 min, then stops."
    )  # 21 x 90 s at $0.50/h
    quote.update(
        seconds_per_frame="fast", frames_left=None
    )  # a quote that lies: the machine's own words stay
    shown = shown_by_page(tmp_path, data, {"s": json.dumps(status), "q": json.dumps(quote)})
    assert shown["state"]["text"] == "Measuring a few frames" and "\u202e" not in shown["msg"]["text"]
