"""Environment settings for the Acme Shop test suites.

Values can be overridden per pipeline with environment variables, e.g.
``SHOP_BASE_URL=https://qa2.acme-shop.example robot --pythonpath . tests``.
"""

import os

ENVIRONMENT = os.environ.get("SHOP_ENVIRONMENT", "staging")
BASE_URL = os.environ.get("SHOP_BASE_URL", "https://staging.acme-shop.example")
API_PREFIX = "/api"
API_TIMEOUT = "10 s"
CURRENCY = "EUR"

DEFAULT_ADDRESS = "Hauptstrasse 1, 10115 Berlin"
VALID_CARD = "4111111111111111"
DECLINED_CARD = "4000000000000002"
INVOICE_LIMIT = 500.00
