"""Test accounts that exist on the staging shop (seeded by the backend team).

Passwords here are staging-only test passwords, never production credentials.
"""

DEFAULT_CUSTOMER = "alice"

USERS = {
    "alice": {
        "password": "Secret123!",
        "name": "Alice Example",
        "email": "alice@example.com",
        "locked": False,
    },
    "bob": {
        "password": "Hunter2024!",
        "name": "Bob Builder",
        "email": "bob@example.com",
        "locked": False,
    },
    "carol": {
        "password": "Locked123!",
        "name": "Carol Locked",
        "email": "carol@example.com",
        "locked": True,
    },
    "dave": {
        "password": "NoOrders99!",
        "name": "Dave Newcomer",
        "email": "dave@example.com",
        "locked": False,
    },
}
