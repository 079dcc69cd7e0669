"""The writer agent: one spec in, one validated .robot text out. No Celery, no environment reads."""
