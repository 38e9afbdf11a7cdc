"""Cards: jinja2 templates rendered to Adaptive Cards 1.5 (Teams, console) and Block Kit (Slack).

No network, no chat SDK: data in (`cards.data`), JSON dicts out (`render`).
"""

from .render import CardError, Target, render

__all__ = ["CardError", "Target", "render"]
