"""Every panel, menu and the preferences page draw without error in each job state.

The bpy module has no window to draw in, so `draw()` gets a recording layout. It checks what
a real UILayout would refuse: each `prop` names a property of its data, each `operator`,
`menu` and `template_list` names something registered, and it keeps the labels to assert on.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import bpy
import pytest

from cloud.job.records import Stage
from dev import addon_harness as harness
from tests.factories import job_fields


class Unwrap:
    """A panel's `self`: its layout is the recorder, everything else is the real object."""

    def __init__(self, real: Any, layout: Recording) -> None:
        object.__setattr__(self, "_real", real)
        object.__setattr__(self, "layout", layout)

    def __getattr__(self, name: str) -> Any:
        return getattr(object.__getattribute__(self, "_real"), name)


class Recording:
    def __init__(
        self, labels: list[str], operators: list[str], props: list | None = None, half: bool = False
    ) -> None:
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "half", half)  # in a two-column grid: half the width
        object.__setattr__(self, "operators", operators)
        # (text, where): a property's label as drawn, "label" for the form's label column
        # (names, headings), "tick" for a tick box's text beside it
        object.__setattr__(self, "props", PROPS if props is None else props)

    def __setattr__(self, name: str, value: Any) -> None:
        assert name in {
            "use_property_split",
            "use_property_decorate",
            "enabled",
            "alert",
            "scale_y",
            "active",
            "alignment",
        }, name

    def _child(self, *_args: Any, heading: str = "", **_kwargs: Any) -> Recording:
        if heading:
            self.props.append((heading, "label"))
        return Recording(self.labels, self.operators, self.props, self.half)

    row = column = box = split = _child

    def grid_flow(self, *_args: Any, columns: int = 0, **_kwargs: Any) -> Recording:
        return Recording(self.labels, self.operators, self.props, self.half or columns >= 2)

    def prop(self, data: Any, name: str, text: str | None = None, **_kwargs: Any) -> None:
        real = data._real if isinstance(data, Unwrap) else data
        assert name in real.bl_rna.properties, f"{type(real).__name__} has no property {name!r}"
        rna = real.bl_rna.properties[name]
        shown = rna.name if text is None else text
        if shown:
            self.props.append((shown, "tick" if rna.type == "BOOLEAN" else "label"))

    def label(self, text: str = "", **_kwargs: Any) -> None:
        self.labels.append(text)
        if self.half:
            HALVES.append(text)

    def operator(self, idname: str, text: str | None = None, **_kwargs: Any) -> SimpleNamespace:
        module, _, name = idname.partition(".")
        assert hasattr(getattr(bpy.ops, module), name), idname
        rna = getattr(getattr(bpy.ops, module), name).get_rna_type()  # raises if not registered
        self.operators.append(idname)
        if self.half:
            HALVES.append(rna.name if text is None else text)
        return SimpleNamespace()

    def menu(self, name: str, **_kwargs: Any) -> None:
        assert hasattr(bpy.types, name), name

    def progress(self, **kwargs: Any) -> None:
        assert 0.0 <= kwargs["factor"] <= 1.0

    def template_list(
        self, listtype: str, _listid: str, data: Any, prop: str, active: Any, active_prop: str, **_kw: Any
    ) -> None:
        assert hasattr(bpy.types, listtype), listtype
        assert prop in data.bl_rna.properties and active_prop in active.bl_rna.properties

    def separator(self, **_kwargs: Any) -> None:
        return None

    def template_icon(self, icon_value: int, scale: float = 1.0) -> None:
        ICONS.append((icon_value, scale))


PROPS: list[tuple[str, str]] = []  # what the last draw() put in its forms
HALVES: list[str] = []  # the labels and buttons the last draw() put in half the width
ICONS: list[tuple[int, float]] = []  # the icons the last draw() showed large: (icon id, scale)


def half_room(module: Any) -> int:
    """Characters a label or a button shows in half the default width: the real window showed
    "Delete Cloud Data" whole and "Relaunch Missing..." cut there."""
    text_wrap = module.panels.text_wrap
    return int((text_wrap.DEFAULT_WIDTH_PX - text_wrap.MARGIN_PX) / 2 / text_wrap.CHAR_PX)


