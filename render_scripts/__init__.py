"""Scripts that run inside Blender on the render machine (they import bpy, so they live
outside cloud/). The add-on uploads them with the worker; nothing in the add-on imports them."""
