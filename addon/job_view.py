"""Applies job events on Blender's main thread: panel state, log, jobs list, frames.

Everything here runs inside the `bpy.app.timers` drain, so each event must be cheap: no
network, and disk work limited to loading a frame Blender reads lazily anyway. Events are
typed (`cloud/job/events.py`) and already validated where the machine could have filled them.
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import bpy

from ..cloud.job import phone_page
from ..cloud.job.events import (
    CostUpdate,
    FrameArrived,
    JobEnded,
    JobEvent,
    LogLines,
    MachineStatus,
    MachinesUpdate,
    Progress,
    QuoteReady,
    StageChanged,
)
from ..cloud.job.log_filter import for_people
from ..cloud.job.records import JobRecord
from ..cloud.machine.contract import shown_text
from ..cloud.pack import FRAMES_IMAGE_PREFIX
from . import away_words, jobs_list, pump

LOG_LINES_KEPT = 20_000
PANEL_LOG_LINES = 6


@dataclass
class JobLocal:
    """What the add-on keeps of one job in Python, beside the WindowManager's view (never saved):
    what a bpy property cannot hold (20,000 log lines, a double-precision clock) or need not."""

    log: deque[str] = field(default_factory=lambda: deque(maxlen=LOG_LINES_KEPT))
    people: deque[str] = field(default_factory=lambda: deque(maxlen=PANEL_LOG_LINES))  # log_filter.for_people
    folder: str | None = None  # where its frames are downloaded, once read from its record
    frames: list[tuple[int, str]] = field(default_factory=list)  # (frame, local file), in arrival order
    # Seconds since the epoch; in Python, not in a (single precision) FloatProperty, which would
    # lose minutes at today's epoch. 0: not known.
    started: float = 0.0
    ended: float = 0.0
    shown: ViewState | None = None  # its part of the panel, whichever file is open
    page: tuple[str, float] | None = None  # its page for a phone: (link, until), once known
    page_looked: float = 0.0  # when its record was last read for the page (monotonic seconds)
    submitted: JobRecord | None = None  # its record as first read: what a job keeps from submit on


@dataclass
class ViewState:
    """One job's part of the Current Job panel (the WindowManager view's fields of the same
    names), kept in Python: a file load (File > New, Open Recent) gives Blender a new
    WindowManager and an empty view, while the job goes on rendering for its file."""

    job_id: str = ""
    state: str = ""
    message: str = ""
    action: str = ""
    error_code: str = ""
    progress: float = 0.0
    frames_done: int = 0
    frames_total: int = 0
    current_frame: int = 0
    cost_so_far: float = 0.0
    machines_text: str = ""
    eta_s: float = 0.0
    projected_cost: float = 0.0
    log_tail: str = ""
    sample: int = 0
    samples_total: int = 0
    device: str = ""
    seconds_per_frame: float = 0.0
    price_per_hour: float = 0.0
    frames_downloaded: int = 0
    downloaded_mb: float = 0.0
    download_mb_s: float = 0.0


class _Both:
    """Sets each field on every target: the job's own state and, for the current job, the
    WindowManager's view (only the fields an event changes, as the view had them before)."""

    def __init__(self, *targets: Any) -> None:
        object.__setattr__(self, "_targets", targets)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._targets[0], name)

    def __setattr__(self, name: str, value: Any) -> None:
        for target in self._targets:
            setattr(target, name, value)


_jobs: dict[str, JobLocal] = {}
# The job each file showed last in this session (its path -> job id): opened again, the file
# shows it again (a job belongs to its file, wherever the artist went in between).
_file_jobs: dict[str, str] = {}


def _job(job_id: str) -> JobLocal:
    return _jobs.setdefault(job_id, JobLocal())


def _record(job_id: str) -> JobRecord | None:
    try:
        return pump.manager().store.load(job_id)
    except (OSError, ValueError, KeyError):
        return None


def state_from_record(record: JobRecord) -> ViewState:
    """What the job's record on disk tells the panel: where it got to, why it ended and what to
    do, its frames and its cost (a job that ended while Blender was closed sent no event)."""
    return ViewState(
        job_id=record.job_id,
        state=record.stage,
        message=record.message,
        action=record.action,
        frames_done=len(record.frames_done),
        frames_total=len(record.frames),
        cost_so_far=record.cost_so_far,
        device=record.device,
        seconds_per_frame=record.seconds_per_frame,
        price_per_hour=record.price_per_hour,
    )


def job_state(job_id: str) -> ViewState:
    """The job's part of the panel: as its events left it, or first from its record."""
    job = _job(job_id)
    if job.shown is None:
        record = _record(job_id)
        job.shown = state_from_record(record) if record is not None else ViewState(job_id=job_id)
        if record is not None and not job.started:
            job.started, job.ended = record.created, record.ended_at
    return job.shown


