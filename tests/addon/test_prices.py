"""The installed add-on's prices: refreshed from a local Price List server in the background,
cached with their date, spot prices from moto's EC2, shown in the panel and recorded with a job.

The pricing endpoint is set the way botocore reads it (AWS_ENDPOINT_URL_PRICING); EC2 and the
rest go to moto through the endpoint in the add-on's preferences.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import bpy
import pytest

from dev import addon_harness as harness
from dev.pricing_server import pricing_server

from .test_panels_draw import draw

LIVE = {
    ("us-east-1", "g4dn.xlarge"): 0.611,
    ("us-east-1", "c5.2xlarge"): 0.352,
    ("eu-west-1", "g4dn.xlarge"): 0.702,
}


@pytest.fixture
def pricing(monkeypatch, aws):
    # The artist's requests are authorised by the emulator's strict layer, as AWS would.
    with pricing_server(LIVE, page_size=50, authorizer=aws.url) as (url, state):
        monkeypatch.setenv("AWS_ENDPOINT_URL_PRICING", url)
        yield state


@pytest.fixture
def module(installed, tmp_path, aws, pricing):
    harness.make_scene(tmp_path / "prices.blend")
    harness.connect(aws.url)
    mod = harness.addon()
    prices = mod.addon.prices
    prices._cache_path().unlink(missing_ok=True)
    prices.forget()
    yield mod
    bpy.context.preferences.system.use_online_access = True
    harness.drain_until(lambda: not prices.busy(), 60)
    prices.forget()
    prices._cache_path().unlink(missing_ok=True)
    harness.disconnect()


def panel_labels(mod: Any) -> list[str]:
    labels, _ = draw(mod.panels.render_panel.CLOUDRENDER_PT_settings)
    return labels


def menu_labels(mod: Any) -> list[str]:
    """The machine menu's entries (the text each set_instance_type button gets)."""
    entries: list[str] = []

    class Layout:
        def operator(self, _idname: str, text: str = "", **_kw: Any) -> Any:
            entries.append(text)
            return type("Props", (), {})()

    mod.panels.render_panel.CLOUDRENDER_MT_instance_types.draw(type("Menu", (), {"layout": Layout()})(), None)
    return entries


def price_line(mod: Any) -> str:
    """The machine's price line as the artist reads it, joined again where the panel wrapped it
    to its width: the price comes first, where it comes from ends with its date or time."""
    labels = panel_labels(mod)
    index = next(i for i, text in enumerate(labels) if "/h " in text)
    line = labels[index]
    for more in labels[index + 1 : index + 4]:
        if re.search(r"(\d{4}-\d\d-\d\d|\d\d:\d\d today)$", line):
            break
        line = f"{line} {more}"
    return line


def submit_and_stop(mod: Any) -> float:
    """Press Render in Cloud, read the price the job's record keeps, then cancel the job."""
    manager = mod.addon.pump.manager()
    before = {r.job_id for r in manager.store.all()}
    assert bpy.ops.cloud_render.render("EXEC_DEFAULT") == {"FINISHED"}
    (record,) = [r for r in manager.store.all() if r.job_id not in before]
    runner = manager.runner(record.job_id)
    if runner is not None:
        runner.cancel()
    harness.drain_until(lambda: not manager.is_running(record.job_id), 120)
    return float(manager.store.load(record.job_id).price_per_hour)


def test_refreshed_prices_reach_panel_menu_confirmation_and_job(module, pricing):
    prices = module.addon.prices
    bundled = prices.catalog()
    # The first draw answers with the bundled price at once, while the refresh waits on the
    # server (held here): the main thread never waits on the network.
    with pricing.lock:
        line = price_line(module)
        assert prices.busy()
    assert line == f"$0.526/h on-demand, bundled prices of {bundled.prices_date}"
    harness.drain_until(lambda: not prices.busy(), 60)

    today = datetime.now(UTC).date().isoformat()
    assert price_line(module) == f"$0.611/h on-demand, AWS price list {today}"
    # The machine's facts, wrapped over lines at the panel's width, read as one text.
    assert re.search(r"g4dn\.xlarge: 1x NVIDIA T4 [^$]*\$0\.61/h", " ".join(panel_labels(module)))
    assert any(t.startswith("c5.2xlarge:") and t.endswith("$0.35/h") for t in menu_labels(module))
    text = module.addon.submit.confirmation_text(bpy.context)
    assert f"g4dn.xlarge ($0.611/h on-demand, AWS price list {today}) in us-east-1" in text
    assert "At most $1.22 (on-demand $0.611/h x 2 h time cap)" in text
    cached = json.loads(prices._cache_path().read_text())
    assert cached["prices"]["us-east-1"]["g4dn.xlarge"] == 0.611 and cached["fetched_at"].startswith(today)

    # Once per session: drawing again asks nothing more.
    asked = len(pricing.requests)
    panel_labels(module)
    assert not prices.busy() and len(pricing.requests) == asked

    assert submit_and_stop(module) == 0.611

    # A new session reads the fresh cache and asks nothing.
    prices.forget()
    panel_labels(module)
    harness.drain_until(lambda: not prices.busy(), 60)
    assert price_line(module) == f"$0.611/h on-demand, AWS price list {today}"
    assert len(pricing.requests) == asked