def draw(cls: type, real: Any = None) -> tuple[list[str], list[str]]:
    labels: list[str] = []
    operators: list[str] = []
    PROPS.clear()
    HALVES.clear()
    ICONS.clear()
    layout = Recording(labels, operators)
    panel_self = Unwrap(real, layout) if real is not None else SimpleNamespace(layout=layout)
    if hasattr(cls, "poll") and real is None and not cls.poll(bpy.context):
        return labels, operators
    cls.draw(panel_self, bpy.context)
    return labels, operators


@pytest.fixture
def module(installed, tmp_path, aws):
    harness.make_scene(tmp_path / "draw.blend")
    harness.connect(aws.url)
    yield harness.addon()
    view = harness.addon().addon.job_view.view()
    view.job_id = view.state = view.message = view.action = ""
    harness.addon().addon.panel_results.forget()
    harness.disconnect()


def estimated(
    module: Any,
    chosen: str,
    *machines: tuple[str, float, float, float],
    cheapest: str = "",
    fastest: str = "",
) -> None:
    """An Estimate's answer without rendering a tile: (machine, s/frame, $ total, s total) each,
    the range +-50%, as typed rows in the panel's results (addon/panel_results.py)."""
    estimate = module.cloud.cost.estimate
    found = [
        estimate.Estimate(
            instance_type=name,
            seconds_per_frame=spf,
            cost_per_frame=0.0,
            total_seconds=seconds,
            total_cost=usd,
            low=estimate.Bound(spf / 2, seconds / 2, usd / 2),
            high=estimate.Bound(spf * 1.5, seconds * 1.5, usd * 1.5),
            cheapest=name == cheapest,
            fastest=name == fastest,
        )
        for name, spf, usd, seconds in machines
    ]
    module.addon.panel_results.results().estimate = module.addon.panel_results.estimate_rows(found, chosen)


def all_drawn(module: Any) -> tuple[list[str], list[str]]:
    labels: list[str] = []
    operators: list[str] = []
    for cls in module.panels.render_panel.classes:
        if issubclass(cls, (bpy.types.Panel, bpy.types.Menu)):
            got = draw(cls)
            labels += got[0]
            operators += got[1]
    prefs = module.addon.account.preferences()
    got = draw(module.panels.preferences.CloudRenderPreferences, prefs)
    return labels + got[0], operators + got[1]


def test_panels_draw_with_no_job(module):
    labels, operators = all_drawn(module)
    assert "cloud_render.render" in operators and "cloud_render.check_scene" in operators
    assert "cloud_render.copy_policy" in operators and "cloud_render.save_keys" in operators
    machine = " ".join(labels[labels.index(next(t for t in labels if t.startswith("g4dn.xlarge:"))) :][:3])
    assert "$" in machine and "/h" in machine  # wrapped in the form's value column, price kept


@pytest.mark.parametrize("state", ["uploading", "rendering", "done", "failed", "capped"])
def test_panels_draw_in_each_job_state(module, state):
    view = module.addon.job_view.view()
    view.job_id, view.state, view.message = "20261125-000000-abcdef", state, "working"
    view.frames_total, view.frames_done, view.progress = 10, 4, 0.5
    view.log_tail = "line one\nline two"
    engine = module.cloud.job.engine
    module.addon.panel_results.results().forgotten = [
        engine.ForgottenMachine(module.cloud.job.records.EngineName.EC2, "", "i-0123456789abcdef0", "old-job")
    ]
    view.action, view.error_code = "", ""
    view.jobs_status = "Deleted 12 cloud files of 20261124-000000-fedcba."
    if state == "failed":
        # The button follows the error's code, whatever the words: the launch-time quota error
        # ("Press 'Request quota increase'...") and the pre-launch check read differently.
        view.action, view.error_code = "Press 'Request quota increase' in the panel.", "no_quota"
    labels, operators = all_drawn(module)
    assert f"{Stage(state).label}: working" in labels  # the id stored, its words shown
    assert "line two" in labels
    assert "cloud_render.terminate_orphan" in operators
    assert any(text.startswith("1 machine still running with no job") for text in labels)
    assert ("cloud_render.cancel" in operators) == (state in {"uploading", "rendering"})
    assert ("cloud_render.request_quota" in operators) == (state == "failed")
    # What the last button under the Jobs list did is said there, not in the job's own words.
    assert "Deleted 12 cloud files of 20261124-000000-fedcba." in " ".join(labels)