def begin(job_id: str, state: ViewState) -> None:
    """A job starts (or starts again) in the panel with `state`, the last job's words gone."""
    _job(job_id).shown = state
    show(job_id)


def show(job_id: str) -> None:
    """Make `job_id` the Current Job of the open file: the panel draws its state as kept here."""
    shown = view()
    state = job_state(job_id) if job_id else ViewState()
    for item in dataclasses.fields(ViewState):
        setattr(shown, item.name, getattr(state, item.name))
    if job_id and bpy.data.filepath:
        _file_jobs[bpy.data.filepath] = job_id


def file_job(blend_name: str) -> str:
    """The job `blend_name` showed last in this session ("" if none)."""
    return _file_jobs.get(blend_name, "")


def move_file_job(old: str, new: str) -> None:
    """After "Save As": the job shown for the old name is the new name's."""
    if old in _file_jobs:
        _file_jobs[new] = _file_jobs.pop(old)


def say(job_id: str, **fields: Any) -> None:
    """Words about a job (a message, an action) that no event brings: kept with the job and
    shown now if it is the Current Job."""
    job = _jobs.get(job_id)
    if job_id and job is not None and job.shown is not None:
        for name, value in fields.items():
            setattr(job.shown, name, value)
    shown = view()
    if shown.job_id == job_id:
        for name, value in fields.items():
            setattr(shown, name, value)


def view() -> Any:
    """The live job view the panel draws: WindowManager.cloud_render_job, never saved."""
    return bpy.context.window_manager.cloud_render_job


def log_lines(job_id: str) -> list[str]:
    job = _jobs.get(job_id)
    return list(job.log) if job else []


def frame_files(job_id: str) -> list[tuple[int, str]]:
    job = _jobs.get(job_id)
    return list(job.frames) if job else []


def image_name(job_id: str) -> str:
    """The image that shows a job's frames; the pack skips images named so (packer)."""
    return f"{FRAMES_IMAGE_PREFIX}{job_id}"


def start_clock(job_id: str, started: float | None = None) -> None:
    job = _job(job_id)
    job.started, job.ended = (started if started is not None else time.time()), 0.0


def elapsed_seconds(job_id: str) -> int | None:
    job = _jobs.get(job_id)
    if job is None or not job.started:
        return None
    return max(0, int((job.ended or time.time()) - job.started))


def _on_log(event: LogLines, view: Any) -> None:
    job = _job(event.job_id)
    job.log.extend(event.lines)
    job.people.extend(for_people(event.lines, keep=0))
    view.log_tail = "\n".join(job.people)


def output_folder(job_id: str) -> str:
    """Where the job's frames are downloaded (its local record), read once per job."""
    job = _jobs.get(job_id)
    if job is None or job.folder is None:
        try:
            folder = pump.manager().store.load(job_id).output_dir
        except (OSError, ValueError, KeyError):
            return ""
        job = _job(job_id)
        job.folder = folder
    return job.folder


PAGE_LOOK_EVERY_S = 5.0


def page_link(job_id: str) -> tuple[str, float] | None:
    """The job's page for a phone: (presigned link, until when in seconds since the epoch), or
    None. Written by the job thread once the machines are launched; read from the record (or,
    for a link signed with temporary keys, from this session's memory) at most every few
    seconds until found."""
    job = _job(job_id)
    if job.page is None and time.monotonic() - job.page_looked >= PAGE_LOOK_EVERY_S:
        job.page_looked = time.monotonic()
        record = _record(job_id)
        url = (record.page_url if record else "") or phone_page.session_links.get(job_id, "")
        if record is not None and url and record.page_expires:
            job.page = (url, record.page_expires)
    return job.page


def away_text(job_id: str, stage: str) -> str:
    """What becomes of the job at `stage` if Blender is closed (away_words), from its record's
    submit-time facts, read once."""
    job = _job(job_id)
    if job.submitted is None:
        job.submitted = _record(job_id)
    return away_words.away_text(job.submitted, stage) if job.submitted is not None else ""


def _on_stage(event: StageChanged, view: Any) -> None:
    for item in jobs_list.rows(event.job_id):
        item.stage = event.stage
    view.state, view.message, view.action = event.stage, event.message, event.action
    view.progress = 0.0


def _on_end(event: JobEnded, view: Any) -> None:
    for item in jobs_list.rows(event.job_id):
        item.stage, item.frames_done = event.stage, event.frames_done
    job = _jobs.get(event.job_id)
    if job is not None and job.started:
        job.ended = time.time()
    view.state, view.message, view.action = event.stage, event.message, event.action
    view.error_code = event.code
    view.progress = 0.0
    view.frames_done, view.frames_total = event.frames_done, event.frames_total
    if event.cost_so_far:
        view.cost_so_far = event.cost_so_far


