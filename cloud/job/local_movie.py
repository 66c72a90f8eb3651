"""A movie job's movie made on this computer, from the frames already downloaded.

The machine encodes the movie itself when it rendered every frame. When it could not (frames
spread over many machines, a relaunch that rendered only the missing frames, an encode that
failed and was fixed since), the same step runs here in a background Blender: the job's packed
.blend and its sound files come back from the bucket (by their content hashes), the frames are
the ones on disk, and `assemble_movie.py` encodes them with the scene's own settings.
Runs in a worker thread; never on Blender's main thread.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import zlib
from pathlib import Path

from ..aws.session import AwsSettings
from ..errors import CloudError, ErrorCode
from ..machine import assemble_movie, contract
from ..pack.compression import ZLIB, inflate_file
from .cloud_steps import CloudSteps
from .records import JobRecord

# What the encode needs besides the .blend: the scene's sound strips' files.
SOUND_EXTENSIONS = (".wav", ".mp3", ".ogg", ".oga", ".flac", ".aac", ".m4a", ".opus", ".aif", ".aiff")


def job_inputs(record: JobRecord) -> dict[str, str]:
    """Pack path -> content hash of the .blend and the sound files (textures are not needed)."""
    wanted = {}
    for rel, (sha, _size) in record.pack_manifest.items():
        if rel == record.blend_in_pack or rel.lower().endswith(SOUND_EXTENSIONS):
            wanted[contract.safe_relative_path(rel)] = str(sha)
    return wanted


def _rebuild(
    steps: CloudSteps, settings: AwsSettings, record: JobRecord, rel: str, sha: str, dest: Path, work: Path
) -> None:
    """A .blend that travelled as chunks: each chunk fetched and appended, the whole checked."""
    digest = hashlib.sha256()
    piece = work / "chunk.part"
    dest.parent.mkdir(parents=True, exist_ok=True)
    with dest.open("wb") as out:
        for chunk_sha, size in record.pack_chunks[rel]:
            key = contract.chunk_key(str(chunk_sha))
            _fetch(steps, settings, record, key, piece, int(size), work, int(size))
            data = piece.read_bytes()
            digest.update(data)
            out.write(data)
    piece.unlink(missing_ok=True)
    if digest.hexdigest() != sha:
        raise CloudError(
            f"{dest.name} could not be rebuilt from its chunks in the bucket.",
            "Render the job again to get its movie.",
            code=ErrorCode.MOVIE_SCENE_DAMAGED,
        )


def _fetch(
    steps: CloudSteps,
    settings: AwsSettings,
    record: JobRecord,
    key: str,
    dest: Path,
    size: int,
    work: Path,
    limit: int,
) -> None:
    """One input object to `dest`: as it is (at most `limit` bytes), or, stored compressed
    (`record.pack_encodings`), fetched compressed and inflated, never past its size."""
    if record.pack_encodings.get(key) != ZLIB:
        steps.download(settings, record.bucket, key, dest, limit)
        return
    body = work / "input.zlib"
    dest.parent.mkdir(parents=True, exist_ok=True)
    # zlib's worst case is a few bytes per 16 KiB over the size: an eighth is ample.
    steps.download(settings, record.bucket, f"{key}.{ZLIB}", body, size + size // 8 + 1024)
    try:
        inflate_file(body, dest, size)
    except (ValueError, zlib.error) as error:
        raise CloudError(
            f"{dest.name} could not be read back from the bucket.",
            "Render the job again to get its movie.",
            code=ErrorCode.MOVIE_SCENE_DAMAGED,
            detail=str(error),
        ) from error
    finally:
        body.unlink(missing_ok=True)


def assemble_here(
    steps: CloudSteps, settings: AwsSettings, record: JobRecord, blender: list[str]
) -> tuple[Path, float]:
    """Encode the record's downloaded frames into <output>/movie/<name>; (the movie, seconds)."""
    frames = [path for _frame, path in sorted((int(f), p) for f, p in record.frame_paths.items())]
    missing = [p for p in frames if not os.path.isfile(p)]
    if not frames or missing or sorted(int(f) for f in record.frame_paths) != sorted(record.frames):
        raise CloudError(
            "Not every frame of this job is on this computer, so the movie cannot be made yet.",
            "Relaunch the missing frames (or wait for the job to finish), then make the movie again.",
            code=ErrorCode.MOVIE_FRAMES_MISSING,
        )
    if not record.blend_in_pack or record.blend_in_pack not in record.pack_manifest:
        raise CloudError(
            "This job's record does not say which scene file it rendered.",
            "Render the job again to get its movie.",
            code=ErrorCode.MOVIE_NO_SCENE,
        )
    work = Path(tempfile.mkdtemp(prefix="cloud-render-movie-"))
    try:
        job_dir = work / "job"
        for rel, sha in job_inputs(record).items():
            dest = job_dir.joinpath(*rel.split("/"))
            if record.pack_chunks.get(rel):
                _rebuild(steps, settings, record, rel, sha, dest, work)
                continue
            size = int(record.pack_manifest[rel][1])
            _fetch(steps, settings, record, contract.cas_key(sha), dest, size, work, contract.MAX_FRAME_BYTES)
        blend = job_dir.joinpath(*record.blend_in_pack.split("/"))
        frames_format = "OPEN_EXR" if frames[0].lower().endswith(".exr") else "PNG"
        lines: list[str] = []
        env = dict(os.environ, **assemble_movie.egl_environment(dict(os.environ))[0])
        try:
            made, seconds = assemble_movie.assemble(
                blender, str(blend), str(work), frames, {"frames_format": frames_format}, lines.append, env
            )
        except assemble_movie.MovieFailed as error:
            raise CloudError(
                f"Blender could not make the movie: {error}.",
                "Check Output Properties > Encoding (H.264 needs an even width and height), then try again.",
                code=ErrorCode.MOVIE_FAILED,
                detail="".join(lines[-40:]),
            ) from error
        dest = Path(record.output_dir) / "movie" / os.path.basename(made)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(made, dest)
        return dest, seconds
    finally:
        shutil.rmtree(work, ignore_errors=True)