def test_online_access_off_is_explained_in_preferences(module):
    bpy.context.preferences.system.use_online_access = False
    try:
        labels, _ = draw(module.panels.preferences.CloudRenderPreferences, module.addon.account.preferences())
    finally:
        bpy.context.preferences.system.use_online_access = True
    assert any("Allow Online Access" in text for text in labels)


def test_done_says_frames_folder_cost_with_open_folder_and_show_frames(module):
    view = module.addon.job_view.view()
    view.job_id, view.state, view.message = "20261125-000000-abcdef", "done", "6 frames rendered."
    view.frames_total = view.frames_done = 6
    view.cost_so_far, view.current_frame, view.action = 0.001, 0, ""
    view.log_tail = ""
    labels, operators = draw(module.panels.render_panel.CLOUDRENDER_PT_job)
    assert "Done: 6 frames rendered." in labels
    assert any(text.startswith("6/6 frames in ") and text.endswith("cost under $0.01") for text in labels)
    assert not any(text.startswith("Frame ") for text in labels)  # no stale "Frame 0" once done
    assert {"cloud_render.open_folder", "cloud_render.show_frames", "cloud_render.open_log"} <= set(operators)
    assert "cloud_render.cancel" not in operators


def test_long_lines_wrap_to_the_default_editor_width(module):
    text_wrap = module.panels.text_wrap
    results = module.addon.panel_results
    estimated(module, "c5.2xlarge", ("c5.2xlarge", 3.0, 0.02, 60), ("c6i.2xlarge", 3.0, 0.02, 60))
    finding = module.cloud.pack.preflight.Finding(
        "warn",
        "output_folder",
        "The output path /tmp/ is a folder on this computer;",
        "frames go to the job folder.",
    )
    results.results().findings = [finding]
    try:
        labels, _ = draw(module.panels.render_panel.CLOUDRENDER_PT_main)
    finally:
        results.forget()
    widest = int((text_wrap.DEFAULT_WIDTH_PX - text_wrap.MARGIN_PX) / text_wrap.CHAR_PX)
    assert all(len(text) <= widest for text in labels)
    assert " ".join(labels).count("$0.02, 1 min") == 2  # every price survives


def test_overrides_read_as_overrides(module):
    settings = bpy.context.scene.cloud_render
    settings.samples, settings.resolution_percentage = 0, 0
    labels, _ = draw(module.panels.render_panel.CLOUDRENDER_PT_settings)
    assert f"Scene's: {bpy.context.scene.cycles.samples}" in labels
    assert f"Scene's: {bpy.context.scene.render.resolution_percentage}%" in labels
    assert any(text.startswith("Hard Caps") for text in labels)
    settings.use_samples = True  # the tick box starts from the scene's own value
    assert settings.samples == bpy.context.scene.cycles.samples
    settings.use_samples = False
    assert settings.samples == 0


def test_an_email_in_preferences_says_aws_asks_to_confirm_it_first(module):
    prefs = module.addon.account.preferences()
    prefs.budget_email = "artist@example.com"
    try:
        labels, _ = draw(module.panels.preferences.CloudRenderPreferences, prefs)
    finally:
        prefs.budget_email = ""
    said = " ".join(labels)
    assert "AWS sends a confirmation mail first: open its link to get job e-mails." in said
    labels, _ = draw(module.panels.preferences.CloudRenderPreferences, prefs)
    assert "confirmation mail" not in " ".join(labels)  # no address, nothing to confirm


