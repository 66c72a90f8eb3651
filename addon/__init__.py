"""The Blender side's state and glue: settings, the main-thread pump, submit, re-attach, the
live job view, the jobs list, scene facts and the local estimate probe (see README.md)."""
