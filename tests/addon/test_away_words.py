"""The Current Job panel says what becomes of the job if Blender, or the computer, is closed
(issue 24, item 3): the upload needs this computer; machines that run stop themselves at the end
or at their caps, and the file opened again fetches the frames."""

from __future__ import annotations

from dev import addon_harness as harness
from tests.factories import job_fields

from .test_panels_draw import draw


def words(module, stage: str, **fields) -> str:  # type: ignore[no-untyped-def]
    record = module.cloud.job.records.JobRecord(**job_fields("/renders", stage=stage, **fields))
    return str(module.addon.away_words.away_text(record, stage))


def test_each_stage_says_what_closing_blender_does(installed):
    module = harness.addon()
    for stage in ("packing", "uploading"):
        assert words(module, stage) == (
            "Keep Blender open until the upload ends: the scene goes up from this computer."
        )
    one = "the machine renders on and stops itself when the frames are done, at the $5.00 cap or after 2 h"
    for stage in ("starting", "installing", "rendering"):
        assert words(module, stage) == (
            f"You may close Blender and this computer: {one}. Open this file again to fetch the frames."
        )
    assert words(module, "rendering", machines=4, max_cost=20.0) == (
        "You may close Blender and this computer: the 4 machines render on; each stops itself when the "
        "frames are done, at $5.00 (its share of the $20.00 cap) or after 2 h. Open this file again to "
        "fetch the frames."
    )
    assert "when the image is done" in words(module, "rendering", machines=3, cloud_engine="still")
    assert words(module, "quoted") == (
        "If Blender is closed now, the machine waits 20 min for Go On, then stops after its scout frames."
    )
    assert words(module, "downloading") == (
        "The machines have ended. If Blender is closed now, open this file again to fetch the frames."
    )
    for stage in ("done", "failed", "cancelled", "interrupted", "capped"):
        assert words(module, stage) == ""


def test_the_current_job_panel_says_it_under_the_progress(installed, tmp_path):
    module = harness.addon()
    manager = module.addon.pump.manager()
    record = module.cloud.job.records.JobRecord(**job_fields(tmp_path, stage="rendering", frames=[1, 2]))
    manager.store.save(record)
    view = module.addon.job_view.view()
    # Every figure the live grid draws is this job's: the view outlives the test before it.
    view.job_id, view.state, view.frames_total, view.frames_done = record.job_id, "rendering", 2, 0
    try:
        labels, _operators = draw(module.panels.render_panel.CLOUDRENDER_PT_job)
        said = " ".join(labels)
        assert "You may close Blender and this computer: the machine renders on" in said
        assert said.index("Elapsed ") < said.index("You may close Blender")  # under the progress
        view.state = "done"
        labels, _operators = draw(module.panels.render_panel.CLOUDRENDER_PT_job)
        assert "close Blender" not in " ".join(labels)
    finally:
        view.job_id = view.state = ""
        manager.store.delete(record.job_id)
        module.addon.job_view.forget()
