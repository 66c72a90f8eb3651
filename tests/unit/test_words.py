"""Words the artist reads, said plainly and once (issue 26 item 8)."""

from __future__ import annotations

from cloud.cost import machine_facts
from cloud.cost.catalog import load_catalog
from cloud.job.frame_list import kept_text, ranges_text
from cloud.machine.supervisor import build_words


def test_a_cancel_says_which_frames_were_kept_and_where():
    assert ranges_text([3, 1, 2, 6, 5, 9]) == "1-3, 5-6, 9"
    assert kept_text([1, 2, 3, 4, 5, 6], "/renders/job") == "Frames 1-6 kept in /renders/job."
    assert kept_text([7], "/r") == "Frame 7 kept in /r."
    assert kept_text([], "/r") == "No frame was rendered."


def test_a_gpu_whose_name_holds_its_memory_says_the_memory_once():
    catalog = load_catalog()
    named = [t for t in catalog.gpu_types() if "GB" in (t.gpu_model or "")]
    assert named, "the catalog has a GPU named with its memory (A100 40GB)"
    for info in named:
        label = machine_facts.label(info, "us-east-1", 1.0)
        assert label.count("GB") == 1, label
    t4 = next(t for t in catalog.gpu_types() if t.name == "g4dn.xlarge")
    assert "NVIDIA T4 16 GB" in machine_facts.label(t4, "us-east-1", 0.5)


def test_the_build_line_leaves_out_what_blender_does_not_know():
    assert build_words({"version": "4.3.2", "hash": "Unknown", "date": "Unknown"}) == "4.3.2"
    assert (
        build_words({"version": "5.0.1", "hash": "a3db93c5b259", "date": "2025-12-16"})
        == "5.0.1 (hash a3db93c5b259, built 2025-12-16)"
    )
    assert build_words({"version": "4.3.2", "hash": "abc", "date": None}) == "4.3.2 (hash abc)"
