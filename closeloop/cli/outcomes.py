"""``closeloop outcomes``: the business outcomes a CFO accepts (revenue movements, NRR, GRR and
churn, expansion by source), the voice of the customer, adoption and the team's work.

Each outcome's command lives in its own module (``cli/outcomes_<name>.py``) and is registered on
:data:`outcomes_app` in ``cli/main.py``; every one takes ``--format table|json|csv`` and prints
the schema model its API route (``/api/outcomes/<name>``) returns.
"""

from __future__ import annotations

import typer

outcomes_app = typer.Typer(
    help="Business outcomes: revenue (MRR movements, NRR, GRR, churn, expansion by source), "
    "voice of the customer (NPS, CSAT, CES), adoption and the team. docs/metrics.md has every "
    "formula and switch.",
    no_args_is_help=True,
)