def test_settings_labels_keep_their_words_at_the_default_width(module):
    """In the default Properties editor (about 330 px) a form's label column holds about 15
    characters and a tick box's text about 19; longer ones are cut ("Finish Within (...",
    "Render Despite Diff..."), as the real window showed."""
    text_wrap = module.panels.text_wrap
    inner = text_wrap.DEFAULT_WIDTH_PX - text_wrap.MARGIN_PX
    room = {
        "label": int(0.4 * inner / text_wrap.CHAR_PX) - 1,
        "tick": int((0.6 * inner - 24) / text_wrap.CHAR_PX),
    }
    bpy.context.scene.cloud_render.use_custom_frames = True  # draw the frame list too
    try:
        draw(module.panels.render_panel.CLOUDRENDER_PT_settings)
    finally:
        bpy.context.scene.cloud_render.use_custom_frames = False
    drawn = list(PROPS)
    assert len(drawn) > 15
    cut = [(text, where) for text, where in drawn if len(text) > room[where]]
    assert not cut, f"cut at the default width: {cut} (room {room})"
    assert ("Differences", "label") in drawn and ("Render Anyway", "tick") in drawn


def test_render_in_cloud_is_in_the_render_menu(module):
    _labels, operators = draw(SimpleNamespace(draw=module.panels.render_panel.draw_render_menu))
    assert operators == ["cloud_render.render", "cloud_render.render"]  # This Frame, and the range
    assert module.panels.render_panel.draw_render_menu in bpy.types.TOPBAR_MT_render.draw._draw_funcs


def test_render_this_frame_on_many_machines_is_a_still_split_by_samples(module):
    """Render > Render This Frame in Cloud: the current frame alone; with Machines = 3 and Cycles
    the confirmation says the frame's samples are split, and that adaptive sampling is off."""
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end, scene.frame_current = 1, 3, 2
    scene.cycles.samples = 128
    scene.cloud_render.machines = 3
    submit = module.addon.submit
    assert submit.frames_for(scene, this_frame=True) == [2]
    text = submit.confirmation_text(bpy.context, this_frame=True)
    assert "one frame split by samples over 3 machines (AWS Batch): 128 samples in" in text, text
    assert "Adaptive sampling is off for a split frame: it renders a fixed 128 samples" in text
    assert "3 frames on 3 machines" in submit.confirmation_text(bpy.context)  # the range, as before
    # What happens after the merge is what the scene asks: no denoiser and no compositor nodes,
    # nothing is said to be denoised or composited (the machine does neither).
    scene.cycles.use_denoising = True
    assert "merged exactly, then denoised once." in submit.confirmation_text(bpy.context, this_frame=True)
    scene.cycles.use_denoising = False
    try:
        text = submit.confirmation_text(bpy.context, this_frame=True)
        assert "merged exactly. Adaptive sampling" in text and "denois" not in text, text
        assert submit.after_merge_steps(scene) == (False, False)
    finally:
        scene.cycles.use_denoising = True


def test_the_panel_log_is_for_people(module):
    job_view = module.addon.job_view
    view = job_view.view()
    view.job_id = "20261125-000000-abcdef"
    event = module.cloud.job.events.LogLines(
        view.job_id,
        (
            "Fra:1 Mem:12.00M | Sample 3/8",
            'CLOUDRENDER {"event": "frame_done", "frame": 1, "seconds": 0.01}',
            "[cloud-render 06:53:57] frame 1 uploaded (2.4 kB) as frames/0001.png",
            "[cloud-render] Machine i-0abc requested (on-demand).",
        ),
    )
    job_view.apply_event(event)
    assert view.log_tail.splitlines() == [
        "06:53:57 frame 1 uploaded (2.4 kB) as frames/0001.png",
        "Machine i-0abc requested (on-demand).",
    ]
    assert len(job_view.log_lines(view.job_id)) == 4  # the full log keeps everything


