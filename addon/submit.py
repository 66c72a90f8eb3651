"""From the artist's scene to a JobRequest: what blocks a render, the confirmation, the start.

Runs on Blender's main thread and stays cheap: the only disk work is saving a copy of the
scene (the open file is never modified); packing, uploading and launching run in the job's
thread.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import bpy

from ..cloud.cost import fleet_plan, machine_facts
from ..cloud.errors import CloudError
from ..cloud.job.frame_history import drivers_text
from ..cloud.job.records import (
    EngineName,
    JobRecord,
    JobRequest,
    engine_name_for,
    new_job_id,
    splits_by_samples,
)
from ..cloud.job.still_plan import after_merge, split_samples
from ..cloud.pack.scene_facts import SceneFacts
from . import account, job_view, jobs_list, local_blender, panel_results, prices, pump
from .settings import RenderSettings, frames_for, snapshot


class SubmitError(Exception):
    """Something on the Blender side stopped the submission; the text is for the artist."""


def render_blockers(context: bpy.types.Context) -> list[str]:
    """Every reason "Render in Cloud" cannot run now, in the order an artist fixes them."""
    blockers = []
    if not bpy.app.online_access:
        blockers.append("Online access is off: turn on Preferences > System > Network > Allow Online Access.")
    if not account.has_credentials():
        blockers.append("No AWS account connected: add your keys in Preferences > Add-ons > Cloud Render.")
    if not bpy.data.filepath:
        blockers.append("Save the .blend file first, so frames have a folder to come back to.")
    try:
        frames_for(context.scene)
    except CloudError as error:
        blockers.append(f"{error.message} {error.action}")
    return blockers


def running_jobs() -> list[str]:
    """This file's jobs still rendering in this session, newest first (a file opened again, by
    Open Recent after File > New, still has the job it started)."""
    if not bpy.data.filepath or not pump.manager_exists():
        return []
    return pump.manager().running_jobs(bpy.data.filepath)


def running_job_text() -> str:
    """What Render in Cloud asks first when this file already has a job rendering: a second
    press is more often a slip (or a lost panel) than a wish to pay for two machines."""
    running = running_jobs()
    if not running:
        return ""
    state = job_view.job_state(running[0])
    others = len(running) - 1
    return (
        f"Job {running[0]} is still rendering this file ({state.frames_done}/{state.frames_total} frames)"
        + (f", and {others} more job{'s' * (others != 1)}" if others else "")
        + ". Render starts another job, billed beside it; Cancel (in the Current Job panel or the "
        "Jobs list) stops the running one."
    )


def price_per_hour(region: str, instance_type: str, spot: bool) -> float:
    """What the job is confirmed and capped with: the same price the panel shows (addon.prices)."""
    return prices.hourly(region, instance_type, spot).usd


def confirmation_text(context: bpy.types.Context, this_frame: bool = False) -> str:
    """The Render in Cloud dialog: what runs where, the estimate, and the caps as enforced.

    With N machines the caps are the whole job's: "At most" is min(Max Cost, N x price x
    Max Hours) (cloud/cost/caps.worst_case), and a test render's estimate is one machine's,
    followed by the 1, N/2, N trade-off.
    """
    scene = context.scene
    settings = snapshot(scene)
    frames = frames_for(scene, settings, this_frame)
    still = splits_by_samples(len(frames), str(scene.render.engine))  # if it runs on many machines
    machines = machines_for(settings, len(frames), still)
    price = prices.hourly(settings.region, settings.instance_type, settings.use_spot)
    estimate = worst_case_text(settings, len(frames), machines)
    shown = panel_results.results()
    measured = shown.estimate_for(settings.instance_type)
    if measured is not None:
        whole = "for the job on one machine" if machines > 1 else "for the job"
        estimate = (
            f"Estimate from a test render: {measured.machine}: {measured.cost_and_time} {whole}\n{estimate}"
        )
    elif shown.estimate_stale():  # never an old figure: say it is out of date instead
        estimate = f"{shown.estimate_stale()}\n{estimate}"
    fleet = fleet_line(settings, len(frames), price.usd or 0.0, still)
    if engine_name_for(machines, len(frames), str(scene.render.engine)) is EngineName.STILL:
        samples = int(settings.samples or scene.cycles.samples)
        parts = split_samples(samples, machines, settings.use_spot, measured_seconds_per_frame(settings))
        done, _doing = after_merge(*after_merge_steps(scene))
        what = (
            f"one frame split by samples over {machines} machines (AWS Batch): {samples} samples in "
            f"{len(parts)} parts, merged exactly"
            + (f", then {done}" if done else "")
            + ". Adaptive sampling "
            f"is off for a split frame: it renders a fixed {samples} samples, as the estimate counts"
        )
    else:
        what = f"{len(frames)} frames" + (f" on {machines} machines (AWS Batch)" if machines > 1 else "")
    return (
        f"{settings.instance_type} ({price.words()}) in {settings.region}, {what}"
        + f".\n{estimate}\n"
        + (f"{fleet}\n" if fleet else "")
        + caps_text(settings.max_cost, settings.max_hours, machines)
    )


def worst_case_text(settings: RenderSettings, frames: int, machines: int) -> str:
    """ "At most $X (...)": the most the job can cost as its caps are enforced, on N machines."""
    price = prices.hourly(settings.region, settings.instance_type, settings.use_spot)
    return machine_facts.job_estimate_text(price, frames, settings.max_hours, settings.max_cost, machines)


def caps_text(max_cost: float, max_hours: float, machines: int) -> str:
    """How the caps hold: on one machine either stops it; on N, Max Cost is for all of them
    together (each stops itself at its 1/N share when Blender is closed) and Max Hours is
    each machine's, counted from launch (they run side by side)."""
    if machines <= 1:
        return f"Hard cap: ${max_cost:.2f} or {max_hours:g} h, whichever comes first."
    return (
        f"Hard caps: ${max_cost:.2f} for all {machines} machines together (each stops itself at "
        f"${max_cost / machines:.2f} if Blender is closed), and {max_hours:g} h from launch on each "
        "machine; whichever comes first stops every machine."
    )


