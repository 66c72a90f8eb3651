"""Preflight: what would render wrong (or not at all) on the cloud machine, said before paying.

Pure Python: judges the `SceneFacts` (scene_facts.py) that the add-on's `scene_facts.py` collects,
plus the pack result when there is one. Each finding is one line and a one-line fix; "block"
findings stop the submit, "warn" ones are shown and may be accepted.
"""

from __future__ import annotations

from dataclasses import dataclass

from .addons import AddonPlan, EnabledAddon, plan_addons
from .packer import PackResult
from .scene_facts import SceneFacts

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


def check_missing(facts: SceneFacts, pack: PackResult | None) -> list[Finding]:
    if pack is not None:
        missing = [(m.path, m.used_by, m.looked_in) for m in pack.missing]
    else:
        missing = [(m["path"], m["used_by"], m["looked_in"]) for m in facts.missing_files]
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


OPENGL_ENGINES = {"BLENDER_EEVEE": "EEVEE", "BLENDER_EEVEE_NEXT": "EEVEE", "BLENDER_WORKBENCH": "Workbench"}


def check_engine(facts: SceneFacts, instance_gpu: bool = True) -> list[Finding]:
    """Cycles renders anywhere; EEVEE and Workbench need the machine's GPU (through OpenGL)."""
    engine = facts.render_engine
    if engine == "CYCLES":
        return []
    name = OPENGL_ENGINES.get(engine)
    if name is None:
        return [
            Finding(
                BLOCK,
                "engine_unknown",
                f"The scene renders with {engine}, a render engine the cloud machine does not have.",
                "Set Render Properties > Render Engine to Cycles, EEVEE or Workbench.",
            )
        ]
    if instance_gpu:
        return []
    return [
        Finding(
            BLOCK,
            "engine_needs_gpu",
            f"{name} draws with the GPU; on this machine without one it would run in software, far too slowly to pay for.",
            "Choose a GPU machine (g4dn, g5, g6), or switch the scene to Cycles for a CPU machine.",
        )
    ]


def check_output(facts: SceneFacts) -> list[Finding]:
    findings = []
    path = facts.output_path or ""
    if path and not path.startswith("//"):
        findings.append(
            Finding(
                WARN,
                "output_absolute",
                f"The output path {path} is a folder on this computer; frames are downloaded into the job folder instead.",
                "Set Output Properties > Output to a relative path such as //render/.",
            )
        )
    return findings


def frame_count(facts: SceneFacts) -> int:
    start, end, step = (
        facts.frame_start,
        facts.frame_end,
        max(1, facts.frame_step),
    )
    return 0 if end < start else (end - start) // step + 1


