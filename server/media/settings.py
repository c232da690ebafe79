"""Settings of the media relay (one frozen dataclass, as aiortc does for its parameters)."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiortc import RTCIceServer

from server.media.ice import IPNetwork, loopback_test_networks


@dataclass(frozen=True)
class RelaySettings:
    """How the relay talks ICE and how long it waits for a peer."""

    ice_servers: list[RTCIceServer] = field(default_factory=list)
    """The clinic's own STUN/TURN servers. Empty means host candidates only: aiortc's
    fallback to a public STUN server is never used, the list is always passed explicitly."""

    allowed_networks: tuple[IPNetwork, ...] = ()
    """Remote candidates outside these networks are dropped before aioice sees them.
    Empty allows none: a deployment lists what its clients' networks need."""

    gather_loopback: bool = False
    """Offer 127.0.0.1 as a host candidate (for a relay bound to loopback, in tests)."""

    negotiation_timeout_s: float = 10.0
    """Longest an SDP operation may take before the peer connection is given up."""

    flow_sample_s: float = 2.0
    """How often the relay looks whether each publication's allowed media still arrives
    (attendance minutes of audio and video; docs/media.md, "Media flow")."""

    talk_report_s: float = 5.0
    """How often the relay reports each participant's talk time (seconds of speech-level
    audio since the last report; docs/media.md, "Talk time")."""

    @classmethod
    def for_loopback(cls) -> RelaySettings:
        """A relay that runs a whole session on this machine (tests, `circle serve` on 127.0.0.1).

        It probes loopback and this machine's own interface addresses, never another host's.
        """
        return cls(allowed_networks=loopback_test_networks(), gather_loopback=True)
