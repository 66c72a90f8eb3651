"""cloud/machine/still_parts.py: a still split by samples, merged exactly, denoised and composited once.

Real renders (the bpy wheels, 48x48, 32 samples, the default cube), each step run as the
supervisor runs it: `blender_launcher.py -b scene.blend --python still_parts.py -- '<json>'`,
its events read back through blender_logs. The reference is one machine's plain render of the
same scene (no subset settings), written by a small script here; the comparisons read the EXRs
with the module's own reader.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cloud.machine import blender_logs, still_parts
from cloud.machine.still_parts import ExrError, merge_parts, pass_name, read_exr, write_exr

ROOT = Path(__file__).resolve().parents[2]
MACHINE = ROOT / "cloud" / "machine"
PYTHONS = {
    "4.2": ROOT / ".venv-bpy42/bin/python",
    "5.0": ROOT / ".venv/bin/python",
    "5.3": ROOT / ".venv-bpy5x/bin/python",
}
TOTAL = 32

# Builds the test scene, or renders one machine's reference of it: run inside Blender.
SCENE_SCRIPT = """
import bpy, json, sys
args = json.loads(sys.argv[sys.argv.index("--") + 1])
scene = bpy.context.scene
if args["do"] == "build":
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.render.resolution_x = scene.render.resolution_y = args["size"]
    scene.render.resolution_percentage = 100
    scene.cycles.samples = args["samples"]
    scene.cycles.use_adaptive_sampling = True  # the part step must turn it off
    scene.cycles.use_denoising = True
    layer = scene.view_layers[0]
    layer.use_pass_z = True
    layer.use_pass_object_index = True
    settings = scene.render.image_settings
    if args["format"] == "OPEN_EXR":
        if hasattr(settings, "media_type"):
            settings.media_type = "IMAGE"
        settings.file_format = "OPEN_EXR"
        settings.color_depth = "32"
    else:
        settings.file_format = "PNG"
    if args["glare"]:
        if hasattr(scene, "compositing_node_group"):
            tree = bpy.data.node_groups.new("Compositing", "CompositorNodeTree")
            tree.interface.new_socket("Image", in_out="OUTPUT", socket_type="NodeSocketColor")
            out = tree.nodes.new("NodeGroupOutput")
            scene.compositing_node_group = tree
            layers = tree.nodes.new("CompositorNodeRLayers")
        else:
            scene.use_nodes = True
            tree = scene.node_tree
            out = next(n for n in tree.nodes if n.bl_idname == "CompositorNodeComposite")
            layers = next(n for n in tree.nodes if n.bl_idname == "CompositorNodeRLayers")
        glare = tree.nodes.new("CompositorNodeGlare")
        if "Type" in glare.inputs:
            glare.inputs["Type"].default_value = "Fog Glow"
            glare.inputs["Threshold"].default_value = 0.2
        else:
            glare.glare_type = "FOG_GLOW"
            glare.threshold = 0.2
        tree.links.new(layers.outputs["Image"], glare.inputs["Image"])
        tree.links.new(glare.outputs["Image"], out.inputs[0])
        if hasattr(scene.render, "compositor_device"):  # 5.3 defaults to the GPU compositor
            scene.render.compositor_device = "CPU"
            scene.render.compositor_precision = "FULL"
    bpy.ops.wm.save_as_mainfile(filepath=args["blend"])
else:  # one machine's render, the scene's own way but for a fixed sample count
    scene.cycles.use_adaptive_sampling = False
    if not hasattr(scene.cycles, "use_sample_subset"):
        scene.cycles.sampling_pattern = "TABULATED_SOBOL"  # 4.2: the pattern its split is exact with
    scene.cycles.use_denoising = args["denoise"]
    settings = scene.render.image_settings
    if args["layers"]:
        scene.render.use_compositing = False
        if hasattr(settings, "media_type"):
            settings.media_type = "MULTI_LAYER_IMAGE"
        settings.file_format = "OPEN_EXR_MULTILAYER"
        settings.color_depth = "32"
    bpy.ops.render.render(write_still=False)
    bpy.data.images["Render Result"].save_render(args["output"], scene=scene)
