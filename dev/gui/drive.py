"""Runs inside the real Blender GUI (Debian's 4.3.2 under Xvfb): an artist's session, staged.

`blender --python drive.py` with GUI_WORK=<folder with emulator.json and tarball/>. One
`bpy.app.timers` state machine walks the states an artist meets (preferences, the panel, Check
Scene, Estimate, the confirmation, a job from Packing to Done, the frames, the full log, a still
split over three machines) and takes an X screenshot of each with ImageMagick's `import`
(`bpy.ops.screen.screenshot` saves black images under Xvfb). At the end it writes result.json with what the click-through checks:
the Image Editor shows the job's sequence and the panel says Done with the frame count.
Timers, not waits: Blender's loop must keep drawing between stages.
"""

import importlib
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import bpy

WORK = Path(os.environ["GUI_WORK"])
SHOTS = WORK / "shots"
MODE = os.environ.get("GUI_MODE", "test")  # "test": the click-through; "shots": every state
MOD = "bl_ext.user_default.cloud_render"
EMU = json.loads((WORK / "emulator.json").read_text())
# The emulated account's IAM user "artist" (run.py makes it): Cloud Render's two policies, and
# after Set Up the Render policy alone; the emulator's strict layer authorises as AWS would.
KEY_ID = EMU["key_id"]
SECRET = EMU["secret"]
INSTANCE_TYPE = "c5.2xlarge"  # the simulator's machines render on the CPU
FINAL = {"done", "failed", "cancelled", "interrupted", "capped"}
# Quote First asks only when the measured projection is over Max Cost (under it, it goes on by
# itself, as documented). 2000 frames at 32 samples measured 0.288 s/frame here, about $0.06 of
# a $0.25 cap: it went on. 256 samples measured 0.77 s/frame: 12000 frames project about $0.9.
QUOTE_FRAMES, QUOTE_SAMPLES, QUOTE_MAX_COST = 12000, 256, 0.25
S: dict[str, Any] = {"t0": time.monotonic(), "job": "", "seen": set(), "deadline": 0.0, "result": {}}


def context() -> Any:
    return bpy.context


def ops() -> Any:
    return bpy.ops  # the add-on's operators are unknown to the type stubs


def blend_data() -> Any:
    return bpy.data  # libraries.load's context manager is unknown to the type stubs


def wm() -> Any:
    return bpy.context.window_manager


def log(*args):
    print(f"[drive {time.monotonic() - S['t0']:6.1f}s]", *args, flush=True)


def mod() -> Any:
    return sys.modules[MOD]


def results() -> Any:
    """What Check Scene, Estimate and Check for Forgotten Machines found (addon/panel_results.py)."""
    return importlib.import_module(f"{MOD}.addon.panel_results").results()


def view() -> Any:
    return mod().addon.job_view.view()


def win() -> Any:
    return wm().windows[0]


def props_area() -> Any:
    areas = [a for a in win().screen.areas if a.type == "PROPERTIES"]
    return min(areas, key=lambda a: a.width) if areas else None


def region_of(area: Any, kind: str = "WINDOW") -> Any:
    return next(r for r in area.regions if r.type == kind)


def redraw_all():
    for window in wm().windows:
        for area in window.screen.areas:
            area.tag_redraw()


def shot(label, area=None, box=None):
    """Screenshot of the X screen, cropped to an area (or box x, y, w, h) when given."""
    if MODE == "shots" and not shoots(S.get("part", "")):
        return  # a part not asked for in a partial run: its PNG in docs/screenshots/ stays
    path = SHOTS / f"{label}.png"  # stable names: the README links them
    subprocess.run(["import", "-window", "root", str(path)], check=False)
    if area is not None:
        box = (area.x, win().height - area.y - area.height, area.width, area.height)
    if box is not None:
        x, y, w, h = box
        subprocess.run(["convert", str(path), "-crop", f"{w}x{h}+{x}+{y}", "+repage", str(path)], check=False)
    log("shot", path.name)


def scroll(area, down=True, pages=12):
    with context().temp_override(window=win(), area=area, region=region_of(area)):
        for _ in range(pages):
            (bpy.ops.view2d.scroll_down if down else bpy.ops.view2d.scroll_up)(page=True)
    area.tag_redraw()


def focus_main():
    """No window manager under Xvfb: give the keyboard back to the main window."""
    subprocess.run(
        "xdotool search --onlyvisible --name 'Blender' | head -1 | xargs -r -I{} xdotool windowfocus {}",
        shell=True,
        check=False,
    )


def in_props(op, *args, **kwargs):
    area = props_area()
    with context().temp_override(window=win(), area=area, region=region_of(area)):
        return op(*args, **kwargs)


# ------------------------------------------------------------------------------ stages
# Each stage returns seconds until the next one, or ("again", seconds) to run again.


def st_close_splash():
    """A click on the empty 3D viewport closes the splash screen, as it would for an artist."""
    subprocess.Popen(["xdotool", "mousemove", "300", "700", "sleep", "0.3", "click", "1"])
    return 2.0


def st_panel_no_account():
    """Before any keys: the Output tab as a new artist first sees it."""
    props_area().spaces.active.context = "OUTPUT"
    redraw_all()
    return 1.5


def top_of_panel():
    """To the bottom, then one page up: the top of the Cloud Render panel (its reasons,
    findings and estimate), above the long Machine and Frames sub-panel."""
    scroll(props_area())
    scroll(props_area(), down=False, pages=1)


def st_panel_no_account_scroll():
    top_of_panel()
    return 1.5


def st_panel_no_account_shot():
    if MODE == "shots":
        shot("panel_no_account", props_area())
    return 0.5


def st_prefs_open():
    log("Blender", bpy.app.version_string, "Python", sys.version.split()[0], "online", bpy.app.online_access)
    prefs = context().preferences.addons[MOD].preferences
    prefs.credential_source = "KEYS"
    prefs.endpoint_url = EMU["s3"]
    prefs.default_region = "us-east-1"
    context().preferences.active_section = "ADDONS"
    wm().addon_search = "Cloud Render"
    with context().temp_override(window=win()):
        bpy.ops.screen.userpref_show(section="ADDONS")
    return 3.0


