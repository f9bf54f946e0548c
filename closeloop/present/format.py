"""Numbers as people read them, defined once for the terminal, the HTML report and the dashboard.

Every formatter takes ``None`` or a non-finite number (an estimate that does not exist) and shows
an em dash. Intervals are ``(lower, upper)`` pairs of such numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeGuard

MISSING = "—"

# One colour per status, for every surface (Rich style names; the HTML maps them to classes).
STATUS_STYLE = {
    "positive": "green",
    "negative": "red",
    "inconclusive": "yellow",
    "insufficient_data": "yellow",
}
VERDICT_STYLE = {"ship": "green", "stop": "red", "keep_running": "blue", "review": "yellow"}
GUARD_STYLE = {"ok": "green", "harmed": "red", "unknown": "dim"}
SEVERITY_STYLE = {"error": "red", "warning": "yellow"}
ARM_PALETTE = ("#9ca3af", "#2563eb", "#16a34a", "#dc2626", "#9333ea", "#ea580c", "#0891b2")

Bounds = Sequence[float | None] | None

CURRENCY_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "INR": "₹"}


def ok(value: float | None) -> TypeGuard[float]:
    """Whether ``value`` is a number to show (not None, NaN or infinite)."""
    return value is not None and math.isfinite(value)


def _pair(interval: Bounds) -> tuple[float, float] | None:
    if interval is None or len(interval) != 2:
        return None
    lower, upper = interval
    if ok(lower) and ok(upper):
        return lower, upper
    return None


def pct(value: float | None, digits: int = 1) -> str:
    """A share as a percentage: 0.123 -> "12.3%"."""
    return f"{value:.{digits}%}" if ok(value) else MISSING


def pp(value: float | None) -> str:
    """A difference of shares in percentage points: 0.05 -> "+5.0 pp"."""
    return f"{value * 100:+.1f} pp" if ok(value) else MISSING


def pp_ci(interval: Bounds) -> str:
    pair = _pair(interval)
    return f"[{pair[0] * 100:+.1f}, {pair[1] * 100:+.1f}]" if pair else MISSING


def pval(value: float | None) -> str:
    """A p-value: four decimals, or "< 0.0001"."""
    if not ok(value):
        return MISSING
    return "< 0.0001" if value < 1e-4 else f"{value:.4f}"


def days(value: float | None) -> str:
    """A signed number of days: "+3.2 d"."""
    return f"{value:+.1f} d" if ok(value) else MISSING


def days_ci(interval: Bounds) -> str:
    pair = _pair(interval)
    return f"[{days(pair[0])}, {days(pair[1])}]" if pair else MISSING


def num(value: float | None, digits: int = 1) -> str:
    return f"{value:.{digits}f}" if ok(value) else MISSING


def num_ci(interval: Bounds) -> str:
    pair = _pair(interval)
    return f"[{num(pair[0])}, {num(pair[1])}]" if pair else MISSING


def count(value: int | None) -> str:
    """A count with thousands separators: 12345 -> "12,345"."""
    return f"{value:,}" if value is not None else MISSING


def symbol(currency: str | None) -> str:
    """The sign to write before an amount: "$" for USD (the default), else the code and a space."""
    if not currency:
        return ""
    return CURRENCY_SYMBOLS.get(currency.upper(), f"{currency.upper()} ")


def money(value: float | None, currency: str | None = None, *, signed: bool = True) -> str:
    """An amount in whole units, signed by default: +1,234 or +$1,234."""
    if not ok(value):
        return MISSING
    sign = ("+" if value >= 0 else "-") if signed else ("-" if value < 0 else "")
    return f"{sign}{symbol(currency)}{abs(value):,.0f}"


def money_ci(interval: Bounds, currency: str | None = None) -> str:
    pair = _pair(interval)
    return f"[{money(pair[0], currency)}, {money(pair[1], currency)}]" if pair else MISSING


def compact_money(value: float, currency: str | None = None) -> str:
    """A signed amount, compact: +41k, -1.2M, +950 (with the currency's sign when given)."""
    sign = "+" if value >= 0 else "-"
    amount = abs(value)
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if amount >= limit:
            scaled = amount / limit
            return f"{sign}{symbol(currency)}{scaled:.{0 if scaled >= 100 else 1}f}{suffix}"
    return f"{sign}{symbol(currency)}{amount:,.0f}"


def level(alpha: float) -> str:
    """A confidence level for a header: 0.025 -> "97.5%"."""
    return f"{(1 - alpha) * 100:g}%"


def status_text(status: str) -> str:
    """A status in words: "insufficient_data" -> "insufficient data"."""
    return status.replace("_", " ")