"""


def blender(
    version: str, blend: str | None, script: Path, args: dict[str, Any], answers: Sequence[str] = ()
) -> tuple[int, list[dict]]:
    """Run a script as the supervisor runs Blender, `answers` on its stdin (one a "next");
    (exit code, our events)."""
    argv = [str(PYTHONS[version]), str(MACHINE / "blender_launcher.py"), "-b"]
    argv += [blend] if blend else []
    argv += ["--python-exit-code", "3", "--python", str(script), "--", json.dumps(args)]
    stdin = "".join(f"{line}\n" for line in answers)
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=600, cwd=str(ROOT))
    events = [e for line in proc.stdout.splitlines() if (e := blender_logs.read_event(line.strip()))]
    if proc.returncode and not events:
        raise AssertionError(proc.stdout[-3000:] + proc.stderr[-3000:])
    return proc.returncode, events


def step(version: str, blend: str, args: dict[str, Any]) -> dict:
    code, events = blender(version, blend, MACHINE / "still_parts.py", args)
    assert code == 0, events
    return events[-1]


class Still:
    """One version's scene, its reference renders and the steps' results, made once per module."""

    def __init__(self, version: str, folder: Path, fmt: str = "OPEN_EXR", glare: bool = False) -> None:
        if not PYTHONS[version].exists():
            pytest.fail(f"{PYTHONS[version]} is missing: Blender {version} cannot be run here")
        self.version, self.folder = version, folder
        script = folder / "scene.py"
        script.write_text(SCENE_SCRIPT)
        self.blend = str(folder / "scene.blend")
        build = {
            "do": "build",
            "size": 48,
            "samples": TOTAL,
            "format": fmt,
            "glare": glare,
            "blend": self.blend,
        }
        blender(version, None, script, build)
        self.reference = str(folder / "single.exr")
        blender(
            version,
            self.blend,
            script,
            {"do": "ref", "denoise": False, "layers": True, "output": self.reference},
        )
        self.reference_final = str(folder / "single_final.exr")
        if fmt == "OPEN_EXR":
            blender(
                version,
                self.blend,
                script,
                {"do": "ref", "denoise": True, "layers": False, "output": self.reference_final},
            )

    def parts_step(self, lengths: list[int]) -> dict[str, Any]:
        """The "parts" step's arguments for parts of these lengths, in order."""
        parts, offset = {}, 0
        for index, length in enumerate(lengths):
            out = str(self.folder / f"part-{offset}-{length}.exr")
            parts[str(index)] = {"offset": offset, "length": length, "output": out}
            offset += length
        return {"step": "parts", "frame": 1, "total": TOTAL, "parts": parts}

    def parts(self, lengths: list[int]) -> list[dict]:
        """Every part rendered in one Blender, each asked for with "next" as a machine does."""
        answers = [str(i) for i in range(len(lengths))] + [""]
        code, events = blender(
            self.version, self.blend, MACHINE / "still_parts.py", self.parts_step(lengths), answers
        )
        assert code == 0, events
        assert [e["event"] for e in events if e["event"] == "next"] == ["next"] * len(answers)
        done = [e for e in events if e["event"] == "part_done"]
        assert [e["index"] for e in done] == list(range(len(lengths)))
        return done

    def merge_args(self, parts: list[dict], name: str) -> dict[str, Any]:
        return {
            "step": "merge",
            "parts": [[p["path"], p["samples"]] for p in parts],
            "output": str(self.folder / f"{name}_layers.exr"),
            "combined": str(self.folder / f"{name}.exr"),
        }

    def finish_args(self, name: str) -> dict[str, Any]:
        args = {"step": "finish", "merged": str(self.folder / f"{name}_layers.exr"), "frame": 1}
        return {**args, "output": str(self.folder / f"{name}_final")}

    def merge(self, parts: list[dict], name: str) -> dict:
        return step(self.version, self.blend, self.merge_args(parts, name))

    def finish(self, name: str) -> dict:
        return step(self.version, self.blend, self.finish_args(name))

    def all_in_one(self, lengths: list[int], name: str) -> list[dict]:
        """As the merging machine runs it: its parts, then the scene opened again as saved, each
        part added to the merge (in another order than rendered, as they land), the last one
        rendered only after the reopen (a part taken over from a lost machine) and the scene
        opened again once more, then the merge of what was added and the finish, all in one
        Blender; the events."""
        args = self.parts_step(lengths)
        last = len(lengths) - 1
        reopen = json.dumps({"reopen": True, "output": str(self.folder / f"{name}_final")})

        def add(index: int) -> str:
            part = args["parts"][str(index)]
            return json.dumps({"add": {"index": index, "path": part["output"], "samples": part["length"]}})

        merge = {**self.merge_args([], name), "gathered": True}
        del merge["parts"]
        answers = [str(i) for i in range(last)] + [reopen]
        answers += [add(i) for i in reversed(range(last))] + [str(last), add(last), reopen]
        answers += [json.dumps({"steps": [merge, self.finish_args(name)]})]
        code, events = blender(self.version, self.blend, MACHINE / "still_parts.py", args, answers)
        assert code == 0, events
        merged = next(e for e in events if e["event"] == "merged")
        assert merged["added"] == [*reversed(range(last)), last], merged  # in the order handed over
        assert merged["samples"] == sum(lengths)  # every sample, once
        return events


