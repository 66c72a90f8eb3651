"""A job's life: its record, the thread that packs, uploads, launches and follows it, and the
typed events it sends to Blender's main thread."""
