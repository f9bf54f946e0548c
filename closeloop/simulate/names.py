"""Word lists for plausible company and person names.

Domains use the reserved ``.example`` top-level domain (RFC 2606), so a simulated email address can
never belong to a real company, whatever SMTP server the messages end up at.
"""

from __future__ import annotations

COMPANY_FIRST_WORDS: tuple[str, ...] = (
    "Amber", "Apex", "Arbor", "Atlas", "Beacon", "Birch", "Blue", "Bold", "Bright", "Cedar",
    "Clear", "Cobalt", "Coral", "Crest", "Delta", "Ember", "Falcon", "Fern", "Granite", "Green",
    "Harbor", "Helix", "Indigo", "Iron", "Juniper", "Keystone", "Lumen", "Maple", "Meridian",
    "Nimbus", "Noble", "North", "Oak", "Orbit", "Pine", "Polar", "Prime", "Quartz", "Rapid",
    "Ridge", "River", "Sable", "Silver", "Solar", "Summit", "Swift", "Terra", "Vivid",
)  # fmt: skip

COMPANY_SECOND_WORDS: tuple[str, ...] = (
    "Analytics", "Bio", "Capital", "Cloud", "Data", "Dynamics", "Energy", "Foods", "Forge",
    "Health", "Insights", "Labs", "Logistics", "Media", "Metrics", "Motors", "Networks",
    "Partners", "Retail", "Robotics", "Software", "Solutions", "Studio", "Supply", "Systems",
    "Technologies", "Ventures", "Works",
)  # fmt: skip

COMPANY_SUFFIXES: tuple[str, ...] = ("", "Inc.", "Ltd", "GmbH", "Group", "Co")
COMPANY_SUFFIX_WEIGHTS: tuple[float, ...] = (0.5, 0.15, 0.1, 0.05, 0.1, 0.1)

FIRST_NAMES: tuple[str, ...] = (
    "Aisha", "Alex", "Amara", "Ana", "Arjun", "Ben", "Camille", "Carlos", "Chen", "Chloe",
    "Daniel", "Diego", "Elena", "Emma", "Fatima", "Felix", "Grace", "Hana", "Hugo", "Ines",
    "Isaac", "Jonas", "Julia", "Kenji", "Layla", "Leo", "Lina", "Lucas", "Maya", "Mei",
    "Mateo", "Nadia", "Noah", "Nora", "Omar", "Priya", "Rafael", "Rosa", "Sam", "Sara",
    "Sofia", "Tariq", "Theo", "Uma", "Victor", "Yara", "Yusuf", "Zoe",
)  # fmt: skip

LAST_NAMES: tuple[str, ...] = (
    "Adeyemi", "Almeida", "Andersson", "Bauer", "Becker", "Brown", "Chen", "Costa", "Dubois",
    "Evans", "Fischer", "Garcia", "Haddad", "Hansen", "Ito", "Jensen", "Kaur", "Kim", "Kowalski",
    "Larsen", "Lee", "Lopez", "Martin", "Meyer", "Moreau", "Mueller", "Nakamura", "Nguyen",
    "Novak", "Okafor", "Olsen", "Patel", "Petrov", "Rossi", "Santos", "Schmidt", "Silva",
    "Singh", "Smith", "Suzuki", "Tanaka", "Taylor", "Wang", "Weber", "Williams", "Wilson",
    "Yilmaz",
)  # fmt: skip

INDUSTRIES: tuple[str, ...] = (
    "software", "financial_services", "healthcare", "retail", "manufacturing", "education",
    "media", "logistics", "professional_services",
)  # fmt: skip
INDUSTRY_WEIGHTS: tuple[float, ...] = (0.24, 0.13, 0.11, 0.11, 0.1, 0.08, 0.08, 0.07, 0.08)

REGIONS: tuple[str, ...] = ("north_america", "emea", "apac", "latam")
REGION_WEIGHTS: tuple[float, ...] = (0.45, 0.32, 0.15, 0.08)

LEAD_SOURCES: tuple[str, ...] = ("inbound", "outbound", "partner", "product_led")

INTEGRATIONS: tuple[str, ...] = (
    "salesforce", "hubspot", "slack", "zendesk", "snowflake", "jira", "stripe", "segment",
)  # fmt: skip

PERSON_ROLES: tuple[str, ...] = ("admin", "member", "viewer")
PERSON_ROLE_WEIGHTS: tuple[float, ...] = (0.08, 0.72, 0.2)  # for everyone but the first admin


def slug(text: str) -> str:
    """Lower-case letters and digits only: ``"Blue Labs Inc."`` -> ``"bluelabsinc"``."""
    return "".join(character for character in text.lower() if character.isalnum())