@pytest.fixture(scope="module")
def still50(tmp_path_factory) -> Still:
    return Still("5.0", tmp_path_factory.mktemp("still50"))


def combined_difference(a: str, b: str) -> float:
    """Max abs difference of the Combined channels (RGBA) of two multilayer EXRs."""
    left, right = read_exr(a), read_exr(b)
    names = [c for c in left.channels if pass_name(c) == "Combined"]
    assert len(names) == 4
    return max(float(np.abs(left.channels[c] - right.channels[c]).max()) for c in names)


def image_difference(a: str, b: str) -> float:
    left, right = read_exr(a), read_exr(b)
    assert set(left.channels) == set(right.channels) == set("RGBA")
    return max(float(np.abs(left.channels[c] - right.channels[c]).max()) for c in "RGBA")


def test_every_pass_lands_in_the_part_exr_on_5_0(still50):
    """5.x writes a multilayer EXR as one EXR part per pass: every pass is there, and a reader of
    the first part only (OpenImageIO's first sub-image, Cycles' merge) sees Combined alone."""
    (part,) = still50.parts([TOTAL])
    assert part["event"] == "part_done" and part["method"] == "subset" and part["samples"] == TOTAL
    passes = {pass_name(c) for c in read_exr(part["path"]).channels}
    assert {"Combined", "Depth", "Object Index", "Denoising Normal", "Denoising Albedo"} <= passes
    data = Path(part["path"]).read_bytes()
    flags = int.from_bytes(data[4:8], "little")
    assert flags & 0x1000  # multi-part
    # Stored uncompressed (still_parts.set_multilayer_exr: unzipping was most of the merge).
    assert still_parts._attributes(data, 8)[0]["compression"][1] == b"\0"
    print(f"5.0.1 part passes: {sorted(passes)}")


def test_two_equal_parts_merge_to_the_single_render(still50):
    merged = still50.merge(still50.parts([16, 16]), "equal")
    assert merged["event"] == "merged"
    assert {"Combined", "Denoising Albedo", "Denoising Normal"} <= set(merged["averaged"])
    assert set(merged["taken_from_longest"]) == {"Depth", "Object Index"}
    difference = combined_difference(str(still50.folder / "equal_layers.exr"), still50.reference)
    print(f"5.0.1 2 x 16 merged vs single: {difference:.2e}, merge {merged['seconds']} s")
    assert difference < 1e-4
    combined = read_exr(str(still50.folder / "equal.exr"))
    assert sorted(combined.channels) == ["A", "B", "G", "R"] and combined.width == 48
    assert all(plane.dtype == np.float32 for plane in combined.channels.values())


