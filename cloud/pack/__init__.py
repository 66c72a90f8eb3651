"""Packing a scene with every dependency, and the preflight that says what would render wrong."""

# The images through which the add-on shows downloaded frames ("Cloud Render: <job-id>"):
# viewing aids, never packed with the next job (the packer and preflight skip them).
FRAMES_IMAGE_PREFIX = "Cloud Render: "