def _on_progress(event: Progress, view: Any) -> None:
    view.progress = min(max(event.fraction, 0.0), 1.0)
    if event.text:
        view.message = event.text


def _on_status(event: MachineStatus, view: Any) -> None:
    view.current_frame = event.frame if event.frame is not None else 0
    view.sample = event.sample or 0
    view.samples_total = event.samples_total or 0
    view.device = event.device
    view.seconds_per_frame = event.seconds_per_frame


def _on_machines(event: MachinesUpdate, view: Any) -> None:
    view.machines_text = "\n".join(event.rows)
    view.eta_s = event.eta_s


def _on_cost(event: CostUpdate, view: Any) -> None:
    view.cost_so_far, view.projected_cost = event.cost_so_far, event.projected


def _on_frame(event: FrameArrived, view: Any) -> None:
    _job(event.job_id).frames.append((event.frame, event.path))
    for item in jobs_list.rows(event.job_id):
        item.frames_done = event.frames_done
    view.frames_done, view.frames_total = event.frames_done, event.frames_total
    if event.frames_downloaded:
        view.frames_downloaded = event.frames_downloaded
        view.downloaded_mb = event.bytes_downloaded / 1e6
        view.download_mb_s = event.download_rate / 1e6
    show_frames(event.job_id, open_editor=False)


def _on_quote(event: QuoteReady, view: Any) -> None:
    """The quote's words reach the panel as a stage and a log line; nothing more to draw."""


HANDLERS: dict[type, Callable[[Any, Any], None]] = {
    LogLines: _on_log,
    StageChanged: _on_stage,
    JobEnded: _on_end,
    Progress: _on_progress,
    MachineStatus: _on_status,
    MachinesUpdate: _on_machines,
    CostUpdate: _on_cost,
    FrameArrived: _on_frame,
    QuoteReady: _on_quote,
}


# Fields that are the add-on's own keys (a job id, a stage id, an error code) or a local file,
# never words to show: every other text field of an event is shown as text (`shown`).
_NOT_WORDS = frozenset({"job_id", "stage", "code", "path"})


def shown(event: JobEvent) -> JobEvent:
    """`event` with each text the artist may see (a message, a log line, a machine's row, a
    device name) passed through `contract.shown_text`: whichever thread made the event and
    whatever it quoted from a machine, no control, bidirectional or zero-width character
    reaches the panel, the job log or a tooltip. A message keeps its own line breaks."""
    changes: dict[str, Any] = {}
    for item in dataclasses.fields(event):
        value = getattr(event, item.name)
        if item.name in _NOT_WORDS:
            continue
        if isinstance(value, str):
            words: Any = "\n".join(shown_text(line) for line in value.split("\n"))
        elif isinstance(value, tuple) and all(isinstance(line, str) for line in value):
            words = tuple(shown_text(line) for line in value)
        else:
            continue
        if words != value:
            changes[item.name] = words
    return dataclasses.replace(event, **changes) if changes else event


def apply_event(event: JobEvent) -> None:
    """Route one event to the panel, the jobs list, the log and the images, by its type; its
    words go through `shown` first, the one way text reaches what the artist sees."""
    handler = HANDLERS.get(type(event))
    if handler is None:
        return
    state = job_state(event.job_id)  # kept whichever file is open (a file load empties the view)
    current = view()
    handler(shown(event), _Both(state, current) if current.job_id == event.job_id else state)
    redraw()


def show_frames(job_id: str, open_editor: bool) -> bpy.types.Image | None:
    """Load the job's frames as one image sequence and show the newest in Image Editors. One
    frame is one image: a still's file (`still.png`) has no frame number a sequence could find."""
    frames = [(f, p) for f, p in frame_files(job_id) if f is not None]
    if not frames:
        return None
    numbers = sorted(f for f, _ in frames)
    first_path = min(frames)[1]
    name = image_name(job_id)
    image = bpy.data.images.get(name)
    source: Literal["SEQUENCE", "FILE"] = "SEQUENCE" if len(numbers) > 1 else "FILE"
    if image is None or bpy.path.abspath(image.filepath) != first_path or image.source != source:
        if image is not None:
            bpy.data.images.remove(image)
        image = bpy.data.images.load(first_path, check_existing=False)
        image.name = name
        image.source = source
    else:
        image.reload()
    image["cloud_render_frames"] = len(numbers)
    image["cloud_render_first"] = numbers[0]
    image["cloud_render_last"] = numbers[-1]
    newest = frames[-1][0] or numbers[-1]
    editors = _image_editors()
    if not editors and open_editor:
        editors = [area.spaces.active for area in _new_window_area("IMAGE_EDITOR")]
    scene = bpy.context.scene
    for space in editors:
        space.image = image
        user = space.image_user
        user.frame_start = scene.frame_current
        user.frame_duration = numbers[-1] - numbers[0] + 1
        user.frame_offset = newest - 1
        user.use_auto_refresh = True
    if editors:
        scene.frame_set(scene.frame_current)
    if open_editor:
        bpy.app.timers.register(_fit_images, first_interval=0.3)
    return image


