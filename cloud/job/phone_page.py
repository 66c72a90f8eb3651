"""The job on a phone: one static HTML page in the job's folder of the bucket, opened through a
presigned GET link (issue 24, item 2).

No server: at submit the add-on writes `jobs/<id>/phone.html` (outside `out/`, so no machine's
POST can replace it) with what it knows then (frames, machines, price per hour, cost cap, launch
time) and presigned GETs of the documents the machines write (`out/status.json`, each machine's
`out/machines/<i>/status.json`, and the end documents done/error/interrupted.json), every link
with the page's own lifetime: SigV4's 7 days at most, and never longer than the credentials
that sign it. The page's script fetches them (same host as the page: no CORS), and shows the
state, frames done of total, time left and an estimate of the cost so far against the cap.

What the machines write is untrusted: the script puts it on the page as text only
(`textContent`), validates and clamps every number, drops control and direction characters.
The page loads nothing from elsewhere: inline style and script allowed by their hashes in a
strict Content-Security-Policy, `connect-src` only the bucket's origin. The job's data is
JSON in a `<script type="application/json">` block, escaped so no value can close it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..aws import storage
from ..aws.session import AwsSettings
from ..machine import contract
from .records import EngineName, JobRecord

PAGE_NAME = "phone.html"
CONTENT_TYPE = "text/html; charset=utf-8"
MAX_MACHINE_LINKS = 64  # many machines: the first 64 machines' own statuses (the page stays small)
MIN_LIFETIME_S = 60
END_DOCUMENTS = ("done", "error", "interrupted")
PREVIEW_TYPE = "image/jpeg"

# Links signed with temporary credentials carry their session token: such a link is kept for
# this session only (here), never in the job record on disk (DESIGN rule 6).
session_links: dict[str, str] = {}


def page_key(job_id: str) -> str:
    return contract.job_prefix(job_id) + PAGE_NAME


@dataclass(frozen=True)
class PageLink:
    url: str
    expires_at: float  # seconds since the epoch

    @property
    def carries_session_token(self) -> bool:
        return "x-amz-security-token=" in self.url.lower()


def link_lifetime_s(settings: AwsSettings) -> int:
    """How long the page's links may live: 7 days (SigV4's limit), less when the credentials that
    sign them expire sooner (a link cannot outlive its session token)."""
    found = storage.signing_lifetime(settings)
    limit = storage.MAX_PRESIGN_S if found is None else found[0]
    return max(MIN_LIFETIME_S, min(storage.MAX_PRESIGN_S, int(limit)))


def page_data(record: JobRecord, links: dict[str, Any], expires_at: float) -> dict[str, Any]:
    """What the page knows from submit (the script's constants)."""
    return {
        "v": 1,
        "job_id": record.job_id,
        "scene": record.scene_name,
        "frames_total": len(record.frames),
        "frames": [min(record.frames), max(record.frames)] if record.frames else [],
        "machines": max(1, int(record.machines)),
        "instance_type": record.instance_type,
        "region": record.region,
        "spot": bool(record.spot),
        "price_per_hour": float(record.price_per_hour),
        "max_cost": float(record.max_cost),
        "launched_at": float(record.launched_at or record.created),
        "expires_at": float(expires_at),
        "links": links,
    }


def embed_json(data: Any) -> str:
    """JSON for a `<script type="application/json">` block: ASCII only (no U+2028, no direction
    marks raw), and no `<`, `>` or `&` at all, so no value can close the block or open a comment."""
    text = json.dumps(data, ensure_ascii=True, sort_keys=True, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def render(data: dict[str, Any]) -> str:
    """The page: the template with the job's data, its CSP naming the inline script and style
    by hash and the bucket's origin (of the links) as the only place it may fetch from."""
    links = data["links"]
    urls = [
        links["status"],
        *links["machines"],
        *links["end"].values(),
        links.get("preview", ""),
        links.get("quote", ""),
    ]
    origins = sorted({origin_of(u) for u in urls if u}) or ["'none'"]  # a saved copy fetches nothing
    # The latest frame is fetched like the JSON (connect-src), checked, and shown from a blob:
    # the page never points an <img> at the bucket, so nothing loads from anywhere without the script.
    csp = (
        "default-src 'none'; "
        f"script-src {_hash(SCRIPT)}; style-src {_hash(STYLE)}; "
        f"connect-src {' '.join(origins)}; img-src blob:; "
        "base-uri 'none'; form-action 'none'"
    )
    return (
        TEMPLATE.replace("@CSP@", csp)
        .replace("@STYLE@", STYLE)
        .replace("@SCRIPT@", SCRIPT)
        .replace("@DATA@", embed_json(data))
    )


def write_page(settings: AwsSettings, record: JobRecord, now: float | None = None) -> PageLink:
    """Write the job's page to its folder in the bucket; the presigned link that opens it."""
    bucket, job_id = record.bucket, record.job_id
    lifetime = link_lifetime_s(settings)
    expires_at = (time.time() if now is None else now) + lifetime
    out = contract.out_prefix(job_id)

    def link(key: str) -> str:
        return storage.get_link(settings, bucket, key, lifetime)

    machines = max(1, int(record.machines))
    # The engine chosen at submit says where the machines write (DESIGN.md rule 12): one EC2
    # machine writes out/status.json and its end documents; an array job's children each their own folder.
    one_machine = record.cloud_engine == EngineName.EC2.value
    links = {
        "status": link(out + "status.json"),
        "machines": []
        if one_machine
        else [
            link(out + contract.machine_folder(i) + "status.json")
            for i in range(min(machines, MAX_MACHINE_LINKS))
        ],
        "end": {name: link(out + name + ".json") for name in END_DOCUMENTS} if one_machine else {},
        # Quote First: the scout frames' measure, while the machine waits for the artist's answer.
        "quote": link(out + "quote.json") if one_machine and record.quote_first else "",
        # Whichever machine rendered the latest frame wrote it: one name for the whole job.
        "preview": storage.get_link(settings, bucket, contract.preview_key(job_id), lifetime, PREVIEW_TYPE),
    }
    html = render(page_data(record, links, expires_at))
    storage.put_text(settings, bucket, page_key(job_id), html, content_type=CONTENT_TYPE)
    return PageLink(url=link(page_key(job_id)), expires_at=expires_at)


def snapshot_page(
    record: JobRecord,
    statuses: list[dict[str, Any]],
    end: dict[str, dict[str, Any]],
    saved_at: float,
    preview: bytes = b"",
) -> str:
    """A copy of the page that fetches nothing: the machines' documents (and the latest frame,
    small) as they were at `saved_at` ride in its data (the demo leaves one in demo-output/),
    read by the same validating script as the live ones."""
    data = page_data(record, {"status": "", "machines": [], "end": {}, "preview": ""}, 0.0)
    data["snapshot"] = {"statuses": statuses, "end": end, "saved_at": saved_at}
    if preview and len(preview) <= contract.MAX_PREVIEW_BYTES:
        data["snapshot"]["preview"] = base64.b64encode(preview).decode()
    return render(data)


STYLE = """
:root{color-scheme:light dark;--fg:#1b1b1f;--bg:#f6f6f8;--card:#fff;--dim:#666;--bar:#e3e3e8;--ok:#2f7d32;--bad:#b3261e;--acc:#e87d0d}
@media (prefers-color-scheme:dark){:root{--fg:#eee;--bg:#141416;--card:#1f1f23;--dim:#9a9aa2;--bar:#34343a}}
*{box-sizing:border-box}
body{margin:0;font:16px/1.4 -apple-system,system-ui,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
main{max-width:34rem;margin:0 auto;padding:1rem}
h1{font-size:1.2rem;margin:.2rem 0 .1rem;overflow-wrap:anywhere}
.sub{color:var(--dim);font-size:.85rem;margin:0 0 1rem;overflow-wrap:anywhere}
.card{background:var(--card);border-radius:12px;padding:1rem;margin:0 0 .8rem;box-shadow:0 1px 3px rgba(0,0,0,.12)}
.state{font-size:1.4rem;font-weight:600}
.state.done{color:var(--ok)}.state.failed,.state.stale{color:var(--bad)}
.msg{color:var(--dim);margin:.3rem 0 0;overflow-wrap:anywhere;white-space:pre-wrap}
.bar{height:12px;border-radius:6px;background:var(--bar);overflow:hidden;margin:.6rem 0 .3rem}
.bar>div{height:100%;width:0;background:var(--acc);transition:width .4s}
dl{display:grid;grid-template-columns:auto 1fr;gap:.45rem 1rem;margin:0}
dt{color:var(--dim)}dd{margin:0;text-align:right;font-variant-numeric:tabular-nums;overflow-wrap:anywhere}
.note{color:var(--dim);font-size:.8rem;margin:.6rem 0 0}
#preview{display:block;width:100%;height:auto;border-radius:8px;background:var(--bar)}
"""

_SCRIPT = r"""
"use strict";
(function () {
  var D = JSON.parse(document.getElementById("job").textContent);
  var POLL_MS = 15000, STALE_S = 180, MAX_PREVIEW = @MAX_PREVIEW@, QUOTE_WAIT_S = @QUOTE_WAIT_S@;
  var FINAL = {done: 1, failed: 1, interrupted: 1, capped: 1, cancelled: 1};
  var WORDS = {booting: "Starting the machine", installing: "Installing Blender",
    downloading: "Downloading the scene", rendering: "Rendering", uploading: "Uploading frames",
    quoting: "Measuring a few frames", merging: "Merging the parts", encoding: "Encoding the movie",
    done: "Done", failed: "Failed", interrupted: "Interrupted", capped: "Stopped at the cost cap",
    cancelled: "Cancelled"};
  function $(id) { return document.getElementById(id); }
  function say(id, text) { $(id).textContent = String(text); }
  // A number from the machine: finite and within [lo, hi], else null (never trusted further).
  function num(v, lo, hi) {
    if (typeof v !== "number" || !isFinite(v) || v < lo || v > hi) return null;
    return v;
  }
  // Text from the machine: a string, no control or direction characters, short.
  function text(v, max) {
    if (typeof v !== "string") return "";
    return v.replace(/[\u0000-\u001f\u007f-\u009f\u061c\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]/g, " ")
      .slice(0, max).trim();
  }
  function money(x) { return x < 0.005 && x > 0 ? "under $0.01" : "$" + x.toFixed(2); }
  function span(s) {
    s = Math.max(0, Math.round(s));
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
    return h ? h + " h " + m + " min" : m ? m + " min" : s + " s";
  }
  function when(epoch) { return new Date(epoch * 1000).toLocaleString(); }
  function get(url) {
    return fetch(url, {cache: "no-store", credentials: "omit", redirect: "error"}).then(function (r) {
      if (!r.ok) return null;
      return r.text().then(function (body) {
        if (body.length > 262144) return null;
        try { var d = JSON.parse(body); return d && typeof d === "object" && !Array.isArray(d) ? d : null; }
        catch (e) { return null; }
      });
    }, function () { return null; });
  }
  var total = num(D.frames_total, 0, 1e7) || 0;
  var machines = num(D.machines, 1, 10000) || 1;
  var price = num(D.price_per_hour, 0, 1e4) || 0;
  var cap = num(D.max_cost, 0, 1e7) || 0;
  var span_ = Array.isArray(D.frames) ? D.frames : [];
  var first = num(span_[0], -1048574, 1048574), last = num(span_[1], -1048574, 1048574);
  if (first === null || last === null) first = -1048574, last = 1048574;
  var launched = num(D.launched_at, 0, 1e11) || Date.now() / 1000;
  say("title", D.scene ? "Cloud Render: " + text(D.scene, 120) : "Cloud Render job");
  say("sub", text(D.job_id, 80) + " \u00b7 " + machines + " \u00d7 " + text(D.instance_type, 40) +
    (D.spot ? " (spot)" : "") + " in " + text(D.region, 30));
  var snap = D.snapshot && typeof D.snapshot === "object" ? D.snapshot : null;
  say("expires", snap ? "A saved copy: the job as it was at " + when(num(snap.saved_at, 0, 1e11) || 0) + "."
    : "This page works until " + when(num(D.expires_at, 0, 1e11) || 0) + ".");
  function plain(d) { return d && typeof d === "object" && !Array.isArray(d) ? d : null; }

  function show(docs) {
    var st = null, done = {}, spf = [], beat = 0, msg = "", state = "";
    docs.statuses.forEach(function (s) {
      if (!s) return;
      var t = text(s.state, 20);
      if (!WORDS.hasOwnProperty(t)) return;
      if (!st || t === "rendering") st = s, state = t;
      if (Array.isArray(s.frames_done)) s.frames_done.slice(0, 1e6).forEach(function (f) {
        if (num(f, first, last) !== null && Math.floor(f) === f) done[f] = 1;
      });
      var sp = num(s.seconds_per_frame, 0, 315360000);
      if (sp) spf.push(sp);
      var b = num(s.heartbeat_epoch, 0, 1e11);
      if (b && b > beat) beat = b;
      if (!msg) msg = text(s.message, 300);
    });
    var end = docs.end;
    if (end.done) state = "done";
    else if (end.error) state = "failed", msg = text(end.error.cause, 300) || msg;
    else if (end.interrupted) state = state in FINAL ? state : "interrupted";
    var doneCount = Math.min(Object.keys(done).length, total);
    if (end.done && Array.isArray(end.done.frames_done))
      doneCount = Math.min(total, Math.max(doneCount, end.done.frames_done.length));
    var now = snap ? num(snap.saved_at, 0, 1e11) || Date.now() / 1000 : Date.now() / 1000;
    var stale = state && !(state in FINAL) && beat && now - beat > STALE_S;
    var el = $("state");
    el.className = "state " + (stale ? "stale" : state);
    var q = state === "quoting" ? plain(docs.quote) : null, qs = q ? num(q.seconds_per_frame, 0, 315360000) : null;
    var qleft = q && Array.isArray(q.frames_left) ? Math.min(q.frames_left.length, total) : null;
    if (qs !== null && qleft !== null) {  // measured: the machine waits for Go On or Stop
      var rest = qleft * qs / 3600 * price * machines;
      msg = "The scout frames took about " + span(qs) + " each: the other " + qleft + " frames would cost about " +
        money(rest) + ". Answer Go On or Stop in Blender; the machine waits up to " + span(QUOTE_WAIT_S) +
        ", then stops.";
    }
    say("state", !state ? "Waiting for the machine" : stale ? "No word from the machine"
      : qs !== null && qleft !== null ? "Waiting for your answer" : WORDS[state]);
    say("msg", stale ? "Last heard " + when(beat) + ". " + msg : msg);
    $("bar").style.width = (total ? Math.min(100, 100 * doneCount / total) : 0).toFixed(1) + "%";
    say("frames", doneCount + " of " + total);
    var per = spf.length ? spf.reduce(function (a, b) { return a + b; }, 0) / spf.length : 0;
    say("left", state in FINAL ? "\u2014" : per && total > doneCount
      ? "about " + span((total - doneCount) * per / machines) : "\u2014");
    var until = state in FINAL || stale ? (beat || now) : now;
    var cost = Math.max(0, until - launched) / 3600 * price * machines;
    if (cap) cost = Math.min(cost, cap);
    say("cost", (cost >= 0.005 ? "about " : "") + money(cost) + (cap ? " of " + money(cap) : ""));
    say("updated", beat ? "Machine last heard " + when(beat) + "." : "");
    return state in FINAL;
  }
  // The latest frame, small: bytes from a machine, shown only if they are a JPEG of bounded size,
  // as an image typed by the page itself (never markup), from a blob: URL.
  var shown = "";
  function picture(bytes) {
    if (!bytes || bytes.length < 4 || bytes.length > MAX_PREVIEW) return;
    if (bytes[0] !== 0xff || bytes[1] !== 0xd8 || bytes[2] !== 0xff) return;
    var img = $("preview");
    if (shown) URL.revokeObjectURL(shown);
    shown = URL.createObjectURL(new Blob([bytes], {type: "image/jpeg"}));
    img.src = shown;
    $("latest").hidden = false;
  }
  function fetchPicture(url) {
    if (typeof url !== "string" || !url) return;
    fetch(url, {cache: "no-store", credentials: "omit", redirect: "error"}).then(function (r) {
      if (!r.ok) return null;
      return r.arrayBuffer().then(function (buf) { picture(new Uint8Array(buf)); });
    }, function () { return null; });
  }
  function poll() {
    if (snap) {
      if (typeof snap.preview === "string" && snap.preview.length <= MAX_PREVIEW * 4 / 3 + 4) {
        try {
          var raw = atob(snap.preview), bytes = new Uint8Array(raw.length);
          for (var i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
          picture(bytes);
        } catch (e) { /* not base64: no picture */ }
      }
      var ends = plain(snap.end) || {};
      show({statuses: Array.isArray(snap.statuses) ? snap.statuses.slice(0, 10000).map(plain) : [],
        end: {done: plain(ends.done), error: plain(ends.error), interrupted: plain(ends.interrupted)}});
      return;
    }
    var L = D.links || {}, end = L.end || {}, names = Object.keys(end);
    var urls = [L.status].concat(L.machines || []);
    var asks = urls.map(get).concat(names.map(function (n) { return get(end[n]); }));
    if (typeof L.quote === "string" && L.quote) asks.push(get(L.quote));
    Promise.all(asks).then(function (got) {
      var docs = {statuses: got.slice(0, urls.length), end: {}, quote: null};
      names.forEach(function (n, i) { docs.end[n] = got[urls.length + i]; });
      if (typeof L.quote === "string" && L.quote) docs.quote = plain(got[urls.length + names.length]);
      var ended = show(docs);
      fetchPicture(L.preview);
      if (!ended && Date.now() / 1000 < (num(D.expires_at, 0, 1e11) || 0)) setTimeout(poll, POLL_MS);
    });
  }
  poll();
})();
"""

SCRIPT = _SCRIPT.replace("@MAX_PREVIEW@", str(contract.MAX_PREVIEW_BYTES)).replace(
    "@QUOTE_WAIT_S@", str(int(contract.QUOTE_WAIT_S))
)

TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="@CSP@">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<meta name="robots" content="noindex">
<title>Cloud Render job</title>
<style>@STYLE@</style>
</head>
<body>
<main>
<h1 id="title">Cloud Render job</h1>
<p class="sub" id="sub"></p>
<section class="card">
<div class="state" id="state">Loading\u2026</div>
<p class="msg" id="msg"></p>
<div class="bar"><div id="bar"></div></div>
<dl>
<dt>Frames done</dt><dd id="frames">\u2014</dd>
<dt>Time left</dt><dd id="left">\u2014</dd>
<dt>Cost so far</dt><dd id="cost">\u2014</dd>
</dl>
<p class="note">The cost is an estimate: machines \u00d7 price per hour \u00d7 time since launch, \
capped at the job's limit. Your AWS bill is the exact figure.</p>
</section>
<section class="card" id="latest" hidden>
<img id="preview" alt="The latest frame">
<p class="note">The latest frame, small.</p>
</section>
<p class="note" id="updated"></p>
<p class="note" id="expires"></p>
</main>
<script type="application/json" id="job">@DATA@</script>
<script>@SCRIPT@</script>
</body>
</html>
"""
