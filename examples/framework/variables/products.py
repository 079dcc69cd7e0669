"""Catalog and coupon seed data of the staging shop."""

CATEGORIES = ["books", "electronics", "home", "toys"]

PRODUCTS = {
    "BK-1001": {"sku": "BK-1001", "name": "Clean Code", "category": "books", "price": 32.50, "stock": 12},
    "BK-1002": {
        "sku": "BK-1002",
        "name": "The Pragmatic Programmer",
        "category": "books",
        "price": 41.90,
        "stock": 5,
    },
    "EL-2001": {
        "sku": "EL-2001",
        "name": "USB-C Charger 65W",
        "category": "electronics",
        "price": 29.99,
        "stock": 40,
    },
    "EL-2002": {
        "sku": "EL-2002",
        "name": "Noise Cancelling Headphones",
        "category": "electronics",
        "price": 199.00,
        "stock": 3,
    },
    "EL-2003": {
        "sku": "EL-2003",
        "name": "4K Monitor 27 Inch",
        "category": "electronics",
        "price": 349.00,
        "stock": 6,
    },
    "HM-3001": {"sku": "HM-3001", "name": "Espresso Cup Set", "category": "home", "price": 18.75, "stock": 25},
    "HM-3002": {"sku": "HM-3002", "name": "Cast Iron Skillet", "category": "home", "price": 54.00, "stock": 0},
    "TY-4001": {"sku": "TY-4001", "name": "Wooden Train Set", "category": "toys", "price": 39.95, "stock": 8},
}

# code -> discount in percent and last valid day (ISO date)
COUPONS = {
    "WELCOME10": {"percent": 10, "expires": "2099-12-31"},
    "SPRING25": {"percent": 25, "expires": "2099-06-30"},
    "WINTER20": {"percent": 20, "expires": "2020-03-01"},
}
