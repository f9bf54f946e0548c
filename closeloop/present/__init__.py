"""Formatting once: numbers, percentages, p-values, days, money, statuses, view rows, charts and
HTML templates of the schema models. The terminal, the HTML report and the dashboard all use it."""
