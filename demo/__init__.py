"""The end-to-end demo (``make demo``): the product's own processes, run as a hospital would.

It is the only code that drives both the badge and the gateway, so it lives outside both
and is not installed with them; run it from the checkout with ``python -m demo``.
"""

__all__ = ["run"]