def st_prefs_expand():
    bpy.ops.preferences.addon_expand(module=MOD)
    subprocess.run(
        "xdotool search --name '^Preferences$' | head -1 | "
        "xargs -r -I{} sh -c 'xdotool windowmove {} 0 0; xdotool windowsize {} 900 1000'",
        shell=True,
        check=False,
    )
    redraw_all()
    return 4.0


def st_prefs_no_keys():
    shot("prefs_no_keys", box=(0, 0, 900, 700))
    log(
        "save_keys",
        ops().cloud_render.save_keys("EXEC_DEFAULT", access_key_id=KEY_ID, secret_access_key=SECRET),
    )
    log("test_connection", ops().cloud_render.test_connection())
    S["deadline"] = time.monotonic() + 60
    return 2.0


def st_prefs_connected():
    if not view().account_status and time.monotonic() < S["deadline"]:
        return ("again", 1.0)
    log("account status:", view().account_status)
    # No redraw_all() here: the shot shows what the add-on's own redraw put on the page (issue 26
    # item 2: the page kept "No AWS access key has been saved yet" until the pointer moved).
    return 1.0


def st_prefs_connected_shot():
    shot("prefs_connected", box=(0, 0, 900, 700))
    log("setup", ops().cloud_render.setup())
    S["deadline"] = time.monotonic() + 90
    return 2.0


def st_prefs_setup():
    if not view().setup_summary and time.monotonic() < S["deadline"]:
        return ("again", 1.0)
    log("setup summary:", view().setup_summary.replace("\n", " | "))
    return 1.0  # no redraw_all(): as above, Set Up's result must show by the add-on's own redraw


def st_prefs_setup_shot():
    ready = view().setup_summary.startswith("Ready")
    shot("prefs_after_set_up" if ready else "prefs_after_set_up_quota_0", box=(0, 0, 900, 700))
    if not ready and MODE == "shots":  # Request Quota Increase, pressed here in Preferences
        view().account_status = ""
        log("request_quota", ops().cloud_render.request_quota())
        S["deadline"] = time.monotonic() + 60
    return 1.0


def st_prefs_forget_ask():
    """Issue 26 item 8: Forget Keys asks before it deletes (shots only: the click-through's
    Return later must not meet this dialog)."""
    if MODE != "shots":
        return 0.1
    window = next(w for w in wm().windows if w.screen.areas[0].type == "PREFERENCES")
    subprocess.run(["xdotool", "mousemove", "450", "350"], check=False)
    with context().temp_override(window=window, area=window.screen.areas[0]):
        log("forget_keys INVOKE_DEFAULT", ops().cloud_render.forget_keys("INVOKE_DEFAULT"))
    return 1.5


def st_prefs_forget_shot():
    if MODE != "shots":
        return 0.1
    shot("prefs_forget_keys_asks", box=(0, 0, 900, 700))
    subprocess.run(["xdotool", "key", "Escape"], check=False)  # the artist keeps the keys
    return 1.0


def st_prefs_forget_kept():
    if MODE == "shots":
        S["result"]["keys_kept_after_escape"] = mod().addon.account.has_credentials()
        log("keys kept after Escape:", S["result"]["keys_kept_after_escape"])
    return 0.1


def st_prefs_quota_requested():
    """The answer to a request pressed in Preferences is said there."""
    asked = not view().setup_summary.startswith("Ready") and MODE == "shots"
    if asked and not view().account_status.startswith("Quota request") and time.monotonic() < S["deadline"]:
        return ("again", 0.5)
    if asked:
        log("account status:", view().account_status)
        redraw_all()
        S["prefs_quota_shot"] = True
    return 1.0


def st_prefs_batch_engine():
    """Harness step: what Set Up makes for a scene of BATCH_MACHINES c5.2xlarge machines (the
    Batch engine of the parts on many machines), while its policy is still attached: Set Up
    above ran for the new scene's GPU type, and a job may not make IAM roles itself."""
    if not (runs("batch") or runs("still")):
        return 0.1
    batch = importlib.import_module(f"{MOD}.cloud.aws.batch")
    changes: list[str] = []
    batch.ensure_engine(
        mod().addon.pump.manager().settings_for(),
        INSTANCE_TYPE,
        False,
        batch.vcpus_for(8, BATCH_MACHINES),
        pack_bytes=batch.SETUP_PACK_BYTES,
        gpu=False,
        changes=changes,
        check_roles=True,
    )
    log("Batch engine for", INSTANCE_TYPE, "made:", "; ".join(changes) or "nothing")
    return 0.5


def st_prefs_detach_set_up():
    """Set Up is done: the artist takes the Set Up policy off (run.py plays the AWS console)."""
    (WORK / "set-up-done").write_text(view().setup_summary)
    S["deadline"] = time.monotonic() + 60
    return 0.5


def st_prefs_set_up_detached():
    if not (WORK / "set-up-policy-detached").exists() and time.monotonic() < S["deadline"]:
        return ("again", 0.5)
    log("Set Up policy detached:", (WORK / "set-up-policy-detached").exists())
    return 0.5


def st_prefs_close():
    if S.pop("prefs_quota_shot", False):
        shot("prefs_quota_requested", box=(0, 0, 900, 700))
    for window in list(wm().windows)[1:]:
        with context().temp_override(window=window):
            bpy.ops.wm.window_close()
    return 2.0


def st_scene():
    """A small animated scene, saved: Cycles CPU, 6 frames, 64x36, 4 samples (for the shots,
    12 frames at 160x90 and 32 samples, so the job is seen while it renders)."""
    shots = MODE == "shots"
    scene = context().scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 32 if shots else 4
    scene.cycles.use_denoising = False
    scene.render.resolution_x, scene.render.resolution_y = (160, 90) if shots else (64, 36)
    scene.render.resolution_percentage = 100
    scene.frame_start, scene.frame_end = 1, 12 if shots else 6
    scene.render.image_settings.file_format = "PNG"
    cube = bpy.data.objects.get("Cube")
    if cube is not None:
        cube.rotation_euler = (0.3, 0.2, 0.0)
        cube.keyframe_insert("rotation_euler", frame=1)
        cube.rotation_euler = (0.3, 0.2, 1.2)
        cube.keyframe_insert("rotation_euler", frame=6)
    project = WORK / "project"
    project.mkdir(parents=True, exist_ok=True)
    with context().temp_override(window=win()):
        bpy.ops.wm.save_as_mainfile(filepath=str(project / "shot.blend"))
    ops().cloud_render.set_instance_type(instance_type=INSTANCE_TYPE)
    with context().temp_override(window=win()):
        bpy.ops.wm.save_mainfile()
    # Harness step, not an artist's: what a real machine's first boot leaves behind, a Blender
    # build in the bucket's cache (the simulated machine cannot download one).
    manager = mod().addon.pump.manager()
    settings = manager.settings_for()
    bucket = manager.steps.ensure_bucket(settings, 14)
    tarball = next((WORK / "tarball").glob("*.tar.xz"))
    digest = (WORK / "tarball" / "sha256.txt").read_text().strip()
    manager.steps.stage_blender(settings, bucket, bpy.app.version_string.split()[0], tarball, digest)
    props_area().spaces.active.context = "OUTPUT"
    focus_main()
    redraw_all()
    return 2.0