def test_a_failure_before_any_frame_shows_no_live_rows_or_result(module):
    view = module.addon.job_view.view()
    view.job_id, view.state, view.message = "20261125-000000-abcdef", "failed", "No quota."
    view.action, view.error_code = "Request quota increase, or choose a smaller machine type.", "no_quota"
    view.frames_total, view.frames_done, view.log_tail = 6, 0, ""
    labels, operators = draw(module.panels.render_panel.CLOUDRENDER_PT_job)
    assert not any(text.startswith(("Elapsed", "Cost so far", "0/6 frames")) for text in labels)
    assert "cloud_render.request_quota" in operators and "cloud_render.cancel" not in operators


def test_estimate_lines_price_first_still_feed_the_confirmation(module):
    submit = module.addon.submit
    bpy.context.scene.cloud_render.instance_type = "g4dn.xlarge"
    estimated(
        module,
        "g4dn.xlarge",
        ("g4dn.xlarge", 58.0, 0.04, 240),
        ("c6i.2xlarge", 3.1, 0.02, 240),
        cheapest="c6i.2xlarge",
        fastest="c6i.2xlarge",
    )
    try:
        assert submit.measured_seconds_per_frame(module.addon.settings.snapshot(bpy.context.scene)) == 58.0
        text = submit.confirmation_text(bpy.context)
        assert "Estimate from a test render: g4dn.xlarge [chosen], ~58 s/frame ($0.02-$0.06)" in text
        assert "$0.04, 4 min for the job" in text
        labels, _ = draw(module.panels.render_panel.CLOUDRENDER_PT_main)
        assert "$0.04, 4 min: g4dn.xlarge [chosen], ~58 s/frame ($0.02-$0.06)" in " ".join(labels)
    finally:
        module.addon.panel_results.forget()


def test_waiting_for_you_puts_the_answer_under_the_question(module):
    """The real window showed Go On / Stop Here below six log lines, off the default editor."""
    view = module.addon.job_view.view()
    view.job_id, view.state = "20261125-000000-abcdef", "quoted"
    view.message, view.action = "The whole job would cost about $2.53 (cap $0.25). Go on?", ""
    view.frames_total, view.frames_done = 12000, 3
    view.log_tail = "\n".join(f"log line {n}" for n in range(6))
    try:
        labels, operators = draw(module.panels.render_panel.CLOUDRENDER_PT_job)
    finally:
        view.log_tail = ""
    assert operators.count("cloud_render.answer_quote") == 2
    assert operators.index("cloud_render.answer_quote") < operators.index("cloud_render.open_log")
    assert labels[0].startswith("Waiting for you: The whole job")


def test_machine_rows_wrap_beside_their_log_buttons(module):
    """Three machines in the real window read "Machine 0: render...rame (on-demand)"."""
    text_wrap = module.panels.text_wrap
    view = module.addon.job_view.view()
    view.job_id, view.state, view.message, view.action = "20261125-000000-abcdef", "rendering", "", ""
    view.frames_total, view.frames_done = 12, 3
    view.machines_text = "\n".join(
        f"Machine {n}: rendering, frame {n + 4}, 1.5 s/frame (on-demand)" for n in range(3)
    )
    try:
        labels, operators = draw(module.panels.render_panel.CLOUDRENDER_PT_job)
    finally:
        view.machines_text = ""
    shown = " ".join(labels)
    assert all(f"Machine {n}: rendering, frame {n + 4}," in shown for n in range(3))
    assert shown.count("(on-demand)") == 3
    room = int(
        (text_wrap.DEFAULT_WIDTH_PX - text_wrap.MARGIN_PX)
        * module.panels.render_panel.MACHINE_ROW
        / text_wrap.CHAR_PX
    )
    assert all(len(text) <= room for text in labels if "Machine" in text or "on-demand" in text)
    assert operators.count("cloud_render.open_log") == 4  # one per machine, and the job's