def test_three_unequal_parts_are_weighted_by_their_samples(still50):
    parts = still50.parts([5, 11, 16])
    still50.merge(parts, "unequal")
    difference = combined_difference(str(still50.folder / "unequal_layers.exr"), still50.reference)
    print(f"5.0.1 5+11+16 merged vs single: {difference:.2e}")
    assert difference < 1e-4
    # weighted equally, the same parts are visibly off: the weights are what makes it exact
    merge_parts([(p["path"], 1) for p in parts], str(still50.folder / "naive.exr"))
    assert combined_difference(str(still50.folder / "naive.exr"), still50.reference) > 1e-3
    # the merged header says the whole count, as a one-machine render's does
    assert read_exr(str(still50.folder / "unequal_layers.exr")).strings["cycles.ViewLayer.samples"] == "32"


def test_denoised_merge_equals_the_denoised_single_render(still50):
    """One Blender as the merging machine runs it: the parts turned denoising off and wrote EXR
    layers, and the scene opened again denoises and writes the scene's format."""
    events = still50.all_in_one([16, 16], "denoise")
    kinds = [e["event"] for e in events if e["event"] != "environment"]
    assert kinds[-7:] == ["part_done", "next", "next", "output", "next", "merged", "finished"], kinds
    finished = events[-1]
    assert events[-4]["path"] == finished["path"]  # said before the merge, where it was written
    assert finished["event"] == "finished" and finished["path"].endswith("denoise_final.exr")
    assert finished["denoised"] is True and finished["composited"] is False
    difference = image_difference(finished["path"], still50.reference_final)
    print(f"5.0.1 denoised merge vs denoised single: {difference:.2e}, finish {finished['seconds']} s")
    assert difference < 1e-4


@pytest.mark.parametrize("version", ["5.0", "5.3", "4.2"])
def test_glare_runs_once_after_the_merge(version, tmp_path):
    still = Still(version, tmp_path, glare=True)
    finished = still.all_in_one([10, 22], "glare")[-1]
    assert finished["denoised"] is True and finished["composited"] is True
    difference = image_difference(finished["path"], still.reference_final)
    print(f"{version} glare after merge vs single: {difference:.2e}")
    assert difference < 1e-4


def test_blender_42_splits_exactly_with_the_classic_pattern(tmp_path):
    still = Still("4.2", tmp_path)
    parts = still.parts([8, 8, 16])
    assert {p["method"] for p in parts} == {"classic"}
    passes = {pass_name(c) for c in read_exr(parts[0]["path"]).channels}
    assert {"Combined", "Depth", "IndexOB", "Denoising Normal", "Denoising Albedo"} <= passes
    merged = still.merge(parts, "classic")
    assert set(merged["taken_from_longest"]) == {"Depth", "IndexOB"}
    difference = combined_difference(str(tmp_path / "classic_layers.exr"), still.reference)
    print(f"4.2.23 classic 8+8+16 merged vs single: {difference:.2e}")
    assert difference < 1e-4


@pytest.mark.parametrize("version", ["5.0", "4.2"])
def test_the_scene_format_is_kept_and_no_denoise_when_the_scene_has_none(version, tmp_path):
    still = Still(version, tmp_path, fmt="PNG")
    script = tmp_path / "off.py"
    script.write_text(
        "import bpy\nbpy.context.scene.cycles.use_denoising = False\nbpy.ops.wm.save_mainfile()\n"
    )
    blender(version, still.blend, script, {})
    still.merge(still.parts([32]), "plain")
    finished = still.finish("plain")
    assert (
        finished["path"].endswith("plain_final.png") and Path(finished["path"]).read_bytes()[:4] == b"\x89PNG"
    )
    assert finished["denoised"] is False and finished["composited"] is False


def test_a_bad_step_fails_in_plain_words(still50):
    code, events = blender("5.0", still50.blend, MACHINE / "still_parts.py", {"step": "parts", "frame": 1})
    assert code == 3 and events[-1]["event"] == "error" and "could not run" in events[-1]["message"]
    parts = {"0": {"offset": 6, "length": 4, "output": "/tmp/x.exr"}}
    args = {"step": "parts", "frame": 1, "total": 8, "parts": parts}
    code, events = blender("5.0", still50.blend, MACHINE / "still_parts.py", args, ["0"])
    assert code == 3 and "not inside 0..8" in events[-1]["message"]


