"""What generated datasets are made of: currencies, rate plans, roles, peers, names,
numbers, and the weights of statuses, billing types, hours and call targets."""

from __future__ import annotations

from typing import Any

# (code, value of one unit in the base currency, USD)
CURRENCIES: tuple[tuple[str, str], ...] = (
    ("USD", "1"),
    ("EUR", "1.08"),
    ("GBP", "1.27"),
    ("JPY", "0.0067"),
    ("CHF", "1.13"),
    ("AUD", "0.66"),
    ("CAD", "0.73"),
    ("SEK", "0.095"),
    ("NOK", "0.093"),
    ("DKK", "0.145"),
    ("PLN", "0.25"),
    ("CZK", "0.043"),
    ("BRL", "0.2"),
    ("INR", "0.012"),
    ("ZAR", "0.055"),
    ("MXN", "0.058"),
)

RATE_PLANS: tuple[dict[str, Any], ...] = (
    {"id": 1, "name": "Standard", "features": ["cdrs"]},
    {"id": 2, "name": "Premium", "features": ["cdrs", "recording"]},
    {"id": 3, "name": "Basic (no call records)", "features": ["voicemail"]},
    {"id": 4, "name": "Wholesale", "features": ["cdrs", "wholesale"]},
)
PLAN_NO_CDRS = 3

# Role kinds, by the suffix of the usernames that have them.
ROLES: tuple[dict[str, Any], ...] = (
    {"id": 1, "name": "Administrator", "privileges": ["cdrs", "archive"]},
    {"id": 2, "name": "CDR viewer", "privileges": ["cdrs"]},
    {"id": 3, "name": "Callshop operator", "privileges": ["callshop"]},
    {"id": 4, "name": "Callshop manager", "privileges": ["callshop", "archive"]},
    {"id": 5, "name": "Phone user", "privileges": ["voicemail"]},
)
ROLE_BY_KIND = {"admin": 1, "viewer": 2, "callshop": 3, "callshop-archive": 4, "phone": 5}

PEERS: tuple[str, ...] = (
    "Carrier A (UK)",
    "Carrier B (EU)",
    "Carrier C (US)",
    "Mobile interconnect",
    "Emergency services",
    "Toll-free provider",
    "Wholesale route 1",
    "Wholesale route 2",
)

LEAF_BILL_TYPES = (
    ("postpaid", 34),
    ("prepaid", 22),
    ("prepaid_calls", 10),
    ("prepaid_invoices", 9),
    ("external", 9),
    ("none", 6),
    ("callshop", 10),
)

STATUSES = (
    ("answer", 64),
    ("noanswer", 14),
    ("cancel", 9),
    ("busy", 7),
    ("congestion", 3),
    ("chanunavail", 3),
)

CALLER_NAMES = (
    "",
    "",
    "",
    "Reception",
    "ACME Sales",
    "JOHN SMITH",
    "jane doe",
    "José Ñúñez",
    "Zoë Ørsted",
    "ÉLODIE Durand",
    "élodie durand",
    "François Müller",
    "Søren Ærø",
    "Åsa Öberg",
    "Łukasz Żółć",
    "Ñandú Café",
    "İpek Işık",
    "Straße & Söhne GmbH",
    "ΟΔΥΣΣΕΑΣ Παπαδόπουλος",
    "Dvořák, Antonín",
    "mcDonald, Ronan",
    "O'Brien",
    "Þórr Eiríksson",
    "Émile ZOLA",
    "Ångström Lab",
    "Renée Lévesque",
    "Иван Петров",
    "山田太郎",
    "100% Pure_Water",
    "Unknown",
    "Anonymous",
    "Dr. Chloé Ó Súilleabháin",
)

NAME_WORDS_A = (
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Hooli",
    "Vandelay",
    "Ñandú",
    "Zürich",
    "Ørsted",
    "Café",
    "Björk",
    "Łódź",
    "Soylent",
    "Stark",
    "Wayne",
    "Cyberdyne",
    "Tyrell",
    "Gringotts",
    "Müller",
    "Crème",
)
NAME_WORDS_B = (
    "Telecom",
    "Networks",
    "Voice",
    "Systems",
    "Trading",
    "Consulting",
    "Hotel",
    "Bakery",
    "Dental",
    "Logistics",
    "Pharmacy",
    "Studio",
    "Garage",
    "Call Centre",
    "Téléphonie",
)
NAME_SUFFIXES = ("Ltd", "GmbH", "S.A.", "AB", "Sp. z o.o.", "Inc.", "S.à r.l.", "")

# (country code, digits after it)
COUNTRIES = (
    ("44", 10),
    ("33", 9),
    ("1", 10),
    ("49", 10),
    ("49", 11),
    ("81", 10),
    ("86", 11),
    ("61", 9),
    ("34", 9),
    ("39", 10),
    ("46", 9),
    ("91", 10),
    ("55", 11),
    ("353", 9),
    ("372", 7),
)
SHORT_NUMBERS = ("112", "999", "911", "118118", "100", "1571")
# Calls an hour, relatively, from midnight on.
HOUR_WEIGHT = (
    1, 1, 1, 1, 1, 2, 4, 8, 14, 18, 18, 16,  # 00:00 to 11:00
    12, 15, 17, 16, 13, 9, 6, 4, 3, 2, 1, 1,  # 12:00 to 23:00
)  # fmt: skip

TARGET_TYPES = (
    ("phone", 50),
    ("queue", 15),
    ("voicemail", 12),
    ("ivr", 10),
    ("huntgroup", 7),
    ("conference", 3),
    ("fax", 3),
)