def test_machine_text_is_shown_as_text_in_the_panel_and_the_full_log(module):
    """Words that reach the panel however they were made (an add-on line quoting a machine, a
    machine's row, a stage message, a device): bidirectional, zero-width and control characters
    are shown as <U+XXXX> or removed, in the panel's labels and in the full log's text."""
    events = module.cloud.job.events
    job_view = module.addon.job_view
    view = job_view.view()
    job_id = view.job_id = "20261125-000000-abcdef"
    view.state = "rendering"
    hostile = "error: invoice_\u202egnp.exe\u202c\u200b \x1b[31mred\x07 \ud800"
    try:
        for event in (
            events.LogLines(job_id, (f"[cloud-render] {hostile}", hostile)),
            events.MachinesUpdate(job_id, (f"Machine 0: {hostile}",), 0.0),
            events.StageChanged(job_id, "rendering", f"frame 1 {hostile}"),
            events.MachineStatus(job_id, 1, None, None, "GPU \u202eA10G", 1.0, 3),
        ):
            job_view.apply_event(event)
        labels, _ = draw(module.panels.render_panel.CLOUDRENDER_PT_job)
        text = job_view.fill_log_text(job_id).as_string()
        shown = [*labels, text, view.machines_text, view.log_tail, view.message, view.device]
        assert not [s for s in shown if any(c in s for c in "\u202e\u202c\u200b\x1b\x07\ud800")], shown
        assert "invoice_<U+202E>gnp.exe<U+202C><U+200B> red <U+D800>" in text
        assert "invoice_<U+202E>gnp.exe" in view.log_tail and "invoice_<U+202E>" in view.machines_text
        assert view.device == "GPU <U+202E>A10G"
    finally:
        view.job_id = view.log_tail = view.machines_text = view.device = ""
        bpy.data.texts.remove(bpy.data.texts[job_view.image_name(job_id)])


def test_words_keep_their_width_and_say_what_they_mean(module, tmp_path):
    """Issue 26 item 8, as the real window showed it at the default sidebar width."""
    room = half_room(module)
    view = module.addon.job_view.view()
    view.job_id, view.state, view.message = "20261125-000000-abcdef", "rendering", ""
    view.frames_total, view.frames_done, view.current_frame = 24, 10, 11
    view.sample, view.samples_total, view.cost_so_far = 1, 2500, 0.02
    labels, _ = draw(module.panels.render_panel.CLOUDRENDER_PT_job)
    assert "Frame 11, sample 1/2500" in labels and "Frame 11, sample 1/2500" not in HALVES
    assert all(len(text) <= room for text in HALVES), HALVES

    # The Jobs list's buttons: none cut ("Relaunch Missing...").
    record = module.cloud.job.records.JobRecord(
        **job_fields(tmp_path / "out", blend_name=bpy.data.filepath, frames=[1, 2], stage="done")
    )
    store = module.addon.pump.manager().store
    store.save(record)
    try:
        module.addon.jobs_list.refresh()
        _, operators = draw(module.panels.render_panel.CLOUDRENDER_PT_jobs)
        assert "cloud_render.relaunch_missing" in operators
        assert "Relaunch Missing Frames" not in HALVES
        assert all(len(text) <= room for text in HALVES), HALVES
    finally:
        store.delete(record.job_id)
        module.addon.jobs_list.refresh()

    # The preferences page does not send the artist to itself.
    prefs = module.addon.account.preferences()
    view.account_status = "No keys saved. Paste your access key in Preferences > Add-ons > Cloud Render, or choose 'AWS Profile'."
    try:
        labels, _ = draw(module.panels.preferences.CloudRenderPreferences, prefs)
    finally:
        view.account_status = ""
    text = " ".join(labels)
    assert "Paste your access key here, or choose 'AWS Profile'." in text
    assert "Preferences > Add-ons > Cloud Render" not in text

    # Finish In's 0 is explained; Forget Keys asks before it deletes.
    rna = bpy.context.scene.cloud_render.bl_rna.properties["finish_within_minutes"]
    assert "0: no deadline" in rna.description
    assert "invoke" in vars(module.operators.account.CLOUDRENDER_OT_forget_keys)