def _fit_images() -> None:
    """Fit the frames to each Image Editor (after it has drawn once and knows its size)."""
    for window in bpy.context.window_manager.windows:
        for area in window.screen.areas:
            if area.type == "IMAGE_EDITOR":
                region = next((r for r in area.regions if r.type == "WINDOW"), None)
                with bpy.context.temp_override(window=window, area=area, region=region):
                    bpy.ops.image.view_all(fit_view=True)


def _image_editors() -> list[Any]:
    spaces = []
    for window in bpy.context.window_manager.windows:
        for area in window.screen.areas:
            if area.type == "IMAGE_EDITOR":
                spaces.append(area.spaces.active)
    return spaces


def _new_window_area(kind: str) -> list[Any]:
    """A new window whose editor is `kind`, as Blender shows a render: the artist's layout
    stays as it is. Where no window can be opened (the bpy module), the largest editor that is
    not a Properties editor or an Outliner becomes one, as before."""
    wm = bpy.context.window_manager
    if not wm.windows:
        return []
    before = set(wm.windows[:])
    try:
        with bpy.context.temp_override(window=wm.windows[0]):
            bpy.ops.wm.window_new()
    except RuntimeError:  # no window to copy (the bpy module's stand-in window has no screen area)
        pass
    new = [w for w in wm.windows if w not in before]
    areas = (
        list(new[0].screen.areas)
        if new
        else [
            area
            for window in wm.windows
            for area in window.screen.areas
            if area.type not in {"PROPERTIES", "OUTLINER"}
        ]
    )
    if not areas:
        return []
    area = max(areas, key=lambda a: a.width * a.height)
    area.type = kind
    return [area]


# Every editor that shows the add-on's state: the panels, the frames, and the preferences page
# (keys saved, Set Up's progress: without a redraw it showed the old words until the pointer moved).
REDRAWN_AREAS = frozenset({"PROPERTIES", "IMAGE_EDITOR", "PREFERENCES"})


def redraw() -> None:
    for window in bpy.context.window_manager.windows:
        for area in window.screen.areas:
            if area.type in REDRAWN_AREAS:
                area.tag_redraw()


def forget() -> None:
    _jobs.clear()
    _file_jobs.clear()


def fill_log_text(job_id: str, machine: int = -1) -> bpy.types.Text:
    """The full log in a Text data-block `Cloud Render: <job>`, shown in a Text Editor (a new
    window when none is open), plain text: no Python highlighting. With `machine` (many
    machines): that machine's lines only, in `Cloud Render: <job> machine <n>`."""
    name = image_name(job_id) + (f" machine {machine}" if machine >= 0 else "")
    lines = log_lines(job_id)
    if machine >= 0:
        mark = f"[machine {machine}] "
        lines = [line[len(mark) :] for line in lines if line.startswith(mark)]
    elif not lines:
        lines = why_no_log(job_id)
    text = bpy.data.texts.get(name) or bpy.data.texts.new(name)
    text.clear()
    text.write("\n".join(lines) + "\n")
    areas = [
        area
        for window in bpy.context.window_manager.windows
        for area in window.screen.areas
        if area.type == "TEXT_EDITOR"
    ] or _new_window_area("TEXT_EDITOR")
    for area in areas:
        space = area.spaces.active
        space.text = text
        space.show_syntax_highlight = False
        space.show_word_wrap = True
        space.top = max(0, len(text.lines) - 40)  # the end of the log, where the news is
    return text


def why_no_log(job_id: str) -> list[str]:
    """What a log with no line says instead: an empty text read as a broken button, and a job
    that ended before any machine wrote a line (Blender closed while packing) has its reason
    in its record alone."""
    record = _record(job_id)
    if record is None:
        return ["This job has no log on this computer."]
    if not record.is_final:
        return ["No log line has come back from this job since this file was opened."]
    return [
        "No log came back from this job: it ended before a machine wrote one, or in another Blender session.",
        *(line for line in (record.message, record.action) if line),
    ]


def load_frames_from_record(job_id: str) -> None:
    """After a restart: the frames already downloaded, from the job's local record."""
    record = pump.manager().store.load(job_id)
    _job(job_id).frames = [(int(frame), path) for frame, path in record.frame_paths.items()]
