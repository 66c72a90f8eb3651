"""Cloud Render: render the scene on an AWS GPU machine and bring the frames back.

Submodules are imported in register(), not at import time: importing the package (as Blender
does before calling register, or a test runner walking the tree) has no side effects.
"""


def register() -> None:
    from . import operators, panels, properties, reattach, runtime

    for module in (properties, operators, panels):
        module.register()
    runtime.register()
    reattach.register()


def unregister() -> None:
    from . import operators, panels, properties, reattach, runtime

    reattach.unregister()
    runtime.unregister()
    for module in (panels, operators, properties):
        module.unregister()
