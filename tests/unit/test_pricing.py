"""Prices: refreshed through a local Price List server, cached with their date; spot via moto's EC2."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cloud.aws.price_list import spot_prices
from cloud.aws.session import AwsSettings
from cloud.cost import machine_facts
from cloud.cost.catalog import load_catalog
from cloud.cost.price_refresh import (
    PriceTable,
    SpotTable,
    current_catalog,
    fetch_spot_table,
    load_cached_prices,
    refresh_prices,
)
from cloud.errors import CloudError, ErrorCode
from dev.pricing_server import PricingState, pricing_server

from ..conftest import EmulatedAws

LIVE = {
    ("us-east-1", "g4dn.xlarge"): 0.5,
    ("us-east-1", "g5.xlarge"): 1.1,
    ("eu-west-1", "g4dn.xlarge"): 0.61,
    ("sa-east-1", "g4dn.xlarge"): 0.9,  # a region the catalog does not list: ignored
}


@pytest.fixture
def pricing() -> Iterator[tuple[AwsSettings, PricingState]]:
    with pricing_server(LIVE, page_size=1) as (url, state):
        settings = AwsSettings(
            access_key_id="AKIAEXAMPLETESTKEY00",
            secret_access_key="test-secret-not-real",
            service_endpoints=(("pricing", url),),
            max_attempts=1,
        )
        yield settings, state


def test_refresh_fetches_parses_and_caches_with_date(
    pricing: tuple[AwsSettings, PricingState], tmp_path: Path
) -> None:
    settings, state = pricing
    catalog = load_catalog()
    cache = tmp_path / "prices.json"
    now = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)

    table = refresh_prices(settings, catalog, cache, now=now)

    assert table.prices == {
        "us-east-1": {"g4dn.xlarge": 0.5, "g5.xlarge": 1.1},
        "eu-west-1": {"g4dn.xlarge": 0.61},
    }
    assert table.date == "2026-11-25"
    # Linux-only filters were sent, one query per catalog type, paged (page size 1, two regions).
    first = state.requests[0]
    assert first["target"] == "AWSPriceListService.GetProducts"
    fields = {f["Field"]: f["Value"] for f in first["body"]["Filters"]}
    assert fields["operatingSystem"] == "Linux" and fields["tenancy"] == "Shared"
    assert any(r["body"].get("NextToken") for r in state.requests)

    cached = load_cached_prices(cache)
    assert cached is not None and cached.prices == table.prices and cached.fetched_at.startswith("2026-11-25")

    updated = current_catalog(catalog, cache)
    assert updated.get("g4dn.xlarge").price("us-east-1") == 0.5
    assert updated.get("g4dn.xlarge").price("us-west-2") == catalog.get("g4dn.xlarge").price("us-west-2")
    assert updated.prices_date == "2026-11-25"


def test_fresh_cache_is_used_without_asking_again(
    pricing: tuple[AwsSettings, PricingState], tmp_path: Path
) -> None:
    settings, state = pricing
    catalog = load_catalog()
    cache = tmp_path / "prices.json"
    now = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
    refresh_prices(settings, catalog, cache, now=now)
    asked = len(state.requests)

    again = refresh_prices(settings, catalog, cache, max_age=timedelta(days=1), now=now + timedelta(hours=2))
    assert len(state.requests) == asked
    assert again.date == "2026-11-25"

    later = refresh_prices(settings, catalog, cache, max_age=timedelta(days=1), now=now + timedelta(days=3))
    assert len(state.requests) > asked
    assert later.date == "2026-11-28"


def test_denied_price_list_says_what_to_do(pricing: tuple[AwsSettings, PricingState], tmp_path: Path) -> None:
    settings, state = pricing
    state.deny = True
    with pytest.raises(CloudError) as info:
        refresh_prices(settings, load_catalog(), tmp_path / "prices.json")
    assert info.value.message == "Your AWS user is not allowed to read current prices."
    assert "IAM policy" in info.value.action
    assert info.value.code == ErrorCode.ACCESS_DENIED and "AccessDeniedException" in info.value.detail
    assert not (tmp_path / "prices.json").exists()


def test_unreadable_cache_falls_back_to_bundled(tmp_path: Path) -> None:
    cache = tmp_path / "prices.json"
    cache.write_text("{not json", encoding="utf-8")
    catalog = load_catalog()
    assert load_cached_prices(cache) is None
    assert current_catalog(catalog, cache) == catalog


def test_spot_prices_from_ec2(aws: EmulatedAws) -> None:
    prices = spot_prices(aws.settings, "us-east-1", ["g4dn.xlarge", "c5.2xlarge"])
    assert set(prices) == {"g4dn.xlarge", "c5.2xlarge"}
    assert all(0 < p < 1 for p in prices.values())


def test_spot_prices_unreachable_endpoint() -> None:
    settings = AwsSettings(
        access_key_id="AKIAEXAMPLETESTKEY00",
        secret_access_key="test-secret-not-real",
        service_endpoints=(("ec2", "http://127.0.0.1:9"),),
        connect_timeout=0.5,
        max_attempts=1,
    )
    with pytest.raises(CloudError) as info:
        spot_prices(replace(settings), "us-east-1", ["g4dn.xlarge"])
    assert info.value.message == "Could not read spot prices from AWS."
    assert info.value.action == "Use on-demand for this job, or try again in a minute."


def test_each_price_says_where_it_comes_from_and_its_date() -> None:
    bundled = load_catalog()
    table = PriceTable(prices={"us-east-1": {"g4dn.xlarge": 0.5}}, fetched_at="2026-11-30T09:00:00+00:00")
    current = table.apply(bundled)

    refreshed = machine_facts.price_for(current, "us-east-1", "g4dn.xlarge")
    assert (refreshed.usd, refreshed.kind, refreshed.source) == (0.5, "on-demand", "aws-price-list")
    assert refreshed.words() == "$0.500/h on-demand, AWS price list 2026-11-30"
    # A price the refresh did not return keeps the bundled one and says so, with the bundled date.
    kept = machine_facts.price_for(current, "eu-west-1", "g4dn.xlarge")
    assert kept.usd == bundled.get("g4dn.xlarge").price("eu-west-1")
    assert kept.words().endswith(f"on-demand, bundled prices of {bundled.prices_date}")
    assert machine_facts.price_for(bundled, "us-east-1", "g4dn.xlarge").source == "bundled"


def test_spot_price_when_known_else_the_on_demand_ceiling() -> None:
    current = load_catalog()
    on_demand = current.get("g4dn.xlarge").price("us-east-1")
    asked = datetime.now(UTC).replace(microsecond=0)
    spot = SpotTable("us-east-1", {"g4dn.xlarge": 0.158, "g5.xlarge": 99.0}, asked.isoformat())

    price = machine_facts.price_for(current, "us-east-1", "g4dn.xlarge", spot=True, spot_table=spot)
    assert (price.usd, price.kind, price.source) == (0.158, "spot", "spot")
    assert price.words() == f"$0.158/h spot, spot price {asked.astimezone():%H:%M} today"
    # Spot never costs more than on-demand; no spot price (or another region's) means the ceiling.
    assert machine_facts.price_for(current, "us-east-1", "g5.xlarge", True, spot).usd == current.get(
        "g5.xlarge"
    ).price("us-east-1")
    ceiling = machine_facts.price_for(current, "us-east-1", "g4dn.xlarge", spot=True)
    assert (ceiling.usd, ceiling.kind) == (on_demand, "spot ceiling")
    other = machine_facts.price_for(current, "us-west-2", "g4dn.xlarge", True, spot)
    assert other.kind == "spot ceiling"
    # Spot off: the spot table is not used.
    assert machine_facts.price_for(current, "us-east-1", "g4dn.xlarge", False, spot).usd == on_demand
    yesterday = SpotTable("us-east-1", {"g4dn.xlarge": 0.2}, (asked - timedelta(days=1)).isoformat())
    words = machine_facts.price_for(current, "us-east-1", "g4dn.xlarge", True, yesterday).words()
    assert "today" not in words and (asked - timedelta(days=1)).astimezone().date().isoformat() in words


def test_menu_confirmation_and_estimate_use_the_same_price() -> None:
    current = PriceTable(
        prices={"us-east-1": {"g4dn.xlarge": 0.5}}, fetched_at="2026-11-30T09:00:00+00:00"
    ).apply(load_catalog())
    spot = SpotTable("us-east-1", {"g4dn.xlarge": 0.00001}, "2026-11-30T09:00:00+00:00")
    menu = dict(machine_facts.menu("us-east-1", current))
    assert menu["g4dn.xlarge"].endswith(", $0.50/h")
    menu = dict(machine_facts.menu("us-east-1", current, spot))
    assert menu["g4dn.xlarge"].endswith(", $0.00001/h")  # a price under a cent keeps its digits
    price = machine_facts.price_for(current, "us-east-1", "g4dn.xlarge", True, spot)
    assert machine_facts.job_estimate_text(price, 10, 2) == (
        "At most $0.00 (spot $0.00001/h x 2 h time cap), for 10 frames."
    )
    assert machine_facts.job_estimate_text(price, 1, 2, machines=3).endswith(", for 1 frame.")  # a still
    with pytest.raises(CloudError) as info:
        machine_facts.price_for(current, "sa-east-1", "g4dn.xlarge")
    assert info.value.code == ErrorCode.NOT_OFFERED


def test_spot_table_from_ec2_is_dated(aws: EmulatedAws) -> None:
    now = datetime(2026, 11, 30, 12, 4, tzinfo=UTC)
    table = fetch_spot_table(aws.settings, "us-east-1", ["g4dn.xlarge", "c5.2xlarge"], now=now)
    assert table.region == "us-east-1" and table.fetched_at == "2026-11-30T12:04:00+00:00"
    # What moto answers for describe_spot_price_history: one tiny price per zone offering the type.
    assert set(table.prices) == {"g4dn.xlarge", "c5.2xlarge"}
    assert all(0 < p < 0.001 for p in table.prices.values())
    assert table.age(now + timedelta(minutes=30)) == timedelta(minutes=30)
