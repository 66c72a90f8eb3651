"""Where the artist's AWS keys live, and who they belong to.

Two sources: an AWS profile (boto3's own chain reads ~/.aws, the environment, SSO), or an
access key pair pasted into the add-on's preferences. Pasted keys are encrypted with Fernet
(AES + HMAC from `cryptography`) in a directory the caller chooses (the extension's user
directory), never in a .blend: `keys.bin` holds the ciphertext and `keys.key` the Fernet key,
both mode 0600, so the data file alone reveals nothing. This protects against the keys
leaking through backups, screenshots of a file browser or a shared .blend; it cannot protect
against malware running as the same user, which could read both files (as it could ~/.aws).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from ..errors import CloudError, ErrorCode
from .error_rules import translating
from .session import AwsSettings, client

DATA_FILE = "keys.bin"
KEY_FILE = "keys.key"

_KEY_ID = re.compile(r"^(AKIA|ASIA)[A-Z0-9]{12,124}$")
_SECRET = re.compile(r"^[A-Za-z0-9/+=]{20,128}$")
_ROOT_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:root$")


@dataclass(frozen=True)
class AccessKeys:
    """A pasted key pair; repr() shows only the last four characters of the key id."""

    access_key_id: str = field(repr=False)
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        return f"AccessKeys({mask(self.access_key_id)})"

    __str__ = __repr__


@dataclass(frozen=True)
class Identity:
    """Who the keys belong to, as STS reports it."""

    account: str
    arn: str
    user_name: str


def mask(access_key_id: str) -> str:
    """What the UI may show of a key id: enough to recognise it, not enough to use it."""
    return "…" + access_key_id[-4:] if len(access_key_id) > 8 else "…"


def validate(access_key_id: str, secret_access_key: str) -> AccessKeys:
    """Clean up what was pasted (spaces, newlines) and reject what cannot be a key pair."""
    key_id = "".join(access_key_id.split())
    secret = "".join(secret_access_key.split())
    if not _KEY_ID.match(key_id):
        raise CloudError(
            "That access key ID does not look like an AWS access key ID.",
            "Copy the 'Access key' value (it starts with AKIA) from the AWS console and paste it again.",
            code=ErrorCode.BAD_KEY_FORMAT,
        )
    if not _SECRET.match(secret):
        raise CloudError(
            "That secret access key does not look like an AWS secret key.",
            "Copy the 'Secret access key' value from the AWS console (shown once, when the key is created) and paste it again.",
            code=ErrorCode.BAD_KEY_FORMAT,
        )
    return AccessKeys(key_id, secret)


def _write_private(path: Path, data: bytes) -> None:
    """Write atomically, readable by this user only from the first byte on."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        os.chmod(tmp, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def save_keys(directory: Path, keys: AccessKeys) -> None:
    """Encrypt and store a key pair (a new Fernet key each time)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        os.chmod(directory, 0o700)
    fernet_key = Fernet.generate_key()
    payload = json.dumps(
        {"id": keys.access_key_id, "secret": keys.secret_access_key, "token": keys.session_token}
    ).encode()
    _write_private(directory / KEY_FILE, fernet_key)
    _write_private(directory / DATA_FILE, Fernet(fernet_key).encrypt(payload))


def load_keys(directory: Path) -> AccessKeys | None:
    """The stored key pair, or None when none was saved."""
    directory = Path(directory)
    data_path, key_path = directory / DATA_FILE, directory / KEY_FILE
    if not data_path.exists() or not key_path.exists():
        return None
    try:
        payload = json.loads(Fernet(key_path.read_bytes().strip()).decrypt(data_path.read_bytes()))
    except (InvalidToken, ValueError, OSError):
        raise _damaged() from None
    keys = _stored_pair(payload)
    if keys is None:
        raise _damaged()
    return keys


def _damaged() -> CloudError:
    return CloudError(
        "The saved AWS keys are damaged and could not be read back.",
        "Paste your access key again in Preferences > Add-ons > Cloud Render.",
        code=ErrorCode.KEYS_UNREADABLE,
    )


def _stored_pair(payload: object) -> AccessKeys | None:
    """The key pair a decrypted store holds, or None when it is not one: a store that decrypts
    but names no key (`{"id": null}`) would otherwise sign with whatever the environment has."""
    if not isinstance(payload, dict):
        return None
    key_id, secret, token = payload.get("id"), payload.get("secret"), payload.get("token")
    if (
        not isinstance(key_id, str)
        or not isinstance(secret, str)
        or not (token is None or isinstance(token, str))
    ):
        return None
    if not _KEY_ID.match(key_id) or not _SECRET.match(secret):
        return None
    return AccessKeys(key_id, secret, token or None)


def delete_keys(directory: Path) -> None:
    for name in (DATA_FILE, KEY_FILE):
        with contextlib.suppress(FileNotFoundError):
            (Path(directory) / name).unlink()


def has_keys(directory: Path) -> bool:
    return (Path(directory) / DATA_FILE).exists()


def with_stored_keys(settings: AwsSettings, directory: Path) -> AwsSettings:
    """`settings` with the saved key pair filled in (and no profile)."""
    keys = load_keys(directory)
    if keys is None:
        raise CloudError(
            "No AWS access key has been saved yet.",
            "Paste your access key in Preferences > Add-ons > Cloud Render, or choose 'AWS Profile'.",
            code=ErrorCode.NO_CREDENTIALS,
        )
    return replace(
        settings,
        profile=None,
        access_key_id=keys.access_key_id,
        secret_access_key=keys.secret_access_key,
        session_token=keys.session_token,
    )


def with_profile(settings: AwsSettings, profile: str | None) -> AwsSettings:
    """`settings` using boto3's own chain (a named profile, or the default one)."""
    return replace(
        settings, profile=profile or None, access_key_id=None, secret_access_key=None, session_token=None
    )


def verify(settings: AwsSettings) -> Identity:
    """Ask STS who these credentials belong to; refuse the account's root keys."""
    with translating("checking your AWS keys", region=settings.region):
        reply = client(settings, "sts").get_caller_identity()
    arn = str(reply["Arn"])
    account = str(reply["Account"])
    if _ROOT_ARN.match(arn):
        raise CloudError(
            "These are your AWS account's root keys, which can do anything in the account (even close it), so Cloud Render will not use them.",
            "In the AWS console open IAM > Users > Create user, attach Cloud Render's two policies "
            "(Preferences > Copy Render Policy, Copy Set Up Policy), create an access key for that user, "
            "paste it here, and delete the root key.",
            code=ErrorCode.ROOT_CREDENTIALS,
            detail=f"caller is the root user of account {account}",
        )
    user_name = arn.rsplit("/", 1)[-1] if "/" in arn else arn.rsplit(":", 1)[-1]
    return Identity(account=account, arn=arn, user_name=user_name)
