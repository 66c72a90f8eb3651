"""Frames are checked before Blender decodes them (issue 23, item 3).

The header reader is checked on files Blender itself writes (the bpy module: every image format
it offers, and a multilayer EXR from a real render); the check on the path frames take is fed
hostile frames through the job's presigned POST to the emulated S3 (moto over HTTP) and read by
the job thread, as in test_machine_output.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud.job.events import FrameArrived
from cloud.job.image_header import KIND_OF_FORMAT, FrameShape, check_frame, read_header
from cloud.machine import contract
from tests.images import png, png_claiming
from tests.unit.test_machine_output import drained, followed_job, log_text

WRITTEN = [  # (file_format, settings): what the bpy module writes at 64 x 48
    ("PNG", {}),
    ("JPEG", {}),
    ("OPEN_EXR", {}),
    ("TIFF", {}),
    ("BMP", {}),
    ("WEBP", {"quality": 50}),
    ("WEBP", {"quality": 100}),  # lossless: another header
    ("HDR", {}),
    ("IRIS", {}),
    ("TARGA", {}),
    ("TARGA_RAW", {}),
    ("DPX", {}),
    ("CINEON", {}),
    ("JPEG2000", {"jpeg2k_codec": "JP2"}),
    ("JPEG2000", {"jpeg2k_codec": "J2K"}),
]


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One file per entry of WRITTEN, and a multilayer EXR rendered by Cycles (40 x 30 at 50%)."""
    import bpy

    folder = tmp_path_factory.mktemp("formats")
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    image = bpy.data.images.new("formats", 64, 48, alpha=True, float_buffer=True)
    image.pixels[:] = [0.5] * (64 * 48 * 4)
    files = {}
    settings = scene.render.image_settings
    for file_format, extra in WRITTEN:
        if hasattr(settings, "media_type"):
            settings.media_type = "IMAGE"
        settings.file_format = file_format
        for name, value in extra.items():
            setattr(settings, name, value)
        path = folder / f"{file_format}-{'-'.join(map(str, extra.values()))}.img"
        image.save_render(str(path), scene=scene)
        files[path.stem] = path
    bpy.data.images.remove(image)
    camera = bpy.data.objects.new("camera", bpy.data.cameras.new("camera"))
    scene.collection.objects.link(camera)
    scene.camera = camera
    scene.render.engine = "CYCLES"
    scene.cycles.samples = 1
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 40, 30, 50
    if hasattr(settings, "media_type"):
        settings.media_type = "MULTI_LAYER_IMAGE"
    settings.file_format = "OPEN_EXR_MULTILAYER"
    scene.render.filepath = str(folder / "multilayer")
    bpy.ops.render.render(write_still=True)
    files["OPEN_EXR_MULTILAYER-"] = folder / "multilayer.exr"
    return files


def test_every_format_blender_writes_says_its_kind_and_size(written):
    for name, path in written.items():
        file_format = name.split("-")[0]
        size = (20, 15) if file_format == "OPEN_EXR_MULTILAYER" else (64, 48)
        header = read_header(path)
        assert (header.kind, header.width, header.height) == (KIND_OF_FORMAT[file_format], *size), name
        check_frame(path, FrameShape(KIND_OF_FORMAT[file_format], *size))


def test_a_frame_of_another_size_or_format_is_not_this_jobs(written):
    frame = written["PNG-"]
    with pytest.raises(contract.ContractError, match="64 x 48 pixels, the job renders 1920 x 1080"):
        check_frame(frame, FrameShape("png", 1920, 1080))
    with pytest.raises(contract.ContractError, match="it is a png image, the job renders exr"):
        check_frame(frame, FrameShape("exr", 64, 48))
    check_frame(frame, FrameShape("png", 128, 96, at_most=True))  # a border crop: smaller is fine
    with pytest.raises(contract.ContractError):
        check_frame(frame, FrameShape("png", 32, 96, at_most=True))


@pytest.mark.parametrize(
    "shape",
    [FrameShape("png", 4, 4), FrameShape("", 0, 0)],
    ids=["the-jobs-shape-known", "a-record-from-before"],
)
def test_hostile_frames_are_not_kept_counted_or_shown(aws, tmp_path, shape):
    """A 15 kB PNG claiming 60000 x 60000, garbage under a frame's name, a frame of the wrong
    size and one of the wrong format: none is kept or credited (so none reaches
    bpy.data.images.load), each refusal says why; the good frame arrives."""
    fields = {"frame_format": "PNG", "frame_width": 4, "frame_height": 4} if shape.kind else {}
    runner, events, machine = followed_job(aws, tmp_path, [1, 2, 3, 4, 5], tmp_path / "out", **fields)
    assert runner.frame_shape == shape
    names = {1: "good.png", 2: "bomb.png", 3: "garbage.png", 4: "wrong-size.png", 5: "not-png.png"}
    plan = [{"name": name, "frame": frame} for frame, name in names.items()]
    machine.put_json("plan.json", {"contract": contract.CONTRACT_VERSION, "frames": plan})
    bomb = png_claiming(60000, 60000)
    assert 14_000 < len(bomb) < 16_000
    machine.put("frames/good.png", png(4, 4))
    machine.put("frames/bomb.png", bomb)
    machine.put("frames/garbage.png", b"\x00garbage, not an image" * 50)
    machine.put("frames/wrong-size.png", png(8, 8))
    bmp = b"BM" + bytes(12) + (40).to_bytes(4, "little") + (4).to_bytes(4, "little") * 2 + bytes(40)
    machine.put("frames/not-png.png", bmp)
    runner.poll_outputs()

    taken = drained(events)
    credited = [1] if shape.kind else [1, 4, 5]  # a record that does not know: any image, bounded
    assert sorted(e.frame for e in taken if isinstance(e, FrameArrived)) == credited
    assert sorted(runner.record.frames_done) == credited
    out = Path(runner.record.output_dir)
    assert sorted(p.name for p in out.iterdir()) == sorted(names[f] for f in credited)  # no .part
    log = log_text(taken)
    assert "not counted as frame 2: " in log and "60000 x 60000" in log
    assert "not counted as frame 3: it is not an image file Blender writes" in log
    if shape.kind:
        assert "not counted as frame 4: it is 8 x 8 pixels, the job renders 4 x 4" in log
        assert "not counted as frame 5: it is a bmp image, the job renders png" in log