def measured_seconds_per_frame(settings: RenderSettings) -> float | None:
    """The estimate's seconds per frame for the chosen machine type, once Estimate has run (and
    while it holds for the settings)."""
    measured = panel_results.results().estimate_for(settings.instance_type)
    return measured.estimate.seconds_per_frame if measured is not None else None


def measured_boot_seconds(settings: RenderSettings, frames: int) -> float:
    """The estimate's own time before the first frame (boot and Blender's install), so that the
    fleet line's one machine is the estimate's one machine; fleet_plan's figure before one."""
    measured = panel_results.results().estimate_for(settings.instance_type)
    if measured is None:
        return fleet_plan.BOOT_S
    e = measured.estimate
    return max(0.0, e.total_seconds - frames * e.seconds_per_frame)


def after_merge_steps(scene: bpy.types.Scene) -> tuple[bool, bool]:
    """(denoises, composites): what a split still's merging machine does after the merge, as the
    scene asks (cloud/machine/still_parts.py finishes with the scene's own settings)."""
    # 5.x: the compositor is a node group of its own; 4.x: the scene's node tree, when used.
    tree = getattr(scene, "compositing_node_group", None) or (
        getattr(scene, "node_tree", None) if getattr(scene, "use_nodes", False) else None
    )
    passes_only = {
        "CompositorNodeRLayers",
        "CompositorNodeComposite",
        "CompositorNodeViewer",
        "NodeGroupOutput",
    }
    composites = bool(
        scene.render.use_compositing
        and tree is not None
        and any(node.bl_idname not in passes_only for node in tree.nodes)
    )
    return bool(scene.cycles.use_denoising), composites


def still_frame_seconds(settings: RenderSettings, frames: list[int], render_engine: str) -> dict[int, float]:
    """A still's expected time from the estimate, where it ran: its spot parts are cut no
    shorter than a minute by it (cloud/job/still_plan.py). Empty for frames (the job thread
    fills those from earlier jobs) and before an estimate."""
    seconds = measured_seconds_per_frame(settings)
    return {frames[0]: seconds} if seconds and splits_by_samples(len(frames), render_engine) else {}


def machines_for(settings: RenderSettings, frames: int, still: bool = False) -> int:
    """Machines, or with Finish Within set and an estimate known, the fewest that finish in time
    (a still's one frame split by samples: cloud/job/still_plan.py)."""
    seconds = measured_seconds_per_frame(settings)
    if settings.finish_within_minutes and seconds:
        return fleet_plan.machines_to_finish_within(
            frames,
            seconds,
            settings.finish_within_minutes,
            256,
            measured_boot_seconds(settings, frames),
            still=still,
        )
    return int(settings.machines)


