"""The bundled catalog: the families asked for, no p3 or g5g, sources cited, prices per region."""

from __future__ import annotations

import json
from pathlib import Path

from cloud.cost.catalog import DATA_FILE, load_catalog

REGIONS = {"us-east-1", "us-east-2", "us-west-2", "eu-west-1", "eu-central-1", "ap-northeast-1"}


def test_catalog_has_the_families_and_hardware() -> None:
    catalog = load_catalog()
    gpus = {t.family: t.gpu_model for t in catalog.gpu_types()}
    assert gpus == {
        "g4dn": "NVIDIA T4",
        "g5": "NVIDIA A10G",
        "g6": "NVIDIA L4",
        "g6e": "NVIDIA L40S",
        "g7e": "NVIDIA RTX PRO 6000 Blackwell Server Edition",
        "p4d": "NVIDIA A100 40GB",
        "p5": "NVIDIA H100 80GB",
    }
    cpu_families = {t.family for t in catalog.types.values() if not t.is_gpu}
    assert cpu_families == {"c5", "c6i", "c7i", "m5"}
    t4 = catalog.get("g4dn.xlarge")
    assert (t4.gpu_count, t4.gpu_memory_gib, t4.vcpu, t4.ram_gib) == (1, 16, 4, 16)
    assert catalog.get("p5.48xlarge").gpu_count == 8
    assert set(catalog.regions()) == REGIONS
    for region in REGIONS:
        assert {t.family for t in catalog.offered_in(region)} >= {"g4dn", "g5", "g6", "c5", "m5"}
    assert all(t.speed > 0 and t.speed_source for t in catalog.types.values())
    # A GPU is faster than any CPU type of the catalog in Cycles.
    fastest_cpu = max(t.speed for t in catalog.types.values() if not t.is_gpu)
    assert min(t.speed for t in catalog.gpu_types()) > fastest_cpu


def test_no_p3_or_g5g_for_launching(tmp_path: Path) -> None:
    catalog = load_catalog()
    assert not [n for n in catalog.types if n.startswith(("p3.", "g5g."))]
    # Even a data file that lists them does not make them launchable.
    doc = json.loads(DATA_FILE.read_text(encoding="utf-8"))
    doc["types"]["g5g.xlarge"] = dict(doc["types"]["g5.xlarge"], family="g5g")
    doc["types"]["p3.2xlarge"] = dict(doc["types"]["g5.xlarge"], family="p3")
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    assert "g5g.xlarge" not in load_catalog(path).types
    assert "p3.2xlarge" not in load_catalog(path).types
    # p3 only appears among the reference measurements, which are never launched.
    assert "p3.2xlarge" in catalog.reference


def test_sources_and_dates_are_cited() -> None:
    doc = json.loads(DATA_FILE.read_text(encoding="utf-8"))
    assert "opendata.blender.org" in doc["speed_sources"]["primary"]
    assert doc["speed_sources"]["retrieved"] == "2026-11-25"
    assert doc["prices_date"]
    for name, entry in doc["types"].items():
        source = entry["speed_source"]
        assert "Blender Open Data" in source or source.startswith("estimated from"), name


def test_with_prices_replaces_only_what_it_has() -> None:
    catalog = load_catalog()
    updated = catalog.with_prices({"us-east-1": {"g4dn.xlarge": 0.5}}, "2026-11-25", "aws-price-list")
    assert updated.get("g4dn.xlarge").price("us-east-1") == 0.5
    assert updated.get("g4dn.xlarge").price("eu-west-1") == catalog.get("g4dn.xlarge").price("eu-west-1")
    assert updated.prices_date == "2026-11-25" and catalog.prices_date != "2026-11-25"
