"""Which built-in pricing profile fits a GPU: the default follows the detected GPU, and a chosen profile that
names another GPU gets a warning (an H200 priced as a rented H100 is off by the difference in hourly rates).

Pure functions on names, so they are tested without hardware; the CLI detects the GPU and says what it chose.
"""

from __future__ import annotations

import re

# (pattern on the GPU's marketing name, built-in profile); the first match wins, so the more specific come first
_FAMILIES: tuple[tuple[str, str, str], ...] = (
    (r"\bH200\b", "H200", "h200-rental"),
    (r"\bH100\b", "H100", "h100-sxm-rental"),
    (r"\bA100\b", "A100", "a100-80gb-rental"),
    (r"\bL40S\b", "L40S", "l40s-rental"),
)


def gpu_family(name: str) -> str | None:
    """'NVIDIA H200' -> 'H200'; None for a GPU no built-in profile prices."""
    for pattern, family, _ in _FAMILIES:
        if re.search(pattern, name, re.IGNORECASE):
            return family
    return None


def pricing_for_gpu(name: str) -> str | None:
    """The built-in pricing profile for a detected GPU name, or None when none matches."""
    for pattern, _, profile in _FAMILIES:
        if re.search(pattern, name, re.IGNORECASE):
            return profile
    return None


def mismatch(profile_gpu: str, detected: str) -> str | None:
    """A one-line warning when a pricing profile's GPU is not the detected one (None when they agree, or when
    either is not a known family: nothing to compare)."""
    priced, found = gpu_family(profile_gpu), gpu_family(detected)
    if priced is None or found is None or priced == found:
        return None
    return f"the pricing profile is for {profile_gpu}, but the GPU is {detected}: $/M tokens use the wrong rates"
