"""Runtime: device and precision, distributed processes, progress display, files replaced atomically,
the start-up clock."""