def test_the_job_page_button_says_until_when_and_not_once_expired(module, tmp_path):
    import time

    from tests.factories import job_fields

    records, store = module.cloud.job.records, module.addon.pump.manager().store
    view = module.addon.job_view.view()
    cases = {
        "20261207-000000-a0a0a1": (time.time() + 6 * 86400, True),
        "20261207-000000-a0a0a2": (time.time() - 60, False),
    }
    for job_id, (until, valid) in cases.items():
        fields = job_fields(tmp_path / "out", job_id=job_id, blend_name="/x.blend", frames=[1, 2])
        url = f"http://127.0.0.1:1/cloud-render-x/jobs/{job_id}/phone.html?X-Amz-Signature=0"
        store.save(records.JobRecord(**fields, page_url=url, page_expires=until))
        view.job_id, view.state, view.message, view.log_tail = job_id, "rendering", "", ""
        labels, operators = draw(module.panels.render_panel.CLOUDRENDER_PT_job)
        assert ("cloud_render.open_job_page" in operators) == valid
        assert ("cloud_render.copy_job_page_link" in operators) == valid
        if valid:  # to send it to a phone
            assert bpy.ops.cloud_render.copy_job_page_link(job_id=job_id) == {"FINISHED"}
            assert bpy.context.window_manager.clipboard in ("", url)  # the bpy module may have none
        shown = time.strftime("%a %d %b %H:%M", time.localtime(until))
        assert (f"Link valid until {shown}" in labels) == valid
        if not valid:  # expired: said, and the button would refuse without opening anything
            assert "The job's page link has expired." in " ".join(labels)
            assert bpy.ops.cloud_render.open_job_page(job_id=job_id) == {"CANCELLED"}
    # a job with no page yet (machines not started): no button; the operator refuses
    fields = job_fields(tmp_path / "out", job_id="20261207-000000-a0a0a3", blend_name="/x.blend", frames=[1])
    store.save(records.JobRecord(**fields))
    view.job_id = "20261207-000000-a0a0a3"
    assert "cloud_render.open_job_page" not in draw(module.panels.render_panel.CLOUDRENDER_PT_job)[1]
    assert bpy.ops.cloud_render.open_job_page(job_id=view.job_id) == {"CANCELLED"}
    # online access off: the button is greyed out (Blender's rule 7), with the reason
    bpy.context.preferences.system.use_online_access = False
    try:
        assert not bpy.ops.cloud_render.open_job_page.poll()
    finally:
        bpy.context.preferences.system.use_online_access = True


def test_the_job_page_link_shows_as_a_qr_code_a_phone_reads(module, tmp_path):
    """Issue 24 item 2: the QR button shows the link as a code a phone's camera reads (decoded
    here by zxing-cpp, a reader of its own, from the very pixels the panel draws), sharp at three
    pixels a module, and no Image data-block is added to the artist's file."""
    import time

    import numpy as np
    import zxingcpp

    from tests.factories import job_fields

    records, store = module.cloud.job.records, module.addon.pump.manager().store
    view = module.addon.job_view.view()
    qr_code = module.addon.qr_code
    job_id = "20261207-000000-b0b0b1"
    # a link signed with temporary keys: the longest there is (its session token alone is ~800)
    url = (
        f"https://cloud-render-x.s3.us-east-1.amazonaws.com/jobs/{job_id}/phone.html"
        "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=ASIAEXAMPLEEXAMPLE%2F20261207%2F"
        "us-east-1%2Fs3%2Faws4_request&X-Amz-Date=20261207T000000Z&X-Amz-Expires=43200"
        "&X-Amz-SignedHeaders=host&X-Amz-Security-Token="
        + "IQoJb3JpZ2luX2VjE" * 48
        + "&X-Amz-Signature="
        + "0f" * 32
    )
    fields = job_fields(tmp_path / "out", job_id=job_id, blend_name="/x.blend", frames=[1, 2])
    store.save(records.JobRecord(**fields, page_url=url, page_expires=time.time() + 3600))
    view.job_id, view.state, view.message, view.log_tail = job_id, "rendering", "", ""
    images = len(bpy.data.images)
    _labels, operators = draw(module.panels.render_panel.CLOUDRENDER_PT_job)
    assert "cloud_render.show_job_page_qr" in operators and ICONS == []  # hidden until asked

    assert bpy.ops.cloud_render.show_job_page_qr(job_id=job_id) == {"FINISHED"}
    draw(module.panels.render_panel.CLOUDRENDER_PT_job)
    [(icon_id, scale)] = ICONS
    pixels = qr_code.preview_pixels(job_id)
    assert pixels is not None
    height, width, _ = pixels.shape
    assert scale * 20 == height == width  # drawn at its own size: each module 3 pixels
    assert height % qr_code.MODULE_PX == 0
    gray = (pixels[::-1, :, 0] * 255).astype(np.uint8)  # top row first, as a camera sees it
    [read] = zxingcpp.read_barcodes(gray)
    assert read.text == url
    assert len(bpy.data.images) == images  # the artist's file gains nothing

    draw(module.panels.render_panel.CLOUDRENDER_PT_job)
    assert [(icon_id, scale)] == ICONS  # the same preview on every redraw
    assert bpy.ops.cloud_render.show_job_page_qr(job_id=job_id) == {"FINISHED"}  # hidden again
    draw(module.panels.render_panel.CLOUDRENDER_PT_job)
    assert ICONS == []
    # a job with no page yet: nothing to show
    assert bpy.ops.cloud_render.show_job_page_qr(job_id="20261207-000000-b0b0b2") == {"CANCELLED"}