def fleet_line(settings: RenderSettings, frames: int, price_per_hour: float, still: bool = False) -> str:
    """Time and cost for 1, N/2 and N machines from the estimate, or '' before an estimate."""
    seconds = measured_seconds_per_frame(settings)
    machines = machines_for(settings, frames, still)
    if not seconds or (machines < 2 and not settings.finish_within_minutes):
        return ""
    measured = panel_results.results().estimate_for(settings.instance_type)
    if measured is not None and measured.estimate.price_per_hour:  # the estimate's own price
        price_per_hour = measured.estimate.price_per_hour
    boot = measured_boot_seconds(settings, frames)
    options = fleet_plan.tradeoff(frames, seconds, price_per_hour, machines, still, boot)
    if settings.finish_within_minutes:
        head = f"{machines} machines to finish within {settings.finish_within_minutes} min. "
    else:
        head = f"{machines} machines set. "
    one, most = options[0], options[-1]
    verdict = (
        " One machine is quicker and cheaper here (each machine boots before its first frame): "
        "set Machines to 1."
        if most.machines > 1 and most.minutes >= one.minutes and most.cost >= one.cost
        else ""
    )
    return head + fleet_plan.tradeoff_text(options) + verdict


def output_dir_for(settings: RenderSettings, job_id: str) -> Path:
    template = settings.output_dir or "//cloud_renders/{job}/"
    return Path(bpy.path.abspath(template.replace("{job}", job_id)))


def build_request(
    context: bpy.types.Context,
    job_id: str,
    blend_copy: Path,
    frames: list[int],
    facts: SceneFacts | None = None,
    settings: RenderSettings | None = None,
) -> JobRequest:
    """The job as the artist set it up; `facts`: the scene facts the preflight read, if it ran;
    `settings`: the snapshot the submit read (read here when none)."""
    scene = context.scene
    settings = settings or snapshot(scene)
    prefs = account.preferences()
    return JobRequest(
        job_id=job_id,
        blend_copy=blend_copy,
        blend_name=bpy.data.filepath,
        scene_name=scene.name,
        frames=frames,
        output_dir=output_dir_for(settings, job_id),
        region=settings.region,
        instance_type=settings.instance_type,
        spot=settings.use_spot,
        max_cost=settings.max_cost,
        max_hours=settings.max_hours,
        price_per_hour=price_per_hour(settings.region, settings.instance_type, settings.use_spot),
        on_demand_price_per_hour=price_per_hour(settings.region, settings.instance_type, False),
        blender_version=bpy.app.version_string.split()[0],
        frame_order="preview_first" if settings.frame_order == "PREVIEW_FIRST" else "sequential",
        machines=machines_for(
            settings, len(frames), splits_by_samples(len(frames), str(scene.render.engine))
        ),
        device="GPU" if machine_facts.has_gpu(settings.instance_type) else "CPU",
        samples=settings.samples or None,
        resolution_percentage=settings.resolution_percentage or None,
        file_format=None if settings.file_format == "SCENE" else settings.file_format,
        movie_frames_format=settings.movie_frames,
        movie=bool(scene.render.is_movie_format),
        retention_days=prefs.retention_days if prefs is not None else 14,
        quote_first=settings.quote_first or settings.proof_first,
        proof_first=settings.proof_first,
        cost_map_command=local_blender.cost_map_command(blend_copy, str(scene.render.engine)),
        frame_seconds=still_frame_seconds(settings, frames, str(scene.render.engine)),
        still_denoise=after_merge_steps(scene)[0],
        still_composite=after_merge_steps(scene)[1],
        **render_load(scene, settings),
        **frame_shape(scene, settings),
        **farm_equals_local(scene, settings.render_despite_differences, facts),
    )


def render_load(scene: bpy.types.Scene, settings: RenderSettings | None = None) -> dict[str, Any]:
    """Engine, samples and pixels of a frame as the job renders it (the overrides applied): what
    an earlier job's frame times are matched and scaled by (cloud/job/frame_history.py)."""
    render, settings = scene.render, settings or snapshot(scene)
    if render.engine.startswith("BLENDER_EEVEE"):
        samples = settings.samples or scene.eevee.taa_render_samples
    elif render.engine == "BLENDER_WORKBENCH":
        samples = 1
    else:
        samples = settings.samples or scene.cycles.samples
    scale = (settings.resolution_percentage or render.resolution_percentage) / 100
    pixels = int(render.resolution_x * scale) * int(render.resolution_y * scale)
    return {
        "engine": str(render.engine),
        "render_samples": int(samples),
        "render_pixels": pixels,
        "render_drivers": drivers_text(cost_drivers(scene)),
    }


