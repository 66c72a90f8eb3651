"""cloud.packing against the shared corpus and against scenes made with bpy.

Every check that needs Blender runs it in a fresh process (tests/pack_check.py), from a working
directory that is neither the corpus nor the pack, so a path that only resolves from the
original folder shows up. Blender's view is the ground truth for what a file depends on.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from cloud.errors import Cancelled, CloudError, ErrorCode
from cloud.pack.packer import PackProgress, PackResult, pack
from tests.factories import SCENE_SCRIPT_START

CHECK = Path(__file__).resolve().parents[1] / "pack_check.py"
# Fluid domains from Blender 2.7x can abort Blender 5.0 when freed: each gets its own process.
RISKY = ("smoke_cache",)


def run_checks(blends: list[Path], workdir: Path, python: str = sys.executable) -> dict[str, dict]:
    """Blender's view of each .blend: safe files share one process, risky ones get their own."""
    safe = [b for b in blends if not b.name.startswith(RISKY)]
    groups = [safe] + [[b] for b in blends if b.name.startswith(RISKY)]
    report: dict[str, dict] = {}
    procs = []
    for i, group in enumerate(g for g in groups if g):
        out = workdir / f"check-{i}.json"
        cmd = [python, str(CHECK), str(out), *map(str, group)]
        procs.append(
            (
                out,
                group,
                subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE),
            )
        )
    for out, group, proc in procs:
        _, err = proc.communicate(timeout=120)
        data = json.loads(out.read_text()) if out.exists() else {}
        for blend in group:
            report[str(blend)] = data.get(
                str(blend), {"error": f"no report (rc {proc.returncode}): {err[-300:]!r}"}
            )
    return report


def deps(view: dict) -> list[dict]:
    return view.get("paths", []) + view.get("libraries", [])


def is_blender_temp(path: str) -> bool:
    """Blender 5.0 turns old smoke caches into a fluid cache under its own temp folder."""
    return "/blender_" in path and "cache_fluid" in path


@pytest.fixture(scope="module")
def corpus(testdata: Path, tmp_path_factory: pytest.TempPathFactory):
    """Every corpus .blend packed, with Blender's view of the originals and of the packs."""
    root = tmp_path_factory.mktemp("corpus")
    blends = sorted(testdata.rglob("*.blend"))
    results: dict[Path, PackResult] = {}
    for i, blend in enumerate(blends):
        results[blend] = pack(blend, root / "packs" / f"{i:02d}", project=testdata)
    workdir = root / "elsewhere"
    workdir.mkdir()
    views = run_checks(blends + [r.blend_path for r in results.values()], workdir)
    return blends, results, views


def test_every_corpus_file_packs_and_keeps_its_layout(corpus, testdata):
    blends, results, _ = corpus
    assert len(blends) >= 30
    for blend, result in results.items():
        assert result.manifest.blend == blend.relative_to(testdata).as_posix()
        assert result.blend_path.is_file()
        on_disk = {p.relative_to(result.out_dir).as_posix() for p in result.out_dir.rglob("*") if p.is_file()}
        assert on_disk == set(result.manifest.files), blend.name
        for rel, entry in result.manifest.files.items():
            assert entry.size == (result.out_dir / rel).stat().st_size
            assert len(entry.sha256) == 64


def test_pack_holds_every_dependency_that_exists(corpus):
    blends, results, views = corpus
    for blend in blends:
        view = views[str(blend)]
        assert "error" not in view, (blend.name, view)
        packed_names = {Path(p).name for p in results[blend].manifest.files}
        packed_dirs = {part for p in results[blend].manifest.files for part in Path(p).parts[:-1]}
        for dep in deps(view):
            if dep["exists"]:
                name = Path(dep["abs"].rstrip("/")).name
                assert name in packed_names or name in packed_dirs, (blend.name, dep)


def test_pack_reports_every_dependency_that_is_missing(corpus):
    blends, results, views = corpus
    for blend in blends:
        reported = {Path(m.looked_in).name for m in results[blend].missing}
        for dep in deps(views[str(blend)]):
            if not dep["exists"] and not dep["path"].endswith("/") and not is_blender_temp(dep["abs"]):
                assert Path(dep["abs"]).name in reported, (blend.name, dep, results[blend].missing)
        for missing in results[blend].missing:
            assert missing.used_by and missing.looked_in and missing.path


