"""The fleet runtime: the Celery app and task, the per-process runtime, job execution, leases."""
