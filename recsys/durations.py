"""Durations as people type them on a command line: ``60s``, ``2m``, ``1h``, or plain seconds."""

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Seconds in ``text`` (``60s``, ``2m``, ``1h``, ``1d`` or a plain number of seconds, as
    locust's ``-t`` takes them); a ValueError that quotes the text otherwise."""
    text = text.strip().lower()
    number, unit = (text[:-1], _UNITS[text[-1]]) if text and text[-1] in _UNITS else (text, 1.0)
    try:
        value = float(number) * unit
    except ValueError:
        raise ValueError(f"duration {text!r}: expected e.g. 60s, 2m or 90") from None
    if not value > 0 or value == float("inf"):
        raise ValueError(f"duration {text!r} must be positive")
    return value
