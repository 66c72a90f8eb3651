"""The artist's AWS account as the add-on sees it: preferences plus the encrypted key store."""

from __future__ import annotations

from pathlib import Path

import bpy

from ..cloud.aws import credentials
from ..cloud.aws.session import AwsSettings
from .ids import ADDON_ID


def preferences() -> bpy.types.AddonPreferences | None:
    addon = bpy.context.preferences.addons.get(ADDON_ID)
    return addon.preferences if addon is not None else None


def key_dir() -> Path:
    """Where the encrypted keys live: the extension's user directory, never a .blend."""
    return Path(bpy.utils.extension_path_user(ADDON_ID, path="credentials", create=True))


def has_credentials() -> bool:
    prefs = preferences()
    if prefs is None:
        return False
    if prefs.credential_source == "PROFILE":
        return bool(prefs.profile)
    return credentials.has_keys(key_dir())


def aws_settings() -> AwsSettings:
    """Settings for a background thread: a frozen copy, secrets included, never stored in bpy."""
    prefs = preferences()
    base = AwsSettings(
        region=prefs.default_region if prefs is not None else "us-east-1",
        endpoint_url=(prefs.endpoint_url.strip() or None) if prefs is not None else None,
    )
    if prefs is not None and prefs.credential_source == "PROFILE":
        return credentials.with_profile(base, prefs.profile)
    return credentials.with_stored_keys(base, key_dir())
