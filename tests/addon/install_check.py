"""Install the built zip into a fresh bpy session like an artist would, then disable it.

Run as a script under any bpy interpreter (4.2 LTS, 5.0, 5.x): `python install_check.py ZIP`.
BLENDER_USER_RESOURCES must point at an empty directory before bpy is imported, so the
install goes to a throwaway user extensions repository. Prints one JSON report on stdout's
last line; the pytest side asserts on it.
"""

from __future__ import annotations

import json
import sys
import time

MODULE = "bl_ext.user_default.cloud_render"


def handler_counts(bpy) -> dict[str, int]:  # type: ignore[no-untyped-def]
    handlers = bpy.app.handlers
    return {
        name: len(getattr(handlers, name))
        for name in dir(handlers)
        if isinstance(getattr(handlers, name), list)
    }


def main(zip_path: str) -> dict[str, object]:
    import bpy

    report: dict[str, object] = {"blender": bpy.app.version_string, "python": sys.version.split()[0]}
    bpy.context.preferences.system.use_online_access = True
    before_handlers = handler_counts(bpy)
    result = bpy.ops.extensions.package_install_files(
        filepath=zip_path, repo="user_default", enable_on_install=True
    )
    report["install_result"] = sorted(result)
    module = sys.modules.get(MODULE)
    report["enabled"] = MODULE in bpy.context.preferences.addons and module is not None
    if module is None:
        return report

    classes = [*module.addon.settings.classes, *module.operators.classes, *module.panels.classes]
    report["classes"] = [cls.__name__ for cls in classes]
    report["registered_after_enable"] = [cls.__name__ for cls in classes if cls.is_registered]
    report["scene_prop"] = hasattr(bpy.types.Scene, "cloud_render")
    report["wm_prop"] = all(
        hasattr(bpy.types.WindowManager, name)
        for name in ("cloud_render_job", "cloud_render_jobs", "cloud_render_jobs_index")
    )
    report["timer_after_enable"] = bpy.app.timers.is_registered(module.addon.pump.drain_events)
    report["prefs_found"] = MODULE in bpy.context.preferences.addons and (
        bpy.context.preferences.addons[MODULE].preferences is not None
    )
    # The job side is imported ahead in a worker (not by a press, nor by creating the manager).
    wanted = [MODULE + ".cloud.job.manager", MODULE + ".cloud.pack.preflight"]
    deadline = time.monotonic() + 120
    while not all(name in sys.modules for name in wanted) and time.monotonic() < deadline:
        time.sleep(0.05)
    report["job_side_imported_ahead"] = all(name in sys.modules for name in wanted)
    report["manager_created"] = module.addon.pump.manager_exists()
    drain = module.addon.pump.drain_events
    imports = {}
    for name in (
        "boto3",
        "botocore",
        "s3transfer",
        "cryptography.fernet",
        "blender_asset_tracer.blendfile",
        "requests",
    ):
        try:
            imported = __import__(name, fromlist=["_"])
            imports[name] = str(imported.__file__)
        except Exception as exc:  # report, don't crash: the test prints what failed
            imports[name] = f"{type(exc).__name__}: {exc}"
    report["imports"] = imports
    bpy.context.scene.cloud_render.samples = 7  # settings work on a live scene
    report["scene_setting"] = bpy.context.scene.cloud_render.samples

    bpy.ops.preferences.addon_disable(module=MODULE)
    report["registered_after_disable"] = [cls.__name__ for cls in classes if cls.is_registered]
    report["scene_prop_after_disable"] = hasattr(bpy.types.Scene, "cloud_render")
    report["wm_prop_after_disable"] = MODULE in bpy.context.preferences.addons or any(
        hasattr(bpy.types.WindowManager, name)
        for name in ("cloud_render_job", "cloud_render_jobs", "cloud_render_jobs_index")
    )
    report["timer_after_disable"] = bpy.app.timers.is_registered(drain)
    report["leftover_types"] = [
        n for n in dir(bpy.types) if n.startswith("CLOUDRENDER_") or n.startswith("CloudRender")
    ]
    after = handler_counts(bpy)
    report["handlers_changed"] = {
        k: (before_handlers.get(k), v) for k, v in after.items() if before_handlers.get(k) != v
    }
    return report


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