def st_panel_ready():
    scroll(props_area())
    return 2.0


def st_panel_ready_shot():
    shot("panel_ready", props_area())
    return 0.5


def st_check_scene():
    log("check_scene", in_props(ops().cloud_render.check_scene))
    return 2.0


def st_check_scene_scroll():
    """After the findings are drawn: the top of the panel, where they are. With only a finding
    or two the panel is short, and a page up from the bottom overshoots into Output's own
    panels; a page down from the top of the Output tab lands on it instead."""
    scroll(props_area(), down=False)
    scroll(props_area(), pages=1)
    return 1.5


def st_check_scene_shot():
    log("findings:", " | ".join(f"{f.severity}: {f.message} -> {f.fix}" for f in results().findings))
    shot("panel_check_scene", props_area())
    if MODE != "shots":
        return 0.5
    log("estimate", in_props(ops().cloud_render.estimate))
    S["deadline"] = time.monotonic() + 300
    return 3.0


def st_estimate():
    if MODE == "shots" and results().estimating and time.monotonic() < S["deadline"]:
        return ("again", 2.0)
    top_of_panel()
    return 2.0


def st_estimate_shot():
    if MODE == "shots":
        log("estimate:", results().estimate_note or " | ".join(row.text for row in results().estimate))
        shot("panel_estimate", props_area())
        S["wide_label"] = "panel_estimate_wide"
        return wide_open()
    return 0.5


def wide_open():
    """Turn the 3D viewport into a second, wide Properties editor (Output tab next tick)."""
    area = max(win().screen.areas, key=lambda a: a.width * a.height)
    S["wide_area"], S["wide_was"] = area, area.type
    area.type = "PROPERTIES"
    redraw_all()
    return 2.0


def st_wide_context():
    if "wide_area" in S:
        S["wide_area"].spaces.active.context = "OUTPUT"
        S["wide_area"].tag_redraw()
    return 1.0


def st_wide_scroll():
    """In the tick after the Output tab was drawn: scrolling before that has nothing to scroll."""
    if "wide_area" in S:
        scroll(S["wide_area"])
    return 1.5


def st_wide_shot():
    if "wide_area" in S:
        area = S.pop("wide_area")
        shot(S["wide_label"], area)
        area.type = S["wide_was"]
        redraw_all()
    return 1.0


def st_settings_wide():
    """The settings at a wide Properties editor, beside panel_ready at the default width."""
    if MODE != "shots":
        return 0.1
    S["wide_label"] = "panel_ready_wide"
    return wide_open()


# Packing and Uploading of the small scene last under 2 s: too short to be seen. This part
# renders a larger project, as a shot built from an asset library is: the scene links
# STAGING_ASSETS objects, each from a .blend of its own with its own texture, so packing traces
# and rewrites every library and uploading sends every file.
STAGING_ASSETS, STAGING_TEXTURE_PX = 90, 384


