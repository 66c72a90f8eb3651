"""AWS side of Cloud Render: pure Python, never imports bpy, testable without Blender."""