def test_known_missing_files_name_their_data_block(corpus, testdata):
    _, results, _ = corpus
    missing = results[testdata / "missing_textures.blend"].missing
    assert {Path(m.looked_in).name for m in missing} == {
        "Golden Palace 2, Old Bagan-1k.exr",
        "marble_decoration-color.png",
    }
    assert any(m.used_by.startswith('Image "marble_decoration-color"') for m in missing)
    lib = results[testdata / "doubly_linked.blend"].missing
    assert [(m.path, m.used_by.split(" in ")[0]) for m in lib] == [
        ("//material_textures.blend", 'Library "Lib.002"')
    ]


def test_caches_and_sequences_are_carried(corpus, testdata):
    _, results, _ = corpus
    particles = results[testdata / "T55539-particles" / "particle.blend"].manifest.files
    assert sum(p.endswith(".bphys") for p in particles) == 27
    vdb = results[testdata / "T55542-smoke" / "smoke_cache_vdb.blend"].manifest.files
    assert sum(p.endswith(".vdb") for p in vdb) == 10
    seq = results[testdata / "image_sequencer.blend"].manifest.files
    assert {f"imgseq/0002{n}.png" for n in range(10, 15)} <= set(seq)
    assert "clothsim.abc" in results[testdata / "alembic-user.blend"].manifest.files
    assert "meshcache.mdd" in results[testdata / "meshcache-user.blend"].manifest.files
    assert "Cube.btx" in results[testdata / "multires_external.blend"].manifest.files
    recursive = results[testdata / "geometry-nodes-2" / "shot_file.blend"].manifest.files
    assert {"geometry-nodes-2/set_file.blend", "geometry-nodes-2/lib_trash.blend"} <= set(recursive)


def test_packed_files_resolve_from_another_directory(corpus):
    blends, results, views = corpus
    for blend in blends:
        result = results[blend]
        before = {Path(d["abs"]).name for d in deps(views[str(blend)]) if not d["exists"]}
        after = views[str(result.blend_path)]
        assert "error" not in after, (blend.name, after)
        for dep in deps(after):
            if dep["exists"]:
                assert dep["path"].startswith("//"), (blend.name, dep)
                assert Path(dep["abs"]).resolve().is_relative_to(result.out_dir.resolve()), (blend.name, dep)
            else:
                assert Path(dep["abs"]).name in before or is_blender_temp(dep["abs"]), (blend.name, dep)


MAKE_SCENE = (
    SCENE_SCRIPT_START
    + r"""
import shutil
import wave

project, outside = Path(sys.argv[-2]), Path(sys.argv[-1])
(project / "textures").mkdir(parents=True)
outside.mkdir(parents=True)
for tile, color in ((1001, (1, 0, 0, 1)), (1002, (0, 1, 0, 1)), (1011, (0, 0, 1, 1))):
    write_png(project / "textures" / f"wood.{tile}.png", color)
for u in (1, 2):
    write_png(project / "textures" / f"stone.u{u}_v1.png", (0.5, 0.5, u / 2, 1))
write_png(outside / "far.png", (1, 1, 0, 1))
write_png(project / "embedded.png", (0, 1, 1, 1))
write_png(project / "clips" / "clip.png", (1, 0, 1, 1))
(project / "fonts").mkdir()
shutil.copy(Path(bpy.utils.system_resource("DATAFILES")) / "fonts" / "DejaVuSansMono.woff2", project / "fonts" / "mono.woff2")
(project / "audio").mkdir()
with wave.open(str(project / "audio" / "beep.wav"), "wb") as out:
    out.setnchannels(1)
    out.setsampwidth(2)
    out.setframerate(8000)
    out.writeframes(bytes(1600))

bpy.ops.wm.save_as_mainfile(filepath=str(project / "scene.blend"))
for name, path in (("wood", "//textures/wood.<UDIM>.png"), ("stone", "//textures/stone.<UVTILE>.png")):
    img = bpy.data.images.load(str(project / "textures" / (name + (".1001.png" if name == "wood" else ".u1_v1.png"))))
    img.name = name
    img.source = "TILED"
    img.filepath = path
    img.use_fake_user = True
far = bpy.data.images.load(str(outside / "far.png"))
far.filepath = str(outside / "far.png")
far.use_fake_user = True
# Font, sound and clip loaded by absolute path inside the project: rewritten relative.
bpy.data.fonts.load(str(project / "fonts" / "mono.woff2")).use_fake_user = True
bpy.data.sounds.load(str(project / "audio" / "beep.wav")).use_fake_user = True
bpy.data.movieclips.load(str(project / "clips" / "clip.png")).use_fake_user = True
emb = bpy.data.images.load(str(project / "embedded.png"))
emb.pack()
emb.use_fake_user = True
bpy.ops.wm.save_mainfile()
"""
)


