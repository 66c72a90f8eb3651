#!/bin/bash
# Cloud Render boot script (EC2 user-data), filled in by cloud/job/user_data.py.
# It holds no credentials: every URL below is presigned and expires with the job.

# 1. Dead-man timer first: whatever fails below, the machine powers off (and, launched with
#    shutdown behaviour "terminate", stops billing). shutdown/poweroff, never halt.
shutdown -h +@@MAX_MINUTES@@ "Cloud Render time cap" \
  || (nohup sh -c 'sleep $((@@MAX_MINUTES@@ * 60)); poweroff' >/dev/null 2>&1 &)

ROOT="${CLOUD_RENDER_ROOT:-/var/lib/cloud-render}"
mkdir -p "$ROOT/worker/machine" "$ROOT/run"
cd "$ROOT" || exit 1
exec > >(tee -a "$ROOT/bootstrap.log") 2>&1
echo "[boot $(date -u +%H:%M:%S)] Cloud Render boot script on $(uname -sr), dead-man in @@MAX_MINUTES@@ min"

@@TOKENS@@
POST_URL=@@POST_URL@@
KEY_PREFIX=@@KEY_PREFIX@@
# A child of an AWS Batch array job writes its own log and status under machines/<index>/.
if [ -n "${AWS_BATCH_JOB_ID:-}" ]; then KEY_PREFIX="${KEY_PREFIX}machines/${AWS_BATCH_JOB_ARRAY_INDEX:-0}/"; fi
POST_FIELDS=(@@POST_FIELDS@@)

post() {  # post KEY FILE: one object under the job's out/ prefix, through the presigned POST
  # Returns 0 when stored, 2 when S3 refuses it (4xx: retrying will not help), 1 otherwise.
  local try code
  for try in 1 2 3 4 5; do
    code=$(curl -sS --connect-timeout 10 --max-time 120 -o "$ROOT/post-reply" -w '%{http_code}' \
      "${POST_FIELDS[@]}" --form-string "key=${KEY_PREFIX}$1" -F "file=@$2" "$POST_URL")
    case "$code" in
      2??) return 0 ;;
      4??) echo "[boot] upload of $1 refused: HTTP $code $(grep -o '<Message>[^<]*' "$ROOT/post-reply" | cut -c10-)"
           return 2 ;;
    esac
    sleep $((try * 2))
  done
  return 1
}

ship_log() { sync; post logs/000000.log "$ROOT/bootstrap.log" || echo "could not ship the boot log"; }

fail() {  # fail KIND CAUSE: error.json with the boot log's tail, then power off
  echo "[boot] failed: $2"
  python3 - "$1" "$2" "$ROOT/bootstrap.log" > "$ROOT/error.json" 2>/dev/null <<'PY' || printf '{"kind": "%s", "cause": "%s"}\n' "$1" "$2" > "$ROOT/error.json"
import json, sys
lines = open(sys.argv[3], errors="replace").read().splitlines()[-50:]
print(json.dumps({"kind": sys.argv[1], "cause": sys.argv[2], "last_lines": lines}))
PY
  post error.json "$ROOT/error.json"
  ship_log
  shutdown -h now || poweroff
  exit 1
}

fetch() {  # fetch URL DEST: retries network errors and 5xx; a 403/404 will not get better
  local try code
  for try in 1 2 3 4 5 6; do
    code=$(curl -sS --connect-timeout 10 --max-time 600 -o "$2" -w '%{http_code}' "$1")
    case "$code" in
      2??) return 0 ;;
      403|404) echo "[boot] download of $(basename "$2") failed: HTTP $code"; return 1 ;;
    esac
    echo "[boot] download of $(basename "$2") failed (HTTP ${code:-none}, try $try), retrying"
    sleep $((try * 2))
  done
  return 1
}

printf '{"state": "booting", "heartbeat": "%s"}\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$ROOT/status.json"
post status.json "$ROOT/status.json"
case $? in
  0) ;;
  2) fail credentials_expired "The bucket refused the render machine's first upload: the AWS sign-in that signed its upload link has probably expired." ;;
  *) echo "[boot] could not post the first status" ;;
esac

# 2. Libraries Blender needs that the Deep Learning AMIs lack.
echo "[boot $(date -u +%H:%M:%S)] installing Blender's runtime libraries"
if command -v dnf >/dev/null 2>&1; then
  dnf install -y -q @@DNF_PACKAGES@@ || echo "[boot] dnf install failed; going on"
elif command -v apt-get >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  (apt-get update -q && apt-get install -y -q --no-install-recommends @@APT_PACKAGES@@) \
    || echo "[boot] apt-get install failed; going on"
else
  echo "[boot] no dnf or apt-get: assuming the libraries are present"
fi

# 3. The worker (one archive, trusted by the SHA-256 written here) and the job spec.
echo "[boot $(date -u +%H:%M:%S)] downloading the worker and the job spec"
python3 -c 'import sys; sys.exit(sys.version_info < (3, 9))' || fail internal "This machine has no Python 3.9 or newer."
fetch @@WORKER_URL@@ "$ROOT/worker.tar.gz" || fail download "The worker archive could not be downloaded."
# Unpacked by hand, not by tar: plain files only, each a relative path without "..".
unpacked=$(python3 - "$ROOT/worker.tar.gz" @@WORKER_SHA256@@ "$ROOT/worker/machine" <<'PY'
import hashlib, io, os, sys, tarfile
path, want, dest = sys.argv[1:4]
data = open(path, "rb").read()
if hashlib.sha256(data).hexdigest() != want:
    print("The worker archive is not the one this job was given (its SHA-256 differs). Submit again.")
    sys.exit(1)
with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
    members = tar.getmembers()
    for m in members:
        parts = m.name.split("/")
        if not m.isfile() or m.name.startswith("/") or any(p in ("", ".", "..") for p in parts):
            print(f"The worker archive holds {m.name!r}, which is not a plain file inside it.")
            sys.exit(1)
    for m in members:
        target = os.path.join(dest, *m.name.split("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as out:
            out.write(tar.extractfile(m).read())
print(f"{len(members)} files")
PY
) || fail download "${unpacked:-The worker archive could not be unpacked.}"
echo "[boot] worker unpacked: $unpacked"
fetch @@SPEC_URL@@ "$ROOT/job-spec.json" || fail download "The job spec could not be downloaded."

# 4. Hand over: the supervisor renders, writes its own log chunks from 000001, and powers off.
echo "[boot $(date -u +%H:%M:%S)] starting the supervisor"
ship_log
(cd "$ROOT/worker" && python3 -m machine --spec "$ROOT/job-spec.json" --work "$ROOT/run")
rc=$?
echo "[boot] supervisor exited with $rc"
# In a Batch container the exit status is the child's result; the job's timeout is its dead-man.
if [ -n "${AWS_BATCH_JOB_ID:-}" ]; then exit "$rc"; fi
shutdown -h now || poweroff
