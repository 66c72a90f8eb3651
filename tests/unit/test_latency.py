"""Latency probing against local HTTP servers with injected delays, and the region ranking."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from cloud.aws.region_latency import default_urls, probe_latency, rank_regions
from cloud.cost.catalog import load_catalog
from dev.aws_emulator import free_port
from tests.ping_server import ping_server


@pytest.fixture
def regions() -> Iterator[dict[str, str]]:
    delays = {"us-east-1": 0.20, "eu-west-1": 0.0, "us-west-2": 0.08}
    servers = {region: ping_server(d) for region, d in delays.items()}
    try:
        urls = {r: f"http://127.0.0.1:{s.server_address[1]}/ping" for r, s in servers.items()}
        urls["ap-northeast-1"] = f"http://127.0.0.1:{free_port()}/ping"  # nothing listens there
        yield urls
    finally:
        for server in servers.values():
            server.shutdown()
            server.server_close()


def test_fastest_region_is_picked(regions: dict[str, str]) -> None:
    started = time.perf_counter()
    latencies = probe_latency(regions, attempts=3, timeout=1)
    elapsed = time.perf_counter() - started

    assert latencies["ap-northeast-1"] is None
    measured = {r: ms for r, ms in latencies.items() if ms is not None}
    assert min(measured, key=lambda r: measured[r]) == "eu-west-1"
    assert measured["us-east-1"] >= 200 > measured["eu-west-1"]
    assert elapsed < 1.5  # regions probed in parallel: about 3 x the slowest, not the sum

    # Same offers everywhere, so latency and price decide; the unreachable region comes last.
    offers = {r: {"g4dn.xlarge", "g5.xlarge", "g6.xlarge"} for r in regions}
    ranking = rank_regions(latencies, load_catalog(), offers)
    nearest = next(c for c in ranking if c.nearest)
    assert nearest.region == "eu-west-1"
    assert ranking[-1].region == "ap-northeast-1" and ranking[-1].score == float("inf")
    # us-west-2 costs what us-east-1 costs and is nearer: it ranks above it.
    order = [c.region for c in ranking]
    assert order.index("us-west-2") < order.index("us-east-1")
    cheapest = [c for c in ranking if c.cheapest]
    assert {c.region for c in cheapest} == {"us-east-1", "us-west-2"}
    assert all(c.cheapest_gpu_type == "g4dn.xlarge" for c in cheapest)


def test_ranking_weighs_offers_and_price() -> None:
    catalog = load_catalog()
    latencies = {"us-east-1": 80.0, "eu-central-1": 20.0, "eu-west-1": 22.0}
    ranking = rank_regions(latencies, catalog)
    by_region = {c.region: c for c in ranking}
    assert by_region["eu-central-1"].nearest
    assert by_region["us-east-1"].cheapest and by_region["us-east-1"].most_types
    assert "g7e.2xlarge" in by_region["us-east-1"].gpu_types
    assert "g7e.2xlarge" not in by_region["eu-west-1"].gpu_types
    # A region offering no GPU type to this account is never recommended.
    ranking = rank_regions(latencies, catalog, {"us-east-1": {"c5.2xlarge"}, "eu-west-1": {"g4dn.xlarge"}})
    assert ranking[0].region == "eu-west-1"
    assert {c.region for c in ranking if c.score == float("inf")} == {"us-east-1", "eu-central-1"}


def test_default_urls_point_at_dynamodb_ping() -> None:
    assert default_urls(["eu-west-1"]) == {"eu-west-1": "https://dynamodb.eu-west-1.amazonaws.com/ping"}
