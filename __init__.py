"""Cloud Render: render the scene on an AWS GPU machine and bring the frames back.

Submodules are imported in register(), not at import time: importing the package (as Blender
does before calling register, or a test runner walking the tree) has no side effects.
"""


def register() -> None:
    from . import operators, panels
    from .addon import log_texts, pump, reattach, settings

    for module in (settings, operators, panels):
        module.register()
    pump.register()
    reattach.register()
    log_texts.register()


def unregister() -> None:
    from . import operators, panels
    from .addon import log_texts, pump, qr_code, reattach, settings

    log_texts.unregister()
    qr_code.unregister()
    reattach.unregister()
    pump.unregister()
    for module in (panels, operators, settings):
        module.unregister()