def test_the_download_rate_is_shown_while_frames_come_down_and_the_total_at_the_end(module, tmp_path):
    """Issue 25 item 4: nothing before a frame came down; then how much and how fast, each in
    half a row whole; when the job ends, the result box says the total."""
    from tests.images import png

    room = half_room(module)
    events = module.cloud.job.events
    job_view = module.addon.job_view
    view = job_view.view()
    job_id = view.job_id = "20261125-000000-downld"
    view.state, view.message, view.action = "rendering", "", ""
    view.frames_total, view.frames_done = 24, 0
    frame = tmp_path / "frame_0001.png"
    frame.write_bytes(png(4, 4))
    try:
        labels, _ = draw(module.panels.render_panel.CLOUDRENDER_PT_job)
        assert not [text for text in labels if "Download" in text], labels

        job_view.apply_event(
            events.FrameArrived(
                job_id,
                1,
                str(frame),
                1,
                24,
                frames_downloaded=3,
                bytes_downloaded=41_200_000,
                download_rate=12_345_678.0,
            )
        )
        assert view.frames_downloaded == 3 and round(view.downloaded_mb) == 41
        labels, _ = draw(module.panels.render_panel.CLOUDRENDER_PT_job)
        assert "Downloaded 41 MB" in HALVES and "Download 12.3 MB/s" in HALVES, labels
        assert all(len(text) <= room for text in HALVES), HALVES

        view.downloaded_mb, view.download_mb_s = 12_345.0, 123.4  # the widest they get
        draw(module.panels.render_panel.CLOUDRENDER_PT_job)
        assert "Downloaded 12.3 GB" in HALVES and "Download 123 MB/s" in HALVES
        assert all(len(text) <= room for text in HALVES), HALVES

        view.downloaded_mb, view.download_mb_s = 0.038, 0.046  # 4 small frames, seen as "0.0 MB"
        draw(module.panels.render_panel.CLOUDRENDER_PT_job)
        assert "Downloaded 38 kB" in HALVES and "Download 46 kB/s" in HALVES

        view.downloaded_mb, view.download_mb_s = 41.2, 12.3
        view.state, view.frames_done = "done", 3
        labels, _ = draw(module.panels.render_panel.CLOUDRENDER_PT_job)
        assert "Downloaded 3 frames, 41 MB, at 12.3 MB/s" in " ".join(labels), labels
    finally:
        view.job_id = view.state = ""
        view.frames_downloaded, view.downloaded_mb, view.download_mb_s = 0, 0.0, 0.0
        image = bpy.data.images.get(job_view.image_name(job_id))
        if image is not None:
            bpy.data.images.remove(image)
