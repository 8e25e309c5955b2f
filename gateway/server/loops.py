"""Requests that went round between gateways too often are refused (providers/hops.py)."""

from __future__ import annotations

from typing import Mapping

from ..errors import GatewayError
from ..providers.hops import HOP_HEADER, MAX_HOPS, enter, parse_hops


def check_hops(headers: Mapping[str, str]) -> None:
    """Refuse a request that already passed through MAX_HOPS gateways (508 Loop Detected);
    otherwise remember its count for the upstream requests it causes."""
    hops = parse_hops(headers.get(HOP_HEADER))
    if hops is None:
        raise GatewayError(400, f"{HOP_HEADER} must be a whole number (the gateways this "
                           "request has passed through)", code="invalid_header", param=HOP_HEADER)
    if hops >= MAX_HOPS:
        raise GatewayError(
            508, f"loop detected: this request has passed through {hops} gateways "
            f"({HOP_HEADER}: {hops}; at most {MAX_HOPS - 1} may come before this one). A "
            "provider's base_url probably points back at a gateway: fix it",
            type="loop_detected_error", code="loop_detected", param=HOP_HEADER)
    enter(hops)
