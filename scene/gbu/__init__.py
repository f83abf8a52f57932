"""The GHS built-up (GBU) products made from a scene's built-up probability (BUFRAC and after)."""
