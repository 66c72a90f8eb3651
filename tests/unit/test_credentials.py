"""Pasted keys are stored encrypted, never leak, and are checked with STS before use."""

from __future__ import annotations

import json
import logging
import os
import stat
from dataclasses import replace

import pytest

from cloud.aws import bucket_setup, credentials, storage, uploads
from cloud.aws.credentials import AccessKeys, Identity
from cloud.aws.session import AwsSettings
from cloud.errors import CloudError
from dev.emulator import create_artist
from dev.error_server import AwsReplyServer, caller_identity


@pytest.fixture
def iam_user(aws):
    """An IAM user in the emulator holding Cloud Render's daily Render policy; the emulator's
    strict layer checks its signatures and authorises its requests as AWS would."""
    return AccessKeys(*create_artist(aws.admin, ("render", "setup")))


def test_keys_are_encrypted_private_and_apart_from_their_key(tmp_path):
    keys = credentials.validate("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    credentials.save_keys(tmp_path / "prefs", keys)

    data = tmp_path / "prefs" / credentials.DATA_FILE
    key = tmp_path / "prefs" / credentials.KEY_FILE
    assert data.exists() and key.exists() and data != key
    for path in (data, key):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert b"wJalrXUtnFEMI" not in path.read_bytes()
        assert b"AKIAIOSFODNN7EXAMPLE" not in path.read_bytes()
    assert credentials.load_keys(tmp_path / "prefs") == keys
    assert credentials.has_keys(tmp_path / "prefs")

    credentials.delete_keys(tmp_path / "prefs")
    assert credentials.load_keys(tmp_path / "prefs") is None


def test_pasted_keys_are_cleaned_and_checked():
    keys = credentials.validate("  AKIAIOSFODNN7EXAMPLE\n", " wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY \n")
    assert keys.access_key_id == "AKIAIOSFODNN7EXAMPLE"
    assert keys.secret_access_key == "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"

    with pytest.raises(CloudError) as caught:
        credentials.validate("my-password", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    assert caught.value.message == "That access key ID does not look like an AWS access key ID."
    assert "AKIA" in caught.value.action

    with pytest.raises(CloudError) as caught:
        credentials.validate("AKIAIOSFODNN7EXAMPLE", "short!")
    assert caught.value.message == "That secret access key does not look like an AWS secret key."
    assert "short!" not in str(caught.value) + caught.value.detail


def test_repr_shows_only_the_last_four_characters():
    keys = AccessKeys("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "token-value")
    for text in (repr(keys), str(keys), f"{keys}"):
        assert "wJalrXUtnFEMI" not in text and "AKIAIOSFODNN7EXA" not in text and "token-value" not in text
    assert repr(keys) == "AccessKeys(…MPLE)"


def test_tampered_key_file_asks_to_paste_again(tmp_path):
    credentials.save_keys(tmp_path, credentials.validate("AKIAIOSFODNN7EXAMPLE", "A" * 40))
    (tmp_path / credentials.KEY_FILE).write_bytes(b"not a fernet key")
    with pytest.raises(CloudError) as caught:
        credentials.load_keys(tmp_path)
    assert caught.value.code == "keys_unreadable"
    assert "Paste your access key again" in caught.value.action


def _store(directory, payload) -> None:
    """A key store that decrypts (a right Fernet key, a right token) around `payload`."""
    from cryptography.fernet import Fernet

    directory.mkdir(parents=True, exist_ok=True)
    fernet_key = Fernet.generate_key()
    (directory / credentials.KEY_FILE).write_bytes(fernet_key)
    (directory / credentials.DATA_FILE).write_bytes(Fernet(fernet_key).encrypt(json.dumps(payload).encode()))


@pytest.mark.parametrize(
    "payload",
    [
        {"id": None, "secret": None},
        {},
        ["AKIAIOSFODNN7EXAMPLE", "A" * 40],
        "AKIAIOSFODNN7EXAMPLE",
        {"id": 7, "secret": ["x"]},
        {"id": "", "secret": ""},
        {"id": "AKIAIOSFODNN7EXAMPLE", "secret": None},
        {"id": "AKIAIOSFODNN7EXAMPLE", "secret": "A" * 40, "token": 12},
    ],
    ids=["nulls", "empty", "list", "text", "wrong-types", "empty-strings", "no-secret", "bad-token"],
)
def test_a_store_that_decrypts_to_no_key_pair_is_damaged_not_the_environments_keys(tmp_path, payload):
    """Valid encryption around a malformed payload: before, a KeyError or TypeError escaped, and
    {"id": null, "secret": null} loaded and signed with the environment's default credentials
    (AKIAEXAMPLETESTKEY00 here). Now the artist is told the keys are damaged, and nothing signs."""
    _store(tmp_path, payload)
    with pytest.raises(CloudError) as caught:
        credentials.with_stored_keys(AwsSettings(), tmp_path)
    assert caught.value.code == "keys_unreadable"
    assert caught.value.message == "The saved AWS keys are damaged and could not be read back."
    assert "Paste your access key again" in caught.value.action


def test_no_saved_keys(tmp_path):
    with pytest.raises(CloudError) as caught:
        credentials.with_stored_keys(AwsSettings(), tmp_path)
    assert caught.value.message == "No AWS access key has been saved yet."
    assert "AWS Profile" in caught.value.action


def test_profile_source_drops_pasted_keys():
    settings = AwsSettings(access_key_id="AKIAIOSFODNN7EXAMPLE", secret_access_key="A" * 40)
    profiled = credentials.with_profile(settings, "studio")
    assert (
        profiled.profile == "studio" and profiled.access_key_id is None and profiled.secret_access_key is None
    )


def test_verify_returns_the_iam_user(aws, iam_user, tmp_path):
    credentials.save_keys(tmp_path, iam_user)
    identity = credentials.verify(credentials.with_stored_keys(aws.settings, tmp_path))
    assert identity == Identity(
        account="123456789012", arn="arn:aws:iam::123456789012:user/artist", user_name="artist"
    )


def test_root_keys_are_refused():
    with AwsReplyServer() as server:
        server.reply = caller_identity("arn:aws:iam::123456789012:root")
        settings = AwsSettings(
            access_key_id="AKIAIOSFODNN7EXAMPLE",
            secret_access_key="A" * 40,
            service_endpoints=(("sts", server.url),),
        )
        with pytest.raises(CloudError) as caught:
            credentials.verify(settings)
    err = caught.value
    assert err.code == "root_credentials"
    assert "root keys" in err.message
    assert "IAM > Users > Create user" in err.action and "Copy Render Policy" in err.action


def test_the_secret_is_written_nowhere(aws, iam_user, tmp_path, caplog):
    """Store, verify, use and fail with the keys, then search every file and log line for them."""
    caplog.set_level(logging.DEBUG)
    prefs = tmp_path / "extension-user-dir"
    credentials.save_keys(prefs, credentials.validate(iam_user.access_key_id, iam_user.secret_access_key))
    settings = credentials.with_stored_keys(aws.settings, prefs)
    logging.getLogger("cloud").info("settings in use: %r", settings)

    credentials.verify(settings)
    bucket = bucket_setup.ensure_bucket(settings, tmp_path / "buckets.json")
    scene = tmp_path / "scene.blend"
    scene.write_bytes(b"BLENDER scene bytes")
    sha = uploads.hash_file(scene)
    uploads.upload_files(settings, bucket, [(scene, sha, scene.stat().st_size)])
    storage.put_json(settings, bucket, "jobs/j1/job.json", {"job": "j1", "settings": repr(settings)})
    storage.download(settings, bucket, f"cas/{sha}", tmp_path / "back" / "scene.blend")
    messages = []
    for broken in (
        replace(settings, secret_access_key=iam_user.secret_access_key[::-1]),
        replace(settings, access_key_id="AKIA" + iam_user.secret_access_key[:16].upper().replace("/", "A")),
    ):
        with pytest.raises(CloudError) as caught:
            credentials.verify(broken)
        err = caught.value
        messages.append(" ".join([str(err), repr(err), err.message, err.action, err.detail, repr(broken)]))
        logging.getLogger("cloud").error("verify failed: %s (%s)", err, err.detail)
    (tmp_path / "errors.txt").write_text("\n".join(messages))

    secret = iam_user.secret_access_key
    assert (tmp_path / "back" / "scene.blend").read_bytes() == b"BLENDER scene bytes"
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) >= 5
    for path in written:
        data = path.read_bytes()
        assert secret.encode() not in data, path
        assert secret[::-1].encode() not in data, path
        assert iam_user.access_key_id.encode() not in data, path
    assert secret not in caplog.text and secret[::-1] not in caplog.text
    cloud_lines = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("cloud"))
    assert "verify failed" in cloud_lines and iam_user.access_key_id not in cloud_lines
    # The job record written to S3 holds no secret either.
    record = json.loads(storage.get_bytes(settings, bucket, "jobs/j1/job.json", 1024) or b"")
    assert secret not in json.dumps(record)
