"""Panel text wraps to the editor's width instead of being cut where the prices are."""

from __future__ import annotations

import importlib.util
from pathlib import Path

# panels/ imports bpy as a package; the wrapping module itself is plain Python.
_spec = importlib.util.spec_from_file_location(
    "text_wrap", Path(__file__).resolve().parents[2] / "panels" / "text_wrap.py"
)
assert _spec and _spec.loader
text_wrap = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(text_wrap)

ESTIMATE = "c5.2xlarge: ~3 s/frame, $0.02 for the job ($0.01-$0.05, 0.1 h) [chosen]"


def test_a_long_line_keeps_every_word_in_the_default_editor():
    lines = text_wrap.wrap(ESTIMATE, 330)
    assert len(lines) > 1
    assert " ".join(lines) == ESTIMATE
    assert all(len(line) * text_wrap.CHAR_PX <= 330 - text_wrap.MARGIN_PX for line in lines)


def test_a_wide_editor_keeps_one_line_and_line_breaks_stay():
    assert text_wrap.wrap(ESTIMATE, 1200) == [ESTIMATE]
    assert text_wrap.wrap("one\n\ntwo", 330) == ["one", "", "two"]


def test_ui_scale_narrows_the_lines():
    assert len(text_wrap.wrap(ESTIMATE, 330, scale=2.0)) > len(text_wrap.wrap(ESTIMATE, 330))


def test_a_path_breaks_after_a_slash_not_inside_a_name():
    path = "/opt/cloud-render-gui/project/cloud_renders/20261201-065354-7ac396"
    lines = text_wrap.wrap(path, 330)
    assert "".join(lines) == path and len(lines) > 1
    assert all(line.endswith("/") for line in lines[:-1])


def test_a_unit_with_a_slash_stays_whole():
    lines = text_wrap.wrap("$0.02, 4 min: c7i.2xlarge, ~3.1 s/frame ($0.01-$0.05)", 330)
    assert any("s/frame" in line for line in lines)
