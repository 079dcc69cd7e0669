"""robot-fleet's worker package, by role (tests/unit/test_layers.py keeps the direction):

worker/*.py       the contract shared with the producer (settings, spec, errors, keys, records,
                  redact, failpoints): imports only itself
worker/agent      the writer agent: the contract and small interfaces, no SDK, no Celery
worker/adapters   the edges where an SDK or a server is called, and `open_services`
worker/fleet      the Celery runtime: app, task, job execution, retry policy, leases
"""