def cost_drivers(scene: bpy.types.Scene) -> dict[str, object]:
    """The settings besides samples and pixels that make a frame cost what it does: an earlier
    job's frame times carry to this one only when they are the same (cloud/job/frame_history.py)."""
    engine = scene.render.engine
    if engine == "CYCLES":
        cycles = scene.cycles
        adaptive = (
            f"{float(cycles.adaptive_threshold):g}/{int(cycles.adaptive_min_samples)}"
            if cycles.use_adaptive_sampling
            else "off"
        )
        bounces = (
            cycles.max_bounces,
            cycles.diffuse_bounces,
            cycles.glossy_bounces,
            cycles.transmission_bounces,
            cycles.volume_bounces,
            cycles.transparent_max_bounces,
        )
        denoise = any(
            getattr(getattr(layer, "cycles", None), "use_denoising", True)
            for layer in scene.view_layers
            if layer.use
        )
        return {
            "adaptive": adaptive,
            "denoiser": str(cycles.denoiser) if cycles.use_denoising and denoise else "off",
            "bounces": ",".join(str(int(b)) for b in bounces),
            "time_limit": f"{float(cycles.time_limit):g}",
            "light_tree": int(bool(getattr(cycles, "use_light_tree", True))),
        }
    if engine.startswith("BLENDER_EEVEE"):
        eevee = scene.eevee
        return {
            "raytracing": int(bool(getattr(eevee, "use_raytracing", False))),
            "shadows": int(bool(getattr(eevee, "use_shadows", True))),
            "volumes": f"{int(getattr(eevee, 'volumetric_samples', 0))}",
        }
    return {}


def frame_shape(scene: bpy.types.Scene, settings: RenderSettings | None = None) -> dict[str, Any]:
    """What each frame file must be, as Blender writes it on the machine (the overrides applied):
    the job thread checks each frame's header against it before Blender here decodes one
    (cloud/job/image_header.py). Blender's own sizing: resolution x percentage // 100. A border
    crop makes the file smaller; stereo views side by side or stacked make it twice as wide or tall."""
    render, settings = scene.render, settings or snapshot(scene)
    if render.is_movie_format:
        file_format = settings.movie_frames  # a movie job renders these frames, then encodes
    elif settings.file_format != "SCENE":
        file_format = settings.file_format
    else:
        file_format = render.image_settings.file_format
    percentage = settings.resolution_percentage or render.resolution_percentage
    width, height = render.resolution_x * percentage // 100, render.resolution_y * percentage // 100
    crop = bool(render.use_border and render.use_crop_to_border)
    stereo = bool(render.use_multiview and render.image_settings.views_format == "STEREO_3D")
    return {
        "frame_format": str(file_format),
        "frame_width": width * (2 if stereo else 1),
        "frame_height": height * (2 if stereo else 1),
        "frame_size_at_most": crop or stereo,
    }


def farm_equals_local(
    scene: bpy.types.Scene, accept_differences: bool, facts: SceneFacts | None = None
) -> dict[str, Any]:
    """The JobRequest fields that make the machine's Blender the artist's (see cloud/pack/addons.py)."""
    from ..cloud.pack.preflight import addon_plan
    from . import scene_facts

    if facts is None:
        facts = scene_facts.collect_scene_facts(scene)
    plan = addon_plan(facts)
    return {
        "addons": [addon.spec_entry() for addon in plan.travel],
        "addon_files": {rel: str(path) for rel, path in plan.files.items()},
        "bake_folders": [
            {"folder": s["folder"], "relative": s["relative"]} for s in facts.simulations if s.get("relative")
        ],
        "auto_run": bool(facts.auto_run_enabled),
        "fingerprint": facts.fingerprint,
        "accept_differences": accept_differences,
    }


