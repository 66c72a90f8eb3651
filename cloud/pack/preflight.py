"""Preflight: what would render wrong (or not at all) on the cloud machine, said before paying.

Pure Python: judges the plain "scene facts" dict that the add-on's `scene_facts.py` collects,
plus the pack result when there is one. Each finding is one line and a one-line fix; "block"
findings stop the submit, "warn" ones are shown and may be accepted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .packer import PackResult

BLOCK = "block"
WARN = "warn"
HUGE_FRAME_COUNT = 10_000
# Add-ons the render machine has enabled: a bare Blender, Cycles only.
INSTANCE_ADDONS = frozenset({"cycles"})
# Rough Cycles film and working memory per rendered pixel, in bytes (combined pass, denoising
# buffers, a few light passes as float4). Only the order of magnitude matters for the check.
BYTES_PER_PIXEL = 256
LISTED = 5  # how many items a finding names before "and N more"


@dataclass(frozen=True)
class Finding:
    severity: str  # "block" or "warn"
    code: str
    message: str
    fix: str


def _some(items: list[str]) -> str:
    shown = ", ".join(items[:LISTED])
    return shown + (f" and {len(items) - LISTED} more" if len(items) > LISTED else "")


def check_missing(facts: dict[str, Any], pack: PackResult | None) -> list[Finding]:
    if pack is not None:
        missing = [(m.path, m.used_by, m.looked_in) for m in pack.missing]
    else:
        missing = [(m["path"], m["used_by"], m["looked_in"]) for m in facts.get("missing_files", [])]
    return [
        Finding(
            WARN,
            "missing_file",
            f"{used_by} uses {path}, which was not found at {looked_in}; it will render as missing.",
            "Use File > External Data > Find Missing Files, or fix the path in the data-block.",
        )
        for path, used_by, looked_in in missing
    ]


def check_outside_project(pack: PackResult | None) -> list[Finding]:
    if pack is None or not pack.absolute_outside_project:
        return []
    paths = [e.path for e in pack.absolute_outside_project]
    return [
        Finding(
            WARN,
            "absolute_outside_project",
            f"{len(paths)} file(s) use absolute paths outside the project ({_some(paths)}); they are packed anyway.",
            "Nothing to do for this render; File > External Data > Make Paths Relative keeps the project portable.",
        )
    ]


def check_unreadable(pack: PackResult | None) -> list[Finding]:
    if pack is None:
        return []
    return [
        Finding(
            WARN,
            "unreadable_library",
            f"The linked file {item.path} could not be read; it is packed as it is, but what it links may be missing.",
            "Open that file in Blender, save it again, and check the scene.",
        )
        for item in pack.unreadable
    ]


def check_engine(facts: dict[str, Any]) -> list[Finding]:
    engine = facts.get("render_engine", "")
    if engine == "CYCLES":
        return []
    name = {"BLENDER_EEVEE": "EEVEE", "BLENDER_EEVEE_NEXT": "EEVEE", "BLENDER_WORKBENCH": "Workbench"}.get(
        engine, engine
    )
    return [
        Finding(
            BLOCK,
            "engine_not_cycles",
            f"The scene renders with {name}, which needs a display; the cloud machine renders Cycles only.",
            "Set Render Properties > Render Engine to Cycles (check the look with a local test frame).",
        )
    ]


def check_output(facts: dict[str, Any]) -> list[Finding]:
    findings = []
    path = facts.get("output_path", "") or ""
    if path and not path.startswith("//"):
        findings.append(
            Finding(
                WARN,
                "output_absolute",
                f"The output path {path} is a folder on this computer; frames are downloaded into the job folder instead.",
                "Set Output Properties > Output to a relative path such as //render/.",
            )
        )
    if facts.get("is_movie"):
        findings.append(
            Finding(
                BLOCK,
                "output_movie",
                f"The output format {facts.get('file_format')} writes one video file, which cannot be sent back frame by frame.",
                "Choose PNG or OpenEXR in Output Properties > File Format and make the video from the frames afterwards.",
            )
        )
    return findings


def frame_count(facts: dict[str, Any]) -> int:
    start, end, step = (
        facts.get("frame_start", 1),
        facts.get("frame_end", 0),
        max(1, facts.get("frame_step", 1)),
    )
    return 0 if end < start else (end - start) // step + 1


def check_frames(facts: dict[str, Any]) -> list[Finding]:
    count = frame_count(facts)
    if count == 0:
        return [
            Finding(
                BLOCK,
                "frames_empty",
                f"The frame range {facts.get('frame_start')}-{facts.get('frame_end')} holds no frame.",
                "Set Output Properties > Frame Start at or below Frame End.",
            )
        ]
    if count > HUGE_FRAME_COUNT:
        return [
            Finding(
                WARN,
                "frames_huge",
                f"The scene has {count} frames to render, which can take long and cost a lot.",
                "Check Frame Start, End and Step in Output Properties, or render a shorter range first.",
            )
        ]
    return []


def render_pixels(facts: dict[str, Any]) -> int:
    scale = facts.get("resolution_percentage", 100) / 100
    return int(facts.get("resolution_x", 0) * scale) * int(facts.get("resolution_y", 0) * scale)


def check_resolution(facts: dict[str, Any], instance_gpu: bool, gpu_memory_gb: float | None) -> list[Finding]:
    if not instance_gpu or not gpu_memory_gb:
        return []
    need_gb = render_pixels(facts) * BYTES_PER_PIXEL / 1e9
    if need_gb < gpu_memory_gb / 2:
        return []
    size = f"{int(facts['resolution_x'] * facts['resolution_percentage'] / 100)}x{int(facts['resolution_y'] * facts['resolution_percentage'] / 100)}"
    severity = BLOCK if need_gb >= gpu_memory_gb else WARN
    return [
        Finding(
            severity,
            "resolution_huge",
            f"Rendering at {size} needs about {need_gb:.0f} GB of the GPU's {gpu_memory_gb:.0f} GB before any scene data.",
            "Lower Output Properties > Resolution %, or choose a machine with more GPU memory.",
        )
    ]


def check_addons(facts: dict[str, Any]) -> list[Finding]:
    by_module: dict[str, list[str]] = {}
    for item in facts.get("addons_used", []):
        if item["module"] not in INSTANCE_ADDONS:
            by_module.setdefault(item["module"], []).append(item["used_by"])
    findings = [
        Finding(
            WARN,
            "addon_missing_on_instance",
            f"The add-on {module} is used by {_some(users)}; the cloud machine does not have it, so that data is ignored.",
            "Apply or bake what the add-on makes (for example convert to mesh) before submitting.",
        )
        for module, users in sorted(by_module.items())
        if module
    ]
    if by_module.get(""):
        findings.append(
            Finding(
                WARN,
                "addon_data_unknown",
                f"{_some(by_module[''])} {'holds' if len(by_module['']) == 1 else 'hold'} data of an add-on "
                "that is not enabled here; the cloud machine will not have it either.",
                "Enable the add-on and check the scene, or apply what it makes before submitting.",
            )
        )
    return findings


def check_ocio(facts: dict[str, Any]) -> list[Finding]:
    if not facts.get("ocio_env"):
        return []
    return [
        Finding(
            WARN,
            "custom_ocio",
            f"Colours are managed by a custom OCIO config ({facts['ocio_env']}), which the cloud machine does not have.",
            "Expect Blender's standard colour management on the frames, or unset OCIO and check the look locally.",
        )
    ]


def check_auto_run(facts: dict[str, Any]) -> list[Finding]:
    needed = facts.get("auto_run_needed", [])
    if not needed:
        return []
    names = [item["name"] for item in needed]
    return [
        Finding(
            WARN,
            "needs_auto_run",
            f"{_some(names)} need Python to run, and the cloud machine renders with Auto Run Python Scripts off.",
            "Bake the animation these drivers produce, or use simple expressions (no custom functions).",
        )
    ]


def check_device(facts: dict[str, Any], instance_gpu: bool) -> list[Finding]:
    device = facts.get("cycles_device")
    if facts.get("render_engine") != "CYCLES" or device is None:
        return []
    if instance_gpu and device == "CPU":
        return [
            Finding(
                WARN,
                "scene_cpu_on_gpu_instance",
                "The scene is set to render on the CPU, but a GPU machine is chosen.",
                "Set Render Properties > Device to GPU Compute, or choose a cheaper CPU machine.",
            )
        ]
    if not instance_gpu and device == "GPU":
        return [
            Finding(
                WARN,
                "scene_gpu_on_cpu_instance",
                "The scene is set to render on the GPU, but the chosen machine has none: it will render on the CPU, more slowly.",
                "Choose a GPU machine, or accept a longer (and costlier) render.",
            )
        ]
    return []


def run_preflight(
    facts: dict[str, Any], pack: PackResult | None, instance_gpu: bool, gpu_memory_gb: float | None
) -> list[Finding]:
    """Every finding for this scene and machine choice, blocking ones first."""
    findings = [
        *check_engine(facts),
        *check_output(facts),
        *check_frames(facts),
        *check_resolution(facts, instance_gpu, gpu_memory_gb),
        *check_device(facts, instance_gpu),
        *check_missing(facts, pack),
        *check_outside_project(pack),
        *check_unreadable(pack),
        *check_addons(facts),
        *check_ocio(facts),
        *check_auto_run(facts),
    ]
    return sorted(findings, key=lambda f: f.severity != BLOCK)


def blocks(findings: list[Finding]) -> bool:
    return any(f.severity == BLOCK for f in findings)
