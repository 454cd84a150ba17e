"""Development-only HTTP routes (/dev/*): spean.app registers them only outside production, so a
production server has no such route at all (404), rather than a guard that could be got wrong."""