@pytest.fixture
def tiled_scene(tmp_path: Path) -> Path:
    """A scene with UDIM and UVTILE images, an absolute path outside the project and a packed image."""
    project = tmp_path / "project"
    subprocess.run(
        [sys.executable, "-c", MAKE_SCENE, str(project), str(tmp_path / "elsewhere" / "assets")],
        check=True,
        capture_output=True,
    )
    (project / "embedded.png").unlink()  # packed in the .blend: the pack must not need it
    return project / "scene.blend"


def test_tiles_and_absolute_paths_are_packed_and_made_relative(tiled_scene, tmp_path):
    events: list[PackProgress] = []
    result = pack(tiled_scene, tmp_path / "pack", progress=events.append)
    files = set(result.manifest.files)
    tiles = {f"textures/wood.{t}.png" for t in (1001, 1002, 1011)} | {
        f"textures/stone.u{u}_v1.png" for u in (1, 2)
    }
    assert tiles | {"fonts/mono.woff2", "audio/beep.wav", "clips/clip.png"} <= files
    far = [f for f in files if f.endswith("far.png")]
    assert len(far) == 1 and far[0].startswith("_external/")
    assert [
        (e.path.endswith("/elsewhere/assets/far.png"), e.packed_as) for e in result.absolute_outside_project
    ] == [(True, far[0])]
    assert result.missing == []
    assert any(e.stage == "tracing" and e.files_traced > 0 for e in events)
    last = [e for e in events if e.stage == "copying"][-1]
    assert last.bytes_done == last.bytes_total > 0
    assert events[-1] == PackProgress(
        "done", 0, 10, 10, result.manifest.total_bytes, result.manifest.total_bytes
    )

    # The original project is gone: only the pack is left, opened from yet another folder.
    os.rename(tiled_scene.parent, tmp_path / "moved-away")
    os.rename(tmp_path / "elsewhere", tmp_path / "moved-away-too")
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    view = run_checks([result.blend_path], workdir)[str(result.blend_path)]
    paths = {d["path"]: d["exists"] for d in deps(view)}
    assert paths == {
        "//textures/wood.<UDIM>.png": True,
        "//textures/stone.<UVTILE>.png": True,
        f"//{far[0]}": True,
        "//fonts/mono.woff2": True,
        "//audio/beep.wav": True,
        "//clips/clip.png": True,
    }
    assert view["packed"] == ["embedded.png"]


def test_resubmit_after_touching_one_texture_changes_one_hash(tiled_scene, tmp_path):
    first = pack(tiled_scene, tmp_path / "pack-1")
    tile = tiled_scene.parent / "textures" / "wood.1002.png"
    tile.write_bytes(tile.read_bytes() + b"\0")
    second = pack(tiled_scene, tmp_path / "pack-2")
    assert second.manifest.changed_since(first.manifest) == ["textures/wood.1002.png"]
    assert set(second.manifest.files) == set(first.manifest.files)


@pytest.mark.parametrize(
    "content", [b"", b"BLENDER-v300 not really", b"\x1f\x8b garbage", b"\x28\xb5\x2f\xfd zstd garbage"]
)
def test_corrupt_blend_is_a_clear_error_and_leaves_nothing(content, tmp_path):
    blend = tmp_path / "broken.blend"
    blend.write_bytes(content)
    with pytest.raises(CloudError) as err:
        pack(blend, tmp_path / "pack")
    assert (
        err.value.message
        == "broken.blend could not be read as a Blender file; it may be damaged or from an unsupported Blender version."
    )
    assert err.value.action == "Open the scene in Blender, save it again (File > Save) and retry."
    assert err.value.code == ErrorCode.BLEND_CORRUPT
    assert not (tmp_path / "pack").exists()


