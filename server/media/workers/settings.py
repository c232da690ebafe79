"""What a media worker is started with: the relay's settings in a form that crosses `exec`."""

from __future__ import annotations

import ipaddress
from typing import Any

from aiortc import RTCIceServer
from pydantic import BaseModel, ConfigDict

from server.media.settings import RelaySettings


class WorkerSettings(BaseModel):
    """JSON on the worker's command line (no secrets beyond the clinic's TURN config)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ice_servers: list[dict[str, Any]]
    allowed_networks: list[str]
    gather_loopback: bool
    negotiation_timeout_s: float
    log_level: str = "INFO"
    flow_sample_s: float = 2.0

    @classmethod
    def of(cls, relay: RelaySettings, log_level: str = "INFO") -> WorkerSettings:
        return cls(
            ice_servers=[{k: v for k, v in vars(s).items() if v is not None}
                         for s in relay.ice_servers],
            allowed_networks=[str(n) for n in relay.allowed_networks],
            gather_loopback=relay.gather_loopback,
            negotiation_timeout_s=relay.negotiation_timeout_s,
            log_level=log_level,
            flow_sample_s=relay.flow_sample_s,
        )

    def relay_settings(self) -> RelaySettings:
        return RelaySettings(
            ice_servers=[RTCIceServer(**s) for s in self.ice_servers],
            allowed_networks=tuple(ipaddress.ip_network(n) for n in self.allowed_networks),
            gather_loopback=self.gather_loopback,
            negotiation_timeout_s=self.negotiation_timeout_s,
            flow_sample_s=self.flow_sample_s,
        )