def test_exr_round_trip_and_parts_that_do_not_match(tmp_path):
    rng = np.random.default_rng(1)
    planes = {f"L.Combined.{c}": rng.random((20, 7), dtype=np.float32) for c in "RGBA"}
    planes["L.Depth.Z"] = np.full((20, 7), 3.5, dtype=np.float32)
    path = str(tmp_path / "a.exr")
    write_exr(path, 7, 20, planes, {"cycles.L.samples": "4"})
    back = read_exr(path)
    assert back.strings == {"cycles.L.samples": "4"} and (back.width, back.height) == (7, 20)
    assert all(np.array_equal(back.channels[c], planes[c]) for c in planes)
    other = str(tmp_path / "b.exr")
    write_exr(other, 7, 20, {c: p for c, p in planes.items() if "Depth" not in c}, {})
    with pytest.raises(ExrError, match="same image"):
        merge_parts([(path, 2), (other, 2)], str(tmp_path / "m.exr"))
    (tmp_path / "c.exr").write_bytes(b"not an exr")
    with pytest.raises(ExrError, match="not an OpenEXR"):
        read_exr(str(tmp_path / "c.exr"))


def random_parts(folder: Path, lengths: list[int], seed: int, width: int, height: int) -> list[str]:
    """Parts of random Combined pixels, each with a Depth pass holding its own index (so which
    part the merge kept it from shows), stored uncompressed as Cycles stores a part."""
    rng = np.random.default_rng(seed)
    paths = []
    for k in range(len(lengths)):
        planes = {f"L.Combined.{c}": rng.random((height, width), dtype=np.float32) for c in "RGBA"}
        planes["L.Depth.Z"] = np.full((height, width), float(k), dtype=np.float32)
        paths.append(str(folder / f"p{k}.exr"))
        write_exr(paths[-1], width, height, planes, {"cycles.L.samples": str(sum(lengths))}, compress=False)
    return paths


def test_parts_added_as_they_land_merge_as_all_at_once(tmp_path):
    """The merging machine adds each part as it lands, in whatever order: the same merge as all
    parts at once, weighted by samples over the total; the longest part (of equal ones the
    first in the frame's order, whichever landed first) gives the passes not averaged; nothing is written before every sample is in,
    and a part that would pass the total is refused."""
    lengths = [5, 11, 16, 16]
    paths = random_parts(tmp_path, lengths, seed=3, width=4, height=6)
    merge_parts(list(zip(paths, lengths, strict=True)), str(tmp_path / "all.exr"))
    gathered = still_parts.Merge(sum(lengths))
    for k in (3, 0, 2):
        gathered.add(paths[k], lengths[k], k)
    with pytest.raises(ValueError, match="37 samples of 48"):
        gathered.write(str(tmp_path / "early.exr"))
    with pytest.raises(ValueError, match="does not fit"):
        gathered.add(paths[2], 17, 2)
    gathered.add(paths[1], lengths[1], 1)
    averaged, kept = gathered.write(str(tmp_path / "gathered.exr"), str(tmp_path / "combined.exr"))
    assert averaged == ["Combined"] and kept == ["Depth"]
    every, one = read_exr(str(tmp_path / "all.exr")), read_exr(str(tmp_path / "gathered.exr"))
    worst = max(float(np.abs(every.channels[c] - one.channels[c]).max()) for c in every.channels)
    assert worst < 1e-6, worst
    expected = sum(
        read_exr(p).channels["L.Combined.R"].astype(np.float64) * n
        for p, n in zip(paths, lengths, strict=True)
    )
    assert np.allclose(one.channels["L.Combined.R"], expected / 48, atol=1e-6)
    assert np.all(one.channels["L.Depth.Z"] == 2.0)  # part 2, not part 3 that was added first
    assert one.strings["cycles.L.samples"] == "48"