def save_copy(job_id: str) -> Path:
    """Save the scene as it is now (unsaved edits included) without touching the open file.

    The copy lies in a folder of its own, `<user folder>/submit/<job_id>/`, readable by this user
    only (0700): the job's pack goes beside it, and `discard_copy` (or the job, once the upload
    is over) removes the folder.
    """
    root = pump.user_dir("submit")
    os.chmod(root, 0o700)
    folder = root / job_id
    folder.mkdir(mode=0o700, exist_ok=True)
    os.chmod(folder, 0o700)
    _copies.add(folder)
    copy = folder / (Path(bpy.data.filepath).name or "scene.blend")
    try:
        # Uncompressed whatever the artist's file uses: compressing costs the main thread most
        # of the save (a scene with 107 MB of mesh: 0.9-1.4 s compressed, 0.07-0.23 s not, on
        # 2 busy cores); the copy only feeds the pack, and what renders is the same.
        # It also lets a large .blend travel as chunks, a resubmit sending only those that changed
        # (cloud/pack/chunking.py): a compressed one differs everywhere after any edit.
        bpy.ops.wm.save_as_mainfile(
            filepath=str(copy), copy=True, relative_remap=True, check_existing=False, compress=False
        )
    except BaseException:
        discard_copy(copy)
        raise
    return copy


# Folders save_copy made in this session: discard_copy removes those and nothing else.
_copies: set[Path] = set()


def discard_copy(copy: Path) -> None:
    """Remove a copy save_copy made, with its folder (safe from any thread)."""
    folder = Path(copy).parent
    if folder in _copies:
        shutil.rmtree(folder, ignore_errors=True)
        _copies.discard(folder)


def start_job(context: bpy.types.Context, this_frame: bool = False) -> JobRecord:
    settings = snapshot(context.scene)  # read once: the job is what the artist set at this press
    frames = frames_for(context.scene, settings, this_frame)
    facts, findings = checked_facts(context, settings)
    blocking = [f for f in findings if f.severity == "block"]
    if blocking:
        raise SubmitError(f"{blocking[0].message} {blocking[0].fix}")
    job_id = new_job_id()
    try:
        copy = save_copy(job_id)
    except RuntimeError as error:
        raise SubmitError(f"Could not save a copy of the scene for upload: {error}") from error
    try:
        request = build_request(context, job_id, copy, frames, facts, settings)
        request.warnings = [f"{f.message} {f.fix}" for f in findings]
        record = pump.manager().submit(request)
    except BaseException:
        discard_copy(copy)  # no job took it over
        raise
    track(context, record)
    return record


def relaunch_missing(context: bpy.types.Context, job_id: str) -> JobRecord:
    old = pump.manager().store.load(job_id)
    request = build_request(context, job_id, Path(), old.frames)
    request.output_dir = Path(old.output_dir)
    record = pump.manager().relaunch_missing(job_id, request)
    track(context, record)
    return record


def track(context: bpy.types.Context, record: JobRecord) -> None:
    """Show the job in the panel and on top of the jobs list (both never saved in a .blend)."""
    jobs_list.add(record)
    # The last job's machine facts would read as this one's ("0.7 s/frame, Device CPU" while
    # packing, in the real window): the job starts from its own, empty, state.
    job_view.begin(
        record.job_id,
        job_view.ViewState(
            job_id=record.job_id,
            state=record.stage,
            message="Collecting the scene's files",
            frames_total=len(record.frames),
            price_per_hour=record.price_per_hour,
        ),
    )
    job_view.start_clock(record.job_id, record.created)


def preflight(context: bpy.types.Context):  # type: ignore[no-untyped-def]
    """The checks that need no upload: scene settings, missing files, add-ons, colour config."""
    return checked_facts(context)[1]


def checked_facts(context: bpy.types.Context, settings: RenderSettings | None = None):  # type: ignore[no-untyped-def]
    """The scene facts and the preflight's findings on them: a submit reads the scene once."""
    pump.job_side_imported()
    from ..cloud.pack import preflight
    from . import scene_facts

    settings = settings or snapshot(context.scene)
    facts = scene_facts.collect_scene_facts(context.scene)
    gpu = machine_facts.has_gpu(settings.instance_type)
    findings = preflight.run_preflight(facts, None, gpu, machine_facts.gpu_memory_gb(settings.instance_type))
    return facts, findings


def prefetch_facts() -> None:
    """While the confirmation is open: read what only the saved file tells, off the main thread."""
    from . import farm_facts

    farm_facts.prefetch_saved_file()
