"""Cloud Render: render the scene on an AWS GPU machine and bring the frames back."""

from . import operators, panels, properties, runtime

_modules = (properties, operators, panels)


def register() -> None:
    for module in _modules:
        module.register()
    runtime.register()


def unregister() -> None:
    runtime.unregister()
    for module in reversed(_modules):
        module.unregister()
