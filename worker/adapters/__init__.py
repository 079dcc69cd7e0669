"""Adapters: the edges where an SDK or a server is called (Redis job store, model client, MCP
session, fleet-wide rate limiter, Celery broker); their exceptions are translated here, once."""
