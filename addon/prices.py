"""The prices the add-on shows and records, from one place.

The bundled catalog, overlaid with the on-demand prices refreshed from the AWS Price List
(cached in the extension's user directory with the date they were fetched) and, when Spot is
on, the region's current spot prices (kept in memory for an hour, never on disk). The machine
menu, the panel's price line, the confirmation, the job's price per hour and the estimate all
ask `hourly`, `menu` or `estimate_prices` here.

Everything here runs on Blender's main thread and never waits: reading the cache and asking
AWS run through `pump.in_background`. A lookup answers at once with what is known and starts
what is missing: the on-demand refresh when the cache is missing or older than
`REFRESH_AFTER` (at most once per session and region), the spot prices when Spot is on and the
region's are missing or older than `SPOT_FOR_S`. Nothing is asked while online access is off
or no AWS account is connected. A failure keeps the bundled or cached prices and goes to the
console, not to a dialog.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import bpy

from ..cloud.aws.session import AwsSettings
from ..cloud.cost import machine_facts
from ..cloud.cost.catalog import Catalog
from ..cloud.cost.machine_facts import HourlyPrice
from ..cloud.cost.price_refresh import (
    PriceTable,
    SpotTable,
    fetch_spot_table,
    load_cached_prices,
    refresh_prices,
)
from ..cloud.errors import CloudError
from . import account, job_view, pump

REFRESH_AFTER = timedelta(days=7)
SPOT_FOR_S = 3600.0  # a spot price older than this is asked again (and not used meanwhile)
SPOT_RETRY_S = 300.0  # after a failed spot request, wait this long before asking again
CACHE_FOLDER = "prices"
CACHE_NAME = "on_demand.json"

log = logging.getLogger(__name__)


class _Session:
    """What this Blender session knows and has asked; replaced whole by `forget()`."""

    def __init__(self) -> None:
        self.table: PriceTable | None = None
        self.catalog: Catalog = machine_facts.catalog()
        self.cache_read = False  # the cache was read (or a refresh, which reads it, ran)
        self.refreshing = False
        self.asked: set[str] = set()  # regions an on-demand refresh was started for
        self.spot: dict[str, SpotTable] = {}
        self.spot_asked_at: dict[str, float] = {}  # region -> time.monotonic() of the last request
        self.spot_asking: set[str] = set()
        self.problem = ""  # the last failure, in words (also on the console)


_session = _Session()


def forget() -> None:
    """Drop everything this session learnt (add-on disabled, or a test starting afresh).
    Answers still on their way for the old session are ignored."""
    global _session
    _session = _Session()


def catalog() -> Catalog:
    """The catalog with the refreshed prices applied (what is known now; starts nothing)."""
    return _session.catalog


def busy() -> bool:
    """Whether a price request or cache read is on its way."""
    return _session.refreshing or bool(_session.spot_asking)


def problem() -> str:
    return _session.problem


def spot_table(region: str) -> SpotTable | None:
    """The region's spot prices if asked within `SPOT_FOR_S`."""
    table = _session.spot.get(region)
    if table is None or time.monotonic() - _session.spot_asked_at.get(region, 0.0) > SPOT_FOR_S:
        return None
    return table


def hourly(region: str, instance_type: str, spot: bool) -> HourlyPrice:
    """The price to show, confirm and cap a job with; starts a refresh when one is due.
    Raises CloudError for a type the add-on does not know or the region does not offer."""
    _refresh_if_due(region)
    if spot:
        _ask_spot_if_due(region)
    return machine_facts.price_for(
        _session.catalog, region, instance_type, spot, spot_table(region) if spot else None
    )


def menu(region: str, spot: bool) -> list[tuple[str, str]]:
    """The machine menu's (type, label) pairs, priced like `hourly`."""
    _refresh_if_due(region)
    return machine_facts.menu(region, _session.catalog, spot_table(region) if spot else None)


def estimate_prices(region: str, spot: bool) -> tuple[Catalog, dict[str, float]]:
    """(catalog, prices) for `estimate_all(..., prices=prices, catalog=catalog)`: the refreshed
    catalog and, with Spot, the known spot prices (empty: on-demand as the ceiling)."""
    table = spot_table(region) if spot else None
    return _session.catalog, dict(table.prices) if table is not None else {}


def _may_ask() -> bool:
    return bool(bpy.app.online_access) and account.has_credentials()


def _settings(session: _Session, what: str) -> AwsSettings | None:
    try:
        return account.aws_settings()
    except CloudError as error:
        _report(session, what, error)
        return None


def _cache_path() -> Path:
    return pump.user_dir(CACHE_FOLDER) / CACHE_NAME


def _refresh_if_due(region: str) -> None:
    session = _session
    if session.refreshing or region in session.asked:
        return
    if session.table is not None and session.table.age() <= REFRESH_AFTER:
        return
    if _may_ask():
        session.asked.add(region)
        settings = _settings(session, "The machine prices were not refreshed")
        if settings is None:
            return
        bundled = machine_facts.catalog()
        path = _cache_path()

        def work() -> tuple[PriceTable | None, CloudError | None]:
            try:
                return refresh_prices(settings, bundled, path, max_age=REFRESH_AFTER), None
            except CloudError as error:
                return load_cached_prices(path), error

        _start(session, work)
    elif not session.cache_read:
        path = _cache_path()
        _start(session, lambda: (load_cached_prices(path), None))


def _start(session: _Session, work: Callable[[], tuple[PriceTable | None, CloudError | None]]) -> None:
    session.refreshing = True

    def done(result: Any, error: CloudError | None) -> None:
        if session is not _session:
            return
        session.refreshing = False
        session.cache_read = True
        table, failure = result if result is not None else (None, error)
        if table is not None:
            session.table = table
            session.catalog = machine_facts.catalog(table)
        if failure is not None:
            _report(session, "The machine prices were not refreshed", failure)
        job_view.redraw()

    pump.in_background(work, done)


def _ask_spot_if_due(region: str) -> None:
    session = _session
    if region in session.spot_asking:
        return
    last = session.spot_asked_at.get(region)
    if last is not None:
        wait = SPOT_FOR_S if region in session.spot else SPOT_RETRY_S
        if time.monotonic() - last <= wait:
            return
    if not _may_ask():
        return
    session.spot_asked_at[region] = time.monotonic()
    settings = _settings(session, f"The spot prices in {region} were not read")
    if settings is None:
        return
    session.spot_asking.add(region)
    types = [t.name for t in session.catalog.offered_in(region)]

    def done(table: SpotTable | None, error: CloudError | None) -> None:
        if session is not _session:
            return
        session.spot_asking.discard(region)
        if table is not None:
            session.spot[region] = table
            session.spot_asked_at[region] = time.monotonic()
        else:
            session.spot.pop(region, None)
            _report(session, f"The spot prices in {region} were not read", error)
        job_view.redraw()

    pump.in_background(lambda: fetch_spot_table(settings, region, types), done)


def _report(session: _Session, what: str, error: CloudError | None) -> None:
    if error is None:
        return
    session.problem = f"{what}: {error.message} {error.action}"
    log.warning("Cloud Render: %s (%s)", session.problem, error.detail or error.code)
