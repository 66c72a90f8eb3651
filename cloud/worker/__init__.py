"""What runs on the render machine: the boot script (user-data) and the supervisor (stdlib only).

`WORKER_FILES` lists the files the add-on uploads for each job and the boot script downloads
next to each other on the machine: machine file name -> path relative to the `cloud` package.
"""

WORKER_FILES = {
    "supervisor.py": "worker/supervisor.py",
    "transport.py": "worker/transport.py",
    "render_frames.py": "../render_scripts/render_frames.py",
    "blender_launcher.py": "../render_scripts/blender_launcher.py",
    "blender_logs.py": "logs.py",
}