def test_truncated_blend_is_a_clear_error(testdata, tmp_path):
    data = (testdata / "linked_cube.blend").read_bytes()
    blend = tmp_path / "cut.blend"
    blend.write_bytes(data[: len(data) // 3])
    out = tmp_path / "pack"
    out.mkdir()
    with pytest.raises(CloudError) as err:
        pack(blend, out)
    assert err.value.code == ErrorCode.BLEND_CORRUPT
    assert list(out.iterdir()) == []


def test_missing_blend_and_bad_destinations(testdata, tmp_path):
    with pytest.raises(CloudError) as err:
        pack(tmp_path / "nope.blend", tmp_path / "pack")
    assert (err.value.message, err.value.action) == (
        "The scene file nope.blend was not found.",
        "Save the scene and try again.",
    )
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("x")
    with pytest.raises(CloudError) as err:
        pack(testdata / "basic_file.blend", busy)
    assert (err.value.message, err.value.action) == (
        "The pack folder is not empty.",
        "Choose an empty folder for the pack.",
    )


def test_cancel_stops_and_leaves_nothing(testdata, tmp_path):
    cancel = threading.Event()

    def progress(event: PackProgress) -> None:
        if event.stage == "copying":
            cancel.set()

    with pytest.raises(Cancelled):
        pack(
            testdata / "T55539-particles" / "particle.blend",
            tmp_path / "pack",
            progress=progress,
            cancel=cancel,
        )
    assert not (tmp_path / "pack").exists()


SAVE_COPY = r"""
import sys
import bpy
bpy.ops.wm.open_mainfile(filepath=sys.argv[-2], load_ui=False)
bpy.ops.wm.save_as_mainfile(filepath=sys.argv[-1], copy=True, relative_remap=True)
"""


def test_copy_saved_elsewhere_packs_like_the_original(testdata, tmp_path):
    """What "Render in Cloud" does: save a copy in its own folder, pack the copy as the original."""
    original = testdata / "T55539-particles" / "particle.blend"
    copy = tmp_path / "submit" / "particle.blend"
    copy.parent.mkdir()
    subprocess.run(
        [sys.executable, "-c", SAVE_COPY, str(original), str(copy)], check=True, capture_output=True
    )
    result = pack(copy, tmp_path / "pack", original=original)
    assert result.manifest.blend == "particle.blend"
    assert sum(p.startswith("blendcache_particle/") for p in result.manifest.files) == 27
    assert result.missing == [] and result.absolute_outside_project == []

    linked = pack(
        _saved_copy(testdata / "geometry-nodes-2" / "shot_file.blend", tmp_path / "s2"),
        tmp_path / "p2",
        original=testdata / "geometry-nodes-2" / "shot_file.blend",
        project=testdata,
    )
    assert set(linked.manifest.files) == {
        "geometry-nodes-2/shot_file.blend",
        "geometry-nodes-2/set_file.blend",
        "geometry-nodes-2/lib_trash.blend",
    }
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    view = run_checks([linked.blend_path], workdir)[str(linked.blend_path)]
    assert sorted((d["path"], d["exists"]) for d in view["libraries"]) == [
        ("//lib_trash.blend", True),
        ("//set_file.blend", True),
    ]


def _saved_copy(original: Path, folder: Path) -> Path:
    folder.mkdir()
    copy = folder / original.name
    subprocess.run(
        [sys.executable, "-c", SAVE_COPY, str(original), str(copy)], check=True, capture_output=True
    )
    return copy


ROOT = Path(__file__).resolve().parents[2]
BLENDERS = {
    "4.2": ROOT / ".venv-bpy42" / "bin" / "python",
    "5.0": Path(sys.executable),
    "5.3": ROOT / ".venv-bpy5x" / "bin" / "python",
}
SAVE_TINY = r"""
import sys
from pathlib import Path
import bpy
blend, texture = Path(sys.argv[-2]), Path(sys.argv[-1])
bpy.ops.wm.read_factory_settings(use_empty=True)
img = bpy.data.images.new("tex", 4, 4)
img.filepath_raw = str(texture)
img.file_format = "PNG"
img.save()
img.filepath = str(texture)
img.use_fake_user = True
bpy.ops.wm.save_as_mainfile(filepath=str(blend), compress=True)
"""
OPEN_PACKED = r"""
import json, os, sys
import bpy
bpy.ops.wm.open_mainfile(filepath=sys.argv[-1], load_ui=False)
img = bpy.data.images["tex"]
print(json.dumps([bpy.app.version_string, img.filepath, os.path.exists(bpy.path.abspath(img.filepath))]))
"""


@pytest.mark.parametrize("version", list(BLENDERS))
def test_bat_reads_and_rewrites_files_of_each_supported_blender(version, tmp_path):
    """BAT 1.23 (what the extension ships) packs a compressed file saved by Blender 4.2, 5.0 and 5.x."""
    python = BLENDERS[version]
    assert python.exists(), f"{python} missing: run 'make venv-compat' (make test does)"
    blend, texture = tmp_path / "project" / "tiny.blend", tmp_path / "elsewhere" / "abs.png"
    texture.parent.mkdir()
    blend.parent.mkdir()
    subprocess.run([str(python), "-c", SAVE_TINY, str(blend), str(texture)], check=True, capture_output=True)
    result = pack(blend, tmp_path / "pack")
    assert len(result.manifest.files) == 2 and result.missing == []
    texture.unlink()
    (tmp_path / "cwd").mkdir()
    out = (
        subprocess.run(
            [str(python), "-c", OPEN_PACKED, str(result.blend_path)],
            check=True,
            capture_output=True,
            text=True,
            cwd=tmp_path / "cwd",
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    seen, path, exists = json.loads(out)
    assert seen.startswith(version) and path.startswith("//_external/") and exists


def test_unreadable_library_is_reported_and_packed_as_is(testdata, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(testdata / "linked_cube.blend", project)
    (project / "basic_file.blend").write_bytes(b"BLENDER-v279" + b"\0" * 64)
    result = pack(project / "linked_cube.blend", tmp_path / "pack")
    assert set(result.manifest.files) == {"linked_cube.blend", "basic_file.blend"}
    assert [Path(u.path).name for u in result.unreadable] == ["basic_file.blend"]
    assert result.missing == []


MAKE_LINKED = r"""
import sys
from pathlib import Path
import bpy

project, outside = Path(sys.argv[-2]), Path(sys.argv[-1])
(outside / "tex").mkdir(parents=True)
project.mkdir(parents=True)
bpy.ops.wm.read_factory_settings(use_empty=True)
img = bpy.data.images.new("lib_tex", 4, 4)
img.filepath_raw = str(outside / "tex" / "lib.png")
img.file_format = "PNG"
img.save()
bpy.ops.wm.save_as_mainfile(filepath=str(outside / "lib.blend"))
img.filepath = "//tex/lib.png"
mesh = bpy.data.meshes.new("Prop")
mat = bpy.data.materials.new("LibMat")
if bpy.app.version < (5, 0, 0):
    mat.use_nodes = True
mat.node_tree.nodes.new("ShaderNodeTexImage").image = img
mesh.materials.append(mat)
bpy.context.scene.collection.objects.link(bpy.data.objects.new("Prop", mesh))
bpy.ops.wm.save_mainfile()
bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.wm.save_as_mainfile(filepath=str(project / "shot.blend"))
with bpy.data.libraries.load(str(outside / "lib.blend"), link=True, relative=False) as (_, linked):
    linked.objects = ["Prop"]
bpy.context.scene.collection.objects.link(linked.objects[0])
bpy.ops.wm.save_mainfile()
"""


@pytest.mark.parametrize("version", list(BLENDERS))
def test_library_outside_the_project_keeps_its_own_relative_textures(version, tmp_path):
    """Also checks the material node trees of linked data, which BAT 1.23 misses in 5.x files."""
    python = str(BLENDERS[version])
    project, outside = tmp_path / "project", tmp_path / "mnt" / "assets"
    subprocess.run([python, "-c", MAKE_LINKED, str(project), str(outside)], check=True, capture_output=True)
    result = pack(project / "shot.blend", tmp_path / "pack")
    files = sorted(result.manifest.files)
    lib = next(f for f in files if f.endswith("/assets/lib.blend"))
    assert lib.startswith("_external/") and lib.replace("lib.blend", "tex/lib.png") in files
    assert [Path(e.path).name for e in result.absolute_outside_project] == ["lib.blend"]
    os.rename(tmp_path / "mnt", tmp_path / "unmounted")
    (tmp_path / "cwd").mkdir()
    view = run_checks([result.blend_path], tmp_path / "cwd", python)[str(result.blend_path)]
    assert [(d["path"], d["exists"]) for d in view["libraries"]] == [(f"//{lib}", True)]
    assert {d["path"]: d["exists"] for d in view["paths"]} == {f"//{lib}": True, "//tex/lib.png": True}


FRAMES_VIEW_SCENE = (
    SCENE_SCRIPT_START
    + r"""
project = Path(sys.argv[-1])
write_png(project / "textures" / "paint.png", (1, 0, 0, 1))
for frame in (1, 2, 3):
    write_png(project / "cloud_renders" / "job-1" / "render" / f"frame_{frame:04d}.png", (0, frame / 3, 0, 1))
bpy.ops.wm.save_as_mainfile(filepath=str(project / "shot.blend"))
bpy.data.images.load(str(project / "textures" / "paint.png")).use_fake_user = True
# What the add-on's frames view leaves in the artist's file (addon/job_view.show_frames).
frames = bpy.data.images.load(str(project / "cloud_renders" / "job-1" / "render" / "frame_0001.png"))
frames.name = "Cloud Render: job-1"
frames.source = "SEQUENCE"
frames.use_fake_user = True
bpy.ops.wm.save_mainfile()
"""
)


def test_the_add_ons_frames_view_is_not_packed_and_the_submit_folder_goes(tmp_path):
    """An earlier job's frames, loaded as `Cloud Render: <job>`, never travel with the next job;
    the job's folder (scene copy and pack) is private while it lives and removed afterwards."""
    from cloud.job.cloud_steps import CloudSteps
    from cloud.job.records import JobRequest
    from cloud.pack import FRAMES_IMAGE_PREFIX

    project = tmp_path / "project"
    subprocess.run([sys.executable, "-c", FRAMES_VIEW_SCENE, str(project)], check=True, capture_output=True)
    # Packed as the packer does by default, the frames go along: the image is a dependency.
    everything = pack(project / "shot.blend", tmp_path / "plain-pack")
    assert "cloud_renders/job-1/render/frame_0003.png" in everything.manifest.files

    folder = tmp_path / "submit" / "job-2"  # what addon/submit.save_copy makes for job-2
    folder.mkdir(parents=True, mode=0o700)
    shutil.copy(project / "shot.blend", folder / "shot.blend")
    request = JobRequest(
        job_id="job-2",
        blend_copy=folder / "shot.blend",
        blend_name=str(project / "shot.blend"),
        scene_name="Scene",
        frames=[1],
        output_dir=project / "cloud_renders" / "job-2",
        region="us-east-1",
        instance_type="c5.2xlarge",
        spot=False,
        max_cost=1.0,
        max_hours=1.0,
        price_per_hour=0.34,
        blender_version="5.0.1",
    )
    steps = CloudSteps(tmp_path / "user")
    packed = steps.pack(request, folder / "pack", lambda *_: None, threading.Event())
    assert sorted(packed.files) == ["shot.blend", "textures/paint.png"]
    assert packed.missing == []
    if os.name == "posix":
        assert (folder / "pack").stat().st_mode & 0o777 == 0o700
    assert FRAMES_IMAGE_PREFIX == "Cloud Render: "

    # Uploaded (or ended before launch): the copy and the pack leave the artist's disk.
    other = tmp_path / "submit" / "not-this-job"
    other.mkdir()
    steps.discard_pack(request)
    assert not folder.exists()
    assert other.exists()  # nothing but the job's own folder
    steps.discard_pack(JobRequest(**{**request.__dict__, "blend_copy": project / "shot.blend"}))
    assert (project / "shot.blend").exists()  # a path that is not the job's folder is left alone


RESERVED_SCENE = (
    SCENE_SCRIPT_START
    + r"""
project = Path(sys.argv[-1])
# A file laid out where the machine's Blender keeps its user folder: its scripts/startup/ runs
# at start, whatever Auto Run says (Blender reads any image format from a file's own bytes).
write_png(project / "_cloud_render_user" / "scripts" / "startup" / "prank.py", (1, 0, 0, 1))
write_png(project / "textures" / "paint.png", (0, 1, 0, 1))
bpy.ops.wm.save_as_mainfile(filepath=str(project / "shot.blend"))
for name in ("_cloud_render_user/scripts/startup/prank.py", "textures/paint.png"):
    bpy.data.images.load("//" + name).use_fake_user = True
bpy.ops.wm.save_mainfile()
"""
)


def test_a_scene_file_in_the_machines_blender_user_folder_is_refused(tmp_path):
    """`//_cloud_render_user/...` would land in the folder the machine's Blender reads its
    settings and startup scripts from: the pack stops, naming the file, and leaves nothing."""
    project = tmp_path / "project"
    subprocess.run([sys.executable, "-c", RESERVED_SCENE, str(project)], check=True, capture_output=True)
    with pytest.raises(CloudError) as caught:
        pack(project / "shot.blend", tmp_path / "pack")
    assert caught.value.code == "pack_reserved_path"
    assert caught.value.message.startswith(
        "The scene uses _cloud_render_user/scripts/startup/prank.py, in a folder named _cloud_render_user"
    )
    assert "Rename the folder _cloud_render_user" in caught.value.action
    assert not (tmp_path / "pack").exists()