def test_spot_price_is_fetched_shown_and_recorded(module, pricing):
    prices = module.addon.prices
    settings = bpy.context.scene.cloud_render
    settings.use_spot = True
    try:
        first = price_line(module)
        assert first.startswith("$0.526/h spot ceiling, ")  # until the spot price is known
        harness.drain_until(lambda: not prices.busy() and prices.spot_table("us-east-1") is not None, 60)
        asked = prices.spot_table("us-east-1")
        # moto answers describe_spot_price_history with $0.00001 for each zone offering the type.
        assert asked.prices["g4dn.xlarge"] == 0.00001
        at = datetime.fromisoformat(asked.fetched_at).astimezone()
        assert price_line(module) == f"$0.00001/h spot, spot price {at:%H:%M} today"
        assert any(t.startswith("g4dn.xlarge:") and t.endswith("$0.00001/h") for t in menu_labels(module))
        text = module.addon.submit.confirmation_text(bpy.context)
        assert f"g4dn.xlarge ($0.00001/h spot, spot price {at:%H:%M} today)" in text
        assert submit_and_stop(module) == 0.00001
        # Another machine in the same region needs no new request; the estimate gets the same prices.
        settings.instance_type = "c5.2xlarge"
        assert price_line(module).startswith("$0.00001/h spot")
        assert not prices.busy()
        catalog, spot = prices.estimate_prices("us-east-1", True)
        assert spot["c5.2xlarge"] == 0.00001 and catalog is prices.catalog()
    finally:
        settings.use_spot = False
        settings.instance_type = "g4dn.xlarge"


def test_failing_price_server_keeps_bundled_prices_and_the_panel_draws(module, pricing, caplog):
    prices = module.addon.prices
    pricing.deny = True
    with caplog.at_level(logging.WARNING):
        panel_labels(module)
        harness.drain_until(lambda: not prices.busy(), 60)
    line = price_line(module)
    assert line == f"$0.526/h on-demand, bundled prices of {prices.catalog().prices_date}"
    assert "not allowed to read current prices" in prices.problem()
    assert any("not allowed to read current prices" in r.getMessage() for r in caplog.records)
    # Not asked again in this session, and no dialog: the operators and panels still work.
    asked = len(pricing.requests)
    labels, _operators = draw(module.panels.render_panel.CLOUDRENDER_PT_settings)
    assert line in " ".join(labels) and not prices.busy() and len(pricing.requests) == asked
    assert "Hard cap" in module.addon.submit.confirmation_text(bpy.context)


def test_no_request_while_online_access_is_off_or_no_account(module, pricing):
    prices = module.addon.prices
    settings = bpy.context.scene.cloud_render
    # A cache from an earlier session, older than the refresh age.
    old = datetime.now(UTC) - timedelta(days=30)
    module.cloud.cost.price_refresh.save_prices(
        prices._cache_path(),
        module.cloud.cost.price_refresh.PriceTable(
            prices={"us-east-1": {"g4dn.xlarge": 0.5}}, fetched_at=old.isoformat(timespec="seconds")
        ),
    )
    bpy.context.preferences.system.use_online_access = False
    settings.use_spot = True
    try:
        panel_labels(module)
        menu_labels(module)
        module.addon.submit.confirmation_text(bpy.context)
        harness.drain_until(lambda: not prices.busy(), 60)  # the cache read, from disk only
        line = price_line(module)
        assert line == f"$0.500/h spot ceiling, AWS price list {old.date().isoformat()}"
        assert pricing.requests == [] and prices.spot_table("us-east-1") is None and not prices.busy()

        # Online again but no account connected: still nothing asked.
        bpy.context.preferences.system.use_online_access = True
        harness.disconnect()
        panel_labels(module)
        assert not prices.busy() and pricing.requests == []

        # Connected: the stale cache is refreshed, and the spot price asked for.
        harness.connect(harness.preferences().endpoint_url)
        panel_labels(module)
        harness.drain_until(lambda: not prices.busy(), 60)
        assert pricing.requests and prices.spot_table("us-east-1") is not None
    finally:
        settings.use_spot = False