def make_asset_library(folder):
    """STAGING_ASSETS .blend files, one object with one textured material each (written with
    bpy.data.libraries.write, so the artist's open session stays as it is)."""
    import numpy  # Blender's own builds bundle it; the chroot installs it

    (folder / "lib").mkdir(parents=True, exist_ok=True)
    (folder / "tex").mkdir(exist_ok=True)
    rng = numpy.random.default_rng(13)
    size = STAGING_TEXTURE_PX
    for index in range(STAGING_ASSETS):
        image: Any = bpy.data.images.new(f"asset_tex_{index}", size, size)
        image.pixels.foreach_set(rng.random(size * size * 4, dtype=numpy.float32))
        image.filepath_raw = str(folder / "tex" / f"asset_{index:03d}.png")
        image.file_format = "PNG"
        image.save()
        material: Any = bpy.data.materials.new(f"asset_mat_{index}")
        material.use_nodes = True
        node = material.node_tree.nodes.new("ShaderNodeTexImage")
        node.image = image
        mesh = bpy.data.meshes.new(f"asset_mesh_{index}")
        mesh.from_pydata([(0, 0, 0), (0.2, 0, 0), (0.2, 0.2, 0), (0, 0.2, 0)], [], [(0, 1, 2, 3)])
        mesh.materials.append(material)
        obj = bpy.data.objects.new(f"asset_{index:03d}", mesh)
        obj.location = (index % 10 * 0.3 - 1.5, 2.0, index // 10 * 0.3 - 1.0)
        bpy.data.libraries.write(str(folder / "lib" / f"asset_{index:03d}.blend"), {obj}, fake_user=True)
        bpy.data.objects.remove(obj)
        bpy.data.meshes.remove(mesh)
        bpy.data.materials.remove(material)
        bpy.data.images.remove(image)


def st_staging_job():
    """The larger project: the library made, linked into the scene, saved as a shot of its own."""
    started = time.monotonic()
    folder = WORK / "library_project"
    S["staging_back_to"] = bpy.data.filepath
    make_asset_library(folder)
    for index in range(STAGING_ASSETS):
        path = folder / "lib" / f"asset_{index:03d}.blend"
        with blend_data().libraries.load(str(path), link=True, relative=True) as (_src, dst):
            dst.objects = [f"asset_{index:03d}"]
        for obj in dst.objects:
            context().scene.collection.objects.link(obj)
    with context().temp_override(window=win()):
        bpy.ops.wm.save_as_mainfile(filepath=str(folder / "library_shot.blend"))
    log(f"library project: {STAGING_ASSETS} linked assets made in {time.monotonic() - started:.1f} s")
    start_job("c5.2xlarge", 2)
    S["staging_t0"] = time.monotonic()
    S["staging_seen"] = {}
    return 0.05


def st_staging_watch():
    """Shoot Packing and Uploading as they come (scrolled in one tick, shot the next); then
    cancel: the machine's part is shot with the first job."""
    v, seen = view(), S["staging_seen"]
    now = time.monotonic() - S["staging_t0"]
    if v.state not in seen:
        seen[v.state] = now
        log(f"staging: {v.state} at {now:.1f} s ({v.progress * 100:.0f}%)")
    if S.get("pending"):
        if S.pop("rescroll", False):  # at Done the panel has grown since the first scroll
            scroll(props_area())
            return ("again", 0.3)
        shot(S.pop("pending"), props_area())
        return ("again", 0.1)
    label = {"packing": "job_packing", "uploading": "job_uploading"}.get(v.state)
    if label and label not in S["seen"]:
        S["seen"].add(label)
        scroll(props_area())
        S["pending"], S["rescroll"] = label, True
        return ("again", 0.3)
    if v.state in {"packing", "uploading"} and time.monotonic() < S["deadline"]:
        return ("again", 0.2)
    log("staging times (s from Render):", json.dumps({k: round(t, 1) for k, t in seen.items()}))
    if v.state not in FINAL:
        log("cancel", in_props(ops().cloud_render.cancel))
    back_to_the_shot()
    return 2.0


def back_to_the_shot():
    """The library linked out again and the first shot saved back: later parts render it."""
    for library in list(bpy.data.libraries):
        bpy.data.libraries.remove(library)
    with context().temp_override(window=win()):
        bpy.ops.wm.save_as_mainfile(filepath=S.pop("staging_back_to"))


BATCH_MACHINES, BATCH_FRAMES = 3, 12


def st_batch_job():
    """Machines = 3: the job goes to AWS Batch (moto's Batch runs each child as a machine here)."""
    context().scene.cloud_render.machines = BATCH_MACHINES
    start_job("c5.2xlarge", BATCH_FRAMES)
    S["deadline"] = time.monotonic() + 420
    return 1.0


def st_batch_watch():
    """Shoot the Current Job panel once every machine has its row and frames are coming in."""
    v = view()
    rows = [line for line in v.machines_text.splitlines() if line.strip()]
    if S.get("pending"):
        shot(S.pop("pending"), props_area())
        S["batch_shot"] = True
    if (
        not S.get("batch_shot")
        and len(rows) >= BATCH_MACHINES
        and v.frames_done >= 2
        and v.state not in FINAL
    ):
        log("batch rows:", " | ".join(rows))
        scroll(props_area())
        S["pending"] = "job_batch_machines"
        return ("again", 0.7)
    if v.state not in FINAL and time.monotonic() < S["deadline"]:
        return ("again", 0.5)
    log("batch job:", v.state, "|", v.message, "| rows:", " | ".join(rows))
    if v.state != "done":
        for line in mod().addon.job_view.log_lines(v.job_id)[-60:]:
            log("  batch log:", line)
        S["result"].setdefault("errors", []).append(f"the many-machine job ended {v.state}: {v.message}")
    if v.state not in FINAL:
        log("cancel", in_props(ops().cloud_render.cancel))
    context().scene.cloud_render.machines = 1
    return 1.0


# A still split by samples: frame 1 at 48 samples (three parts of 16), denoised, on 3 machines,
# pressed as Render > Render This Frame in Cloud (`this_frame`), at a size worth looking at.
STILL_MACHINES, STILL_SAMPLES, STILL_SIZE = 3, 48, (480, 270)


def st_still_job():
    """Machines = 3 and the current frame alone: the confirmation says how it is split."""
    scene = context().scene
    settings = scene.cloud_render
    S["still_before"] = view().job_id  # the last job's, until the confirmation is accepted
    S["still_was"] = (
        scene.cycles.samples, scene.cycles.use_denoising, scene.render.resolution_x,
        scene.render.resolution_y, scene.frame_current,
    )  # fmt: skip
    settings.machines, settings.instance_type = STILL_MACHINES, "c5.2xlarge"
    settings.quote_first, settings.max_cost, settings.samples = False, 5.0, 0
    scene.cycles.samples, scene.cycles.use_denoising = STILL_SAMPLES, True
    scene.render.resolution_x, scene.render.resolution_y = STILL_SIZE
    scene.frame_set(1)
    with context().temp_override(window=win()):
        bpy.ops.wm.save_mainfile()
    area = props_area()
    x, y = area.x + area.width // 2, win().height - area.y - area.height // 2
    subprocess.run(["xdotool", "mousemove", str(x), str(y)], check=False)
    log(
        "render this frame INVOKE_DEFAULT",
        in_props(ops().cloud_render.render, "INVOKE_DEFAULT", this_frame=True),
    )
    return 2.0


def st_still_confirm():
    shot("still_confirmation")
    subprocess.Popen(["xdotool", "key", "Return"])  # accept, as the artist presses Render
    return 3.0


def st_still_started():
    job = view().job_id
    if not job or job == S.pop("still_before", ""):
        log("Return did not reach the dialog: confirming through EXEC_DEFAULT")
        log("render", in_props(ops().cloud_render.render, "EXEC_DEFAULT", this_frame=True))
        job = view().job_id
    S["still_job"], S["still_seen"] = job, set()
    subprocess.run(["xdotool", "mousemove", "300", "300"], check=False)
    log("still job", job)
    S["deadline"] = time.monotonic() + 480
    return 0.5


def st_still_watch():
    """The Current Job panel while the parts render (two or more part rows), while one machine
    merges, and at Done: each scrolled into view in one tick, shot in the next."""
    v, seen = view(), S["still_seen"]
    rows = [line for line in v.machines_text.splitlines() if line.strip()]
    if S.get("pending"):
        if S.pop("rescroll", False):  # at Done the panel has grown since the first scroll
            scroll(props_area())
            return ("again", 0.3)
        shot(S.pop("pending"), props_area())
        return ("again", 0.3)
    label = ""
    if v.state in FINAL:
        label = "still_done"
    elif sum(", part " in row for row in rows) >= 2:
        label = "still_rendering_parts"
    elif any("merging" in row for row in rows):
        label = "still_merging"
    if label and label not in seen:
        seen.add(label)
        log("still:", v.state, "|", v.message, "| rows:", " | ".join(rows))
        scroll(props_area())
        # While it renders, one scroll keeps the state and the rows in view (the log below
        # grows); at Done, a second one shows the result's buttons under the longer log.
        S["pending"], S["rescroll"] = label, label == "still_done"
        return ("again", 0.5)
    if v.state not in FINAL and time.monotonic() < S["deadline"]:
        return ("again", 0.3)
    log("still job:", v.state, "|", v.message, "| shots:", sorted(seen))
    S["result"]["still"] = {"state": v.state, "message": v.message, "shots": sorted(seen)}
    if v.state != "done":
        for line in mod().addon.job_view.log_lines(v.job_id)[-60:]:
            log("  still log:", line)
        S["result"].setdefault("errors", []).append(f"the still ended {v.state}: {v.message}")
        if v.state not in FINAL:
            log("cancel", in_props(ops().cloud_render.cancel))
    return 1.0


def st_still_show():
    if view().state == "done":
        log("show_frames", in_props(ops().cloud_render.show_frames, job_id=S["still_job"]))
    return 3.0


def st_still_image_shot():
    if view().state == "done":
        image = bpy.data.images.get(mod().addon.job_view.image_name(S["still_job"]))
        size: list[int] = list(image.size) if image else []
        S["result"]["still"]["image"] = size
        if size != list(STILL_SIZE):
            S["result"].setdefault("errors", []).append(f"the still in the Image Editor is {size}")
        shot("still_in_image_editor")
    return 1.0


def st_still_restore():
    """The frames job's settings back, for the parts that follow."""
    scene = context().scene
    samples, denoise, width, height, frame = S.pop("still_was")
    scene.cycles.samples, scene.cycles.use_denoising = samples, denoise
    scene.render.resolution_x, scene.render.resolution_y = width, height
    scene.frame_set(frame)
    scene.cloud_render.machines = 1
    with context().temp_override(window=win()):
        bpy.ops.wm.save_mainfile()
    return 0.5


def st_render_invoke():
    area = props_area()
    subprocess.run(
        [
            "xdotool",
            "mousemove",
            str(area.x + area.width // 2),
            str(win().height - area.y - area.height // 2),
        ],
        check=False,
    )
    log("render INVOKE_DEFAULT", in_props(ops().cloud_render.render, "INVOKE_DEFAULT"))
    return 2.0


def st_render_confirm():
    shot("confirmation")
    subprocess.Popen(["xdotool", "key", "Return"])  # accept, as the artist presses Render
    return 3.0


def st_render_started():
    S["job"] = view().job_id
    S["result"]["confirmed_by_return"] = bool(S["job"])
    if not S["job"]:
        log("Return did not reach the dialog: confirming through EXEC_DEFAULT")
        log("render", in_props(ops().cloud_render.render, "EXEC_DEFAULT"))
        S["job"] = view().job_id
    subprocess.run(["xdotool", "mousemove", "300", "300"], check=False)
    log("job", S["job"])
    S["deadline"] = time.monotonic() + 600
    return 0.5


def st_watch():
    v = view()
    if S.get("pending"):  # the state seen last tick, scrolled into view and drawn since
        shot("job_" + S.pop("pending").lower().replace(" ", "_").replace("+", "_"), props_area())
    # "+frame": a frame is back and the machine says which one it renders now
    key = v.state + ("+frame" if v.state == "rendering" and v.frames_done and v.current_frame else "")
    if key not in S["seen"] and v.state:
        S["seen"].add(key)
        log("STATE", v.state, "|", v.message, "|", v.action, "| frame", v.current_frame, v.frames_done)
        scroll(props_area())
        S["pending"] = key
        return ("again", 0.7)
    if v.state in FINAL or time.monotonic() > S["deadline"]:
        return 1.0
    return ("again", 0.5)


def st_qr_press():
    """Issue 24 item 2: the job's page link as a QR code, pressed in the real panel; run.py
    reads the screenshot with a QR reader of its own, as a phone's camera would."""
    link = mod().addon.job_view.page_link(S["job"])
    S["result"]["page_url"] = link[0] if link else ""
    log("show_job_page_qr", in_props(ops().cloud_render.show_job_page_qr, job_id=S["job"]))
    redraw_all()
    return 1.0


def st_qr_shot():
    if S.get("qr_scrolled", 0) < 2:  # twice, once the code is drawn: the panel grows at its foot
        S["qr_scrolled"] = S.get("qr_scrolled", 0) + 1
        scroll(props_area())
        redraw_all()
        return ("again", 1.0)
    shot("job_page_qr", props_area())
    log("hide the code", in_props(ops().cloud_render.show_job_page_qr, job_id=S["job"]))
    return 1.0


def st_done_wide():
    scroll(props_area())
    S["wide_label"] = "job_done_wide"
    return wide_open() if MODE == "shots" else 1.0


def st_show_frames():
    log("show_frames", in_props(ops().cloud_render.show_frames, job_id=S["job"]))
    return 3.0


def st_frames_shot():
    job_view = mod().addon.job_view
    name = job_view.image_name(S["job"])
    shown = [
        (area.spaces.active.image.name, area.spaces.active.image.source)
        for window in wm().windows
        for area in window.screen.areas
        if area.type == "IMAGE_EDITOR" and area.spaces.active.image
    ]
    image = bpy.data.images.get(name)
    v = view()
    S["result"].update(
        job=S["job"],
        state=v.state,
        message=v.message,
        frames_done=v.frames_done,
        frames_total=v.frames_total,
        image_editors=shown,
        image_name=name,
        image_frames=int(image.get("cloud_render_frames", 0)) if image else 0,
        windows=len(wm().windows),
    )
    shot("frames_in_image_editor")
    return 1.0


def st_open_log():
    log("open_log", in_props(ops().cloud_render.open_log, job_id=S["job"]))
    return 3.0


def st_log_shot():
    texts = [
        (area.spaces.active.text.name if area.spaces.active.text else "")
        for window in wm().windows
        for area in window.screen.areas
        if area.type == "TEXT_EDITOR"
    ]
    S["result"]["text_editors"] = texts
    shot("full_log")
    return 1.0


def st_close_windows():
    """Close the frames and log windows (they cover the main one: no window manager)."""
    for window in list(wm().windows)[1:]:
        with context().temp_override(window=window):
            bpy.ops.wm.window_close()
    focus_main()
    return 1.0


def start_job(instance_type, frames, quote_first=False, max_cost=5.0, samples=0):
    """Another job, as the artist would set it up and press Render in Cloud (then Render)."""
    scene = context().scene
    settings = scene.cloud_render
    settings.instance_type, settings.quote_first, settings.max_cost = instance_type, quote_first, max_cost
    settings.samples = samples
    scene.frame_end = frames
    with context().temp_override(window=win()):
        bpy.ops.wm.save_mainfile()
    log("render", instance_type, frames, in_props(ops().cloud_render.render, "EXEC_DEFAULT"), view().job_id)
    S["deadline"] = time.monotonic() + 300


def wait_for(states, label):
    """A stage: wait until the current job is in one of `states`, then shoot the panel."""
    return wait_until(lambda: view().state in states, label)


def wait_until(ready, label):
    """A stage: wait until `ready()` (or the deadline), then shoot the panel scrolled down."""

    def stage():
        if not ready() and time.monotonic() < S["deadline"]:
            return ("again", 0.5)
        if S.get("scrolled", 0) < 2:  # twice: the Current Job panel grows after the first
            S["scrolled"] = S.get("scrolled", 0) + 1
            if S["scrolled"] == 1:
                log("STATE", view().state, "|", view().message, "|", view().action)
            scroll(props_area())
            return ("again", 1.0)
        S.pop("scrolled")
        shot(label, props_area())
        return 0.5

    stage.__name__ = f"wait_for_{label}"
    return stage


def st_settle():
    """Until the last job's thread has ended (a cancel takes a moment): Render in Cloud refuses
    while a job runs, and the next part would shoot the last job's panel."""
    manager = mod().addon.pump.manager()
    job_id = view().job_id
    if job_id and manager.is_running(job_id) and time.monotonic() < S.get("settle_until", 0.0):
        return ("again", 0.5)
    if job_id and manager.is_running(job_id):
        log("job", job_id, "still running after the wait; going on")
    S.pop("settle_until", None)
    return 0.5


def settle():
    """A stage that waits for the last job to end (up to 120 s)."""

    def stage():
        S.setdefault("settle_until", time.monotonic() + 120)
        return st_settle()

    stage.__name__ = "settle"
    return stage


def st_quote_job():
    """Quote First on a job that cannot stay under its cap: it stops after the scout frames
    and asks (see QUOTE_* for why these figures)."""
    start_job("c5.2xlarge", QUOTE_FRAMES, quote_first=True, max_cost=QUOTE_MAX_COST, samples=QUOTE_SAMPLES)
    S["deadline"] = time.monotonic() + 400
    return 1.0


def log_spec():
    """What the machine was told: the scout frames in the job's spec, as stored in the bucket."""
    manager = mod().addon.pump.manager()
    record = manager.store.load(view().job_id)
    key = importlib.import_module(f"{MOD}.cloud.machine.contract").spec_key(record.job_id)
    raw = manager.steps.get_bytes(manager.settings_for(), record.bucket, key, 1 << 22)
    spec = json.loads(raw) if raw else {}
    log("spec scout_frames", spec.get("scout_frames"), "go_url set", bool(spec.get("go_url")),
        "record quote_first", record.quote_first, "quote", record.quote)  # fmt: skip


def st_quote_answer():
    log_spec()
    for line in mod().addon.job_view.log_lines(view().job_id)[-12:]:
        log("  job log:", line)
    if view().state == "quoted":
        log("answer Stop Here", in_props(ops().cloud_render.answer_quote, go=False))
    S["deadline"] = time.monotonic() + 120
    return 1.0


def st_cancel_job():
    start_job("c5.2xlarge", 12)
    S["deadline"] = time.monotonic() + 120
    return 0.3


def st_cancel_press():
    """Once a frame is back, so the panel says which frames the cancel kept, and where."""
    if view().frames_done < 1 and view().state not in FINAL and time.monotonic() < S["deadline"]:
        return ("again", 0.3)
    log("cancel", in_props(ops().cloud_render.cancel))
    S["deadline"] = time.monotonic() + 120
    return 1.0


def st_reopen_job():
    """Issue 26, item 1: a job started, then File > New and the file opened again."""
    start_job("c5.2xlarge", 60, samples=QUOTE_SAMPLES)  # long enough to be seen running
    S["reopen_job"] = view().job_id
    return 3.0


def st_reopen_new_file():
    with context().temp_override(window=win()):
        bpy.ops.wm.read_homefile()  # File > New (General): Blender's view of the job is emptied
    log("after File > New:", repr(bpy.data.filepath), "job in view:", repr(view().job_id))
    return 3.0


def st_reopen_open_recent():
    with context().temp_override(window=win()):
        bpy.ops.wm.open_mainfile(filepath=str(WORK / "project" / "shot.blend"))  # Open Recent
    log("reopened; job in view:", view().job_id, "started:", S.get("reopen_job"))
    S["result"]["reopened_shows_the_job"] = view().job_id == S.get("reopen_job")
    S["deadline"] = time.monotonic() + 120
    return 1.0


def st_reopen_output_tab():
    props_area().spaces.active.context = "OUTPUT"
    focus_main()
    redraw_all()
    return 1.0


def st_reopen_ask():
    """Render in Cloud again on the reopened file: the confirmation names the running job."""
    area = props_area()
    subprocess.run(
        [
            "xdotool",
            "mousemove",
            str(area.x + area.width // 2),
            str(win().height - area.y - area.height // 2),
        ],
        check=False,
    )
    log("second render INVOKE_DEFAULT", in_props(ops().cloud_render.render, "INVOKE_DEFAULT"))
    return 2.0


def st_reopen_ask_shot():
    shot("second_render_asks")
    subprocess.Popen(["xdotool", "key", "Escape"])  # the artist keeps the one job
    return 2.0


def st_reopen_cancel():
    S["result"]["no_second_job"] = view().job_id == S.get("reopen_job")
    log("cancel", in_props(ops().cloud_render.cancel, job_id=S.get("reopen_job", "")))
    return 1.0


def st_quota_job():
    start_job("p5.48xlarge", 6)  # 192 vCPUs against the emulated account's GPU quota of 0
    return 1.0


def st_quota_request():
    """Request Quota Increase, pressed under the failed job (its button there sets from_job)."""
    log("request_quota", in_props(ops().cloud_render.request_quota, from_job=True))
    S["deadline"] = time.monotonic() + 60
    return 1.0


def st_terminate_orphan():
    """Terminate the forgotten machine from the Jobs list: the outcome is said under the list."""
    machine = results().forgotten[0]
    log(
        "terminate",
        in_props(ops().cloud_render.terminate_orphan, launch_id=machine.launch_id, region=machine.region),
    )
    S["deadline"] = time.monotonic() + 60
    return 1.0


def st_find_orphans():
    log("find_orphans", in_props(ops().cloud_render.find_orphans))
    S["deadline"] = time.monotonic() + 60
    return 1.0


def st_open_jobs():
    """Wait for the forgotten machine, then a real click on the closed "Jobs" sub-panel's header
    (the last line of the editor, scrolled to the bottom)."""
    if not results().forgotten and time.monotonic() < S["deadline"]:
        return ("again", 0.5)
    log("orphans", results().forgotten)
    scroll(props_area())
    return 1.5


def st_click_jobs():
    """The click in a tick of its own, once the scrolled editor has been drawn."""
    area = props_area()
    focus_main()
    bottom = win().height - area.y
    subprocess.Popen(
        ["xdotool", "mousemove", str(area.x + 80), str(bottom - 14), "sleep", "0.4", "click", "1"]
    )
    return 2.0


def st_jobs_shot():
    scroll(props_area())
    subprocess.run(["xdotool", "mousemove", "300", "300"], check=False)
    S["jobs_shot"] = True
    return 1.0


def st_jobs_shot2():
    if S.pop("jobs_shot", False):
        shot("jobs_forgotten_machine", props_area())
    return 0.5


def st_render_menu():
    """Render > Render in Cloud, opened as a click on the top bar's Render menu opens it."""
    subprocess.run(["xdotool", "mousemove", "100", "14"], check=False)
    with context().temp_override(window=win()):
        ops().wm.call_menu(name="TOPBAR_MT_render")
    S["menu_open"] = True
    return 1.5


def st_render_menu_shot():
    if S.pop("menu_open", False):
        shot("render_menu", box=(0, 0, 720, 560))
        subprocess.Popen(["xdotool", "key", "Escape"])
    return 1.0


def st_quit():
    (WORK / "result.json").write_text(json.dumps(S["result"], indent=1))
    log("result", json.dumps(S["result"]))
    bpy.ops.wm.quit_blender()
    return None


# (part, stage): `run.py shots quote,settings` runs only those parts (GUI_ONLY) and shoots only
# theirs; the keys, Set Up and the scene ("prefs", "scene") always run, the job before Show
# Frames too where a later part needs a finished job.
def st_stale_found():
    """Check Scene with a GPU machine chosen (the scene renders on the CPU: a finding), and an
    Estimate, both for 12 frames at 32 samples on one machine (issue 26, item 3)."""
    ops().cloud_render.set_instance_type(instance_type="g4dn.xlarge")
    log("check_scene", in_props(ops().cloud_render.check_scene))
    log("estimate", in_props(ops().cloud_render.estimate))
    S["deadline"] = time.monotonic() + 300
    return 3.0


def st_stale_change():
    """Once the estimate is in: a CPU machine, 24 frames at 256 samples, 3 machines."""
    if results().estimating and time.monotonic() < S["deadline"]:
        return ("again", 2.0)
    log("estimate:", results().estimate_note or " | ".join(row.text for row in results().estimate))
    scene = context().scene
    ops().cloud_render.set_instance_type(instance_type=INSTANCE_TYPE)
    scene.frame_end, scene.cycles.samples = 24, 256
    scene.cloud_render.machines = 3
    scroll(props_area(), down=False)  # a page down from the top of the Output tab: the panel's
    scroll(props_area(), pages=1)  # top, whatever jobs below have made of its length
    return 2.0


def st_stale_shot():
    shot("panel_out_of_date", props_area())
    log("confirmation:", mod().addon.submit.confirmation_text(context()))
    scene = context().scene
    scene.frame_end, scene.cycles.samples, scene.cloud_render.machines = 12, 32, 1
    return 0.5


def st_delete_job():
    """Harness step, not an artist's: a finished job of this file with three files in the
    bucket, as a job leaves them, and the Jobs list read again."""
    from dataclasses import replace

    module = mod()
    manager = module.addon.pump.manager()
    settings = manager.settings_for()
    bucket = manager.steps.ensure_bucket(settings, 14)
    records = module.cloud.job.records
    job_id = records.new_job_id()
    s3 = module.cloud.aws.session.client(settings, "s3")
    for key, size in (
        ("out/frames/0001.png", 1_400_000),
        ("out/frames/0002.png", 1_400_000),
        ("log.txt", 900),
    ):
        s3.put_object(Bucket=bucket, Key=f"jobs/{job_id}/{key}", Body=b"x" * size)
    request = records.JobRequest(
        job_id=job_id,
        blend_copy=Path(bpy.data.filepath),
        blend_name=bpy.data.filepath,
        scene_name=context().scene.name,
        frames=list(range(1, 25)),
        output_dir=WORK / "project" / "cloud_renders" / job_id,
        region=settings.region,
        instance_type=INSTANCE_TYPE,
        spot=False,
        max_cost=5.0,
        max_hours=2.0,
        price_per_hour=0.34,
        blender_version=bpy.app.version_string.split()[0],
    )
    record = replace(
        records.JobRecord.from_request(request), bucket=bucket, stage="done", frames_done=list(range(1, 25))
    )
    manager.store.save(record)
    log("delete job", job_id)
    module.addon.jobs_list.refresh()
    S["delete_job"] = job_id
    scroll(props_area())
    return 1.5


def st_delete_ask():
    """Delete Cloud Data pressed on the selected job: it counts, then asks under the list."""
    S["deadline"] = time.monotonic() + 60
    log("delete", in_props(ops().cloud_render.delete_cloud_data, job_id=S["delete_job"]))
    return 1.0


def st_delete_asked_shot():
    if results().delete_ask is None and time.monotonic() < S["deadline"]:
        return ("again", 0.5)
    log("asked:", results().delete_ask.text if results().delete_ask else view().jobs_status)
    scroll(props_area())
    subprocess.run(["xdotool", "mousemove", "300", "300"], check=False)
    S["delete_shot"] = "jobs_delete_asks"
    return 1.0


def st_delete_shot():
    shot(S.pop("delete_shot"), props_area())
    return 0.5


def st_delete_yes():
    log("delete yes", in_props(ops().cloud_render.delete_cloud_data, job_id=S["delete_job"], answer="DELETE"))
    S["deadline"] = time.monotonic() + 60
    return 1.0


def st_delete_done():
    if not view().jobs_status.startswith("Deleted") and time.monotonic() < S["deadline"]:
        return ("again", 0.5)
    log("deleted:", view().jobs_status, "| selected:", mod().addon.jobs_list.selected_job_id() or "none")
    scroll(props_area())
    S["delete_shot"] = "jobs_deleted"
    return 1.0


STAGES = [
    ("prefs", st_close_splash),
    ("panel0", st_panel_no_account),
    ("panel0", st_panel_no_account_scroll),
    ("panel0", st_panel_no_account_shot),
    ("prefs", st_prefs_open),
    ("prefs", st_prefs_expand),
    ("prefs", st_prefs_no_keys),
    ("prefs", st_prefs_connected),
    ("prefs", st_prefs_connected_shot),
    ("prefs", st_prefs_setup),
    ("prefs", st_prefs_setup_shot),
    ("prefs", st_prefs_forget_ask),
    ("prefs", st_prefs_forget_shot),
    ("prefs", st_prefs_forget_kept),
    ("prefs", st_prefs_quota_requested),
    ("prefs", st_prefs_batch_engine),
    ("prefs", st_prefs_detach_set_up),
    ("prefs", st_prefs_set_up_detached),
    ("prefs", st_prefs_close),
    ("scene", st_scene),
    ("panel", st_panel_ready),
    ("panel", st_panel_ready_shot),
    ("panel", st_settings_wide),
    ("panel", st_wide_context),
    ("panel", st_wide_scroll),
    ("panel", st_wide_shot),
    ("panel", st_check_scene),
    ("panel", st_check_scene_scroll),
    ("panel", st_check_scene_shot),
    ("panel", st_estimate),
    ("panel", st_estimate_shot),
    ("panel", st_wide_context),
    ("panel", st_wide_scroll),
    ("panel", st_wide_shot),
    ("job", st_render_invoke),
    ("job", st_render_confirm),
    ("job", st_render_started),
    ("job", st_watch),
    ("job", st_qr_press),
    ("job", st_qr_shot),
    ("job", st_done_wide),
    ("job", st_wide_context),
    ("job", st_wide_scroll),
    ("job", st_wide_shot),
    ("job", st_show_frames),
    ("job", st_frames_shot),
    ("job", st_open_log),
    ("job", st_log_shot),
    ("job", st_close_windows),
    ("job", settle()),
    ("staging", st_staging_job),
    ("staging", st_staging_watch),
    ("staging", settle()),
    ("quote", st_quote_job),
    ("quote", wait_for({"quoted", *FINAL}, "job_waiting_for_you")),
    ("quote", st_quote_answer),
    ("quote", wait_for(FINAL, "job_stopped_after_quote")),
    ("quote", settle()),
    ("batch", st_batch_job),
    ("batch", st_batch_watch),
    ("batch", settle()),
    ("still", st_still_job),
    ("still", st_still_confirm),
    ("still", st_still_started),
    ("still", st_still_watch),
    ("still", st_still_show),
    ("still", st_still_image_shot),
    ("still", st_close_windows),
    ("still", st_still_restore),
    ("still", settle()),
    ("cancel", st_cancel_job),
    ("cancel", st_cancel_press),
    ("cancel", wait_for(FINAL, "job_cancelled")),
    ("cancel", settle()),
    ("reopen", st_reopen_job),
    ("reopen", st_reopen_new_file),
    ("reopen", st_reopen_open_recent),
    ("reopen", st_reopen_output_tab),
    ("reopen", wait_until(lambda: view().frames_done >= 1 or view().state in FINAL, "job_survives_new_file")),
    ("reopen", st_reopen_ask),
    ("reopen", st_reopen_ask_shot),
    ("reopen", st_reopen_cancel),
    ("reopen", settle()),
    ("quota", st_quota_job),
    ("quota", wait_for(FINAL, "job_failed_quota")),
    ("quota", st_quota_request),
    ("quota", wait_until(lambda: view().action.startswith("Quota request"), "job_failed_quota_requested")),
    ("jobs", st_find_orphans),
    ("jobs", st_open_jobs),
    ("jobs", st_click_jobs),
    ("jobs", st_jobs_shot),
    ("jobs", st_jobs_shot2),
    ("jobs", st_terminate_orphan),
    ("jobs", wait_until(lambda: view().jobs_status.startswith("Terminated"), "jobs_machine_terminated")),
    ("stale", st_stale_found),
    ("stale", st_stale_change),
    ("stale", st_stale_shot),
    ("delete", st_delete_job),
    ("delete", st_click_jobs),
    ("delete", st_delete_ask),
    ("delete", st_delete_asked_shot),
    ("delete", st_delete_shot),
    ("delete", st_delete_yes),
    ("delete", st_delete_done),
    ("delete", st_delete_shot),
    ("menu", st_render_menu),
    ("menu", st_render_menu_shot),
    ("end", st_quit),
]
ALWAYS = {"prefs", "scene", "end"}
ONLY = set(filter(None, os.environ.get("GUI_ONLY", "").split(",")))
TEST_PARTS = {"panel0", "prefs", "scene", "panel", "job", "end"}  # the click-through


def runs(part: str) -> bool:
    if MODE != "shots":
        return part in TEST_PARTS
    return not ONLY or part in ONLY or part in ALWAYS


def shoots(part: str) -> bool:
    return MODE == "shots" and (not ONLY or part in ONLY)


S["stage"] = 0


def tick():
    part, stage = STAGES[S["stage"]]
    if not runs(part):
        S["stage"] += 1
        return 0.01
    S["part"] = part
    try:
        wait = stage()
    except Exception:
        log("EXCEPTION in", stage.__name__)
        traceback.print_exc()
        S["result"].setdefault("errors", []).append(stage.__name__)
        wait = 1.0
    if isinstance(wait, tuple):
        return wait[1]
    S["stage"] += 1
    return wait


bpy.app.timers.register(tick, first_interval=float(os.environ.get("FIRST_WAIT", "12")), persistent=True)
log("timer registered; mode", MODE)