def check_frames(facts: SceneFacts) -> list[Finding]:
    count = frame_count(facts)
    if count == 0:
        return [
            Finding(
                BLOCK,
                "frames_empty",
                f"The frame range {facts.frame_start}-{facts.frame_end} holds no frame.",
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


def render_pixels(facts: SceneFacts) -> int:
    scale = facts.resolution_percentage / 100
    return int(facts.resolution_x * scale) * int(facts.resolution_y * scale)


def check_resolution(facts: SceneFacts, instance_gpu: bool, gpu_memory_gb: float | None) -> list[Finding]:
    if not instance_gpu or not gpu_memory_gb:
        return []
    need_gb = render_pixels(facts) * BYTES_PER_PIXEL / 1e9
    if need_gb < gpu_memory_gb / 2:
        return []
    size = f"{int(facts.resolution_x * facts.resolution_percentage / 100)}x{int(facts.resolution_y * facts.resolution_percentage / 100)}"
    severity = BLOCK if need_gb >= gpu_memory_gb else WARN
    return [
        Finding(
            severity,
            "resolution_huge",
            f"Rendering at {size} needs about {need_gb:.0f} GB of the GPU's {gpu_memory_gb:.0f} GB before any scene data.",
            "Lower Output Properties > Resolution %, or choose a machine with more GPU memory.",
        )
    ]


def addon_plan(facts: SceneFacts) -> AddonPlan:
    """Which enabled add-ons the scene uses travel with the job, and why others cannot."""
    enabled = [
        EnabledAddon(
            a["module"], a["path"], a.get("version", ""), a.get("preferences", {}), a.get("wheels", [])
        )
        for a in facts.addons_enabled
    ]
    return plan_addons(enabled, {item["module"] for item in facts.addons_used}, "")


def check_addons(facts: SceneFacts) -> list[Finding]:
    """Add-ons that travel say nothing; those that cannot, or are not enabled here, are named."""
    by_module: dict[str, list[str]] = {}
    for item in facts.addons_used:
        if item["module"] not in INSTANCE_ADDONS:
            by_module.setdefault(item["module"], []).append(item["used_by"])
    plan = addon_plan(facts)
    travelling = {addon.module for addon in plan.travel} | {
        a["module"] for a in facts.addons_enabled if a["module"].rsplit(".", 1)[-1] in plan.travelling_modules
    }
    findings = [
        Finding(
            WARN,
            "addon_cannot_travel",
            f"The add-on {module} is used by {_some(users)} but cannot go to the cloud machine: {plan.refused[module]} "
            "The job stops on the machine before rendering unless you choose to render anyway.",
            "Apply or bake what the add-on makes (for example convert to mesh), or install a pure Python build of it.",
        )
        if module in plan.refused
        else Finding(
            WARN,
            "addon_missing_on_instance",
            f"The add-on {module} is used by {_some(users)}; the cloud machine does not have it, so that data is ignored.",
            "Apply or bake what the add-on makes (for example convert to mesh) before submitting.",
        )
        for module, users in sorted(by_module.items())
        if module and module not in travelling
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


def check_ocio(facts: SceneFacts) -> list[Finding]:
    if not facts.ocio_env:
        return []
    return [
        Finding(
            WARN,
            "custom_ocio",
            f"Colours are managed by a custom OCIO config ({facts.ocio_env}), which the cloud machine does not have.",
            "Expect Blender's standard colour management on the frames, or unset OCIO and check the look locally.",
        )
    ]


def check_auto_run(facts: SceneFacts) -> list[Finding]:
    needed = facts.auto_run_needed
    if not needed or facts.auto_run_enabled:  # Auto Run travels with the job
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


def check_device(facts: SceneFacts, instance_gpu: bool) -> list[Finding]:
    device = facts.cycles_device
    if facts.render_engine != "CYCLES" or device is None:
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


def check_simulations(facts: SceneFacts) -> list[Finding]:
    """Unbaked simulations stop the submit: the machines render frames out of order, each from scratch."""
    findings = []
    for sim in facts.simulations:
        where = f'object "{sim["object"]}"' + (
            f' (modifier "{sim["modifier"]}")' if sim.get("modifier") else ""
        )
        if sim.get("missing"):
            findings.append(
                Finding(
                    BLOCK,
                    "simulation_cache_missing",
                    f"The {sim['kind']} simulation on {where} is baked to disk, but its cache files are not "
                    f"in {sim['missing']}; the cloud machine would solve it again, differently.",
                    "Bake it again (Physics Properties > Cache) or put the cache folder back, and save the file.",
                )
            )
        elif not sim.get("baked"):
            how = (
                "Bake it with the modifier's Bake button (Physics or Modifier Properties > Simulation) and save the file."
                if sim["kind"] == "Geometry Nodes"
                else "Bake it in Physics Properties > Cache > Bake (or Bake All Dynamics) and save the file."
            )
            findings.append(
                Finding(
                    BLOCK,
                    "simulation_not_baked",
                    f"The {sim['kind']} simulation on {where} is not baked; the cloud machine renders frames out "
                    "of order and would solve it again, differently.",
                    how,
                )
            )
        elif sim.get("folder") and not sim.get("relative"):
            findings.append(
                Finding(
                    WARN,
                    "cache_outside_project",
                    f"The {sim['kind']} bake of {where} lies in {sim['folder']}, outside the project folder; "
                    "the cloud machine would not find it there.",
                    "Set the bake's folder to a path beside the .blend (starting with //), bake again and save.",
                )
            )
    return findings


def run_preflight(
    facts: SceneFacts, pack: PackResult | None, instance_gpu: bool, gpu_memory_gb: float | None
) -> list[Finding]:
    """Every finding for this scene and machine choice, blocking ones first."""
    findings = [
        *check_engine(facts, instance_gpu),
        *check_output(facts),
        *check_frames(facts),
        *check_resolution(facts, instance_gpu, gpu_memory_gb),
        *check_device(facts, instance_gpu),
        *check_missing(facts, pack),
        *check_outside_project(pack),
        *check_unreadable(pack),
        *check_addons(facts),
        *check_simulations(facts),
        *check_ocio(facts),
        *check_auto_run(facts),
    ]
    return sorted(findings, key=lambda f: f.severity != BLOCK)


def blocks(findings: list[Finding]) -> bool:
    return any(f.severity == BLOCK for f in findings)