def test_the_background_merge_adds_in_the_order_handed_over_and_says_what_went_wrong(tmp_path):
    """The merging machine's threads (one reads the next part while the other adds) sum the
    parts in the order they were handed over, to the same bytes as adding them one by one; a
    part that cannot be read is raised on the loop's thread (at the next part or the write),
    and no part is taken after the merge was finished."""
    lengths = [7, 9, 16]
    paths = random_parts(tmp_path, lengths, seed=5, width=3, height=5)
    one_by_one = still_parts.Merge(32)
    for k in (2, 0, 1):
        one_by_one.add(paths[k], lengths[k], k)
    background = still_parts.BackgroundMerge(32)
    for k in (2, 0, 1):
        background.add(paths[k], lengths[k], k)
    merge = background.finished()
    assert background.order == [2, 0, 1] and merge.added == 32 and background.seconds > 0
    assert set(merge.sums) == set(one_by_one.sums)
    assert all(np.array_equal(merge.sums[c], one_by_one.sums[c]) for c in merge.sums)
    assert np.all(merge.kept["L.Depth.Z"] == 2.0)
    with pytest.raises(ValueError, match="no part after"):
        background.add(paths[0], 1, 0)

    broken = tmp_path / "broken.exr"
    broken.write_bytes(b"not an exr at all")
    failing = still_parts.BackgroundMerge(32)
    failing.add(str(broken), 7, 0)
    failing.add(paths[1], lengths[1], 1)
    with pytest.raises(ExrError, match=r"broken\.exr is not an OpenEXR file"):
        failing.finished()
    assert failing.order == []  # nothing after the bad part was added either


# A thread counts numpy steps before, during and after a Cycles render in the main thread.
THREADS_DURING_RENDER = """
import threading, time, bpy, numpy as np
scene = bpy.context.scene
scene.render.engine = "CYCLES"
scene.cycles.device = "CPU"
scene.cycles.samples = 64
scene.render.resolution_x = scene.render.resolution_y = 96
steps, stop = [0], threading.Event()
plane = np.ones((540, 960))
def count():
    while not stop.is_set():
        np.multiply(plane, 0.5, out=plane)
        steps[0] += 1
thread = threading.Thread(target=count)
thread.start()
while steps[0] < 3:
    time.sleep(0.01)
before = steps[0]
bpy.ops.render.render(write_still=False)
during = steps[0] - before
stop.set()
thread.join()
print("CLOUDRENDER " + '{"event": "counted", "during": %d}' % during, flush=True)
"""


@pytest.mark.parametrize("version", ["5.0", "5.3", "4.2"])
def test_a_render_lets_the_merge_threads_run(version, tmp_path):
    """What BackgroundMerge stands on: Blender lets go of Python's lock while it renders, so the
    merging machine's threads add parts while its own part renders (were the lock held, the
    thread would make no step at all during the render)."""
    script = tmp_path / "threads.py"
    script.write_text(THREADS_DURING_RENDER)
    code, events = blender(version, None, script, {})
    assert code == 0, events
    (counted,) = [e for e in events if e["event"] == "counted"]
    assert counted["during"] > 0, counted


def test_an_uncompressed_part_reads_in_one_piece_and_its_lines_must_cover_it_once(tmp_path):
    """Parts are stored uncompressed and read in one piece; a part whose lines repeat one row
    and leave another out (a damaged or hostile file) is refused, not merged with a hole."""
    rng = np.random.default_rng(2)
    planes = {f"L.Combined.{c}": rng.random((9, 5), dtype=np.float32) for c in "RGBA"}
    path = tmp_path / "n.exr"
    write_exr(str(path), 5, 9, planes, {}, compress=False)
    back = read_exr(str(path))
    assert all(np.array_equal(back.channels[c], planes[c]) for c in planes)
    data = bytearray(path.read_bytes())
    table = len(data) - 9 * (8 + 4 * 5 * 4) - 8 * 9  # the offset table, then 9 chunks of one line
    first = int.from_bytes(data[table : table + 8], "little")
    data[first : first + 4] = (1).to_bytes(4, "little")  # line 0 claims to be line 1
    path.write_bytes(bytes(data))
    with pytest.raises(ExrError, match="cover its image once"):
        read_exr(str(path))


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q", "-s"]))
