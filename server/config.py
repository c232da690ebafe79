"""Settings: sane one-box defaults, overridable from `CIRCLE_*` environment variables and CLI.

`circle serve` with no flags runs on 127.0.0.1:8080 with SQLite in ./circle-data; every
production knob (PostgreSQL, Redis, TURN, public URL) is a setting, never a code change.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from server.clock import WallClock


class Settings(BaseSettings):
    """Everything the server reads at start (see deploy/circle.env.example)."""

    model_config = SettingsConfigDict(env_prefix="CIRCLE_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    data_dir: Path = Path("circle-data")
    database_url: str | None = None
    """Default: SQLite file `circle.db` in the data dir."""
    keys_file: Path | None = None
    """Default: `keys.json` in the data dir. Back it up separately from the database."""
    checkpoint_file: Path | None = None
    """Signed checkpoints of every stream's head, kept outside the database so that `circle
    verify` sees a database restored from an older copy or a stream deleted whole. Default:
    `checkpoints.json` beside the keys file; with CIRCLE_REDIS_URL (several nodes, who may
    share a keys directory) `checkpoints-<node id>.json` there, one file per node."""
    checkpoint_copy: Path | None = None
    """A second copy of the checkpoints, written with the first: put it on another disk, so
    that one lost or restored disk does not take the evidence with it. Default: none."""
    public_url: str | None = None
    """Base of join links; default http://host:port."""
    clinic_timezone: str = "UTC"
    """Decides the service date of a session (billing); times are always stored in UTC."""
    reconnect_grace_s: int = Field(60, ge=1, le=3600)
    redis_url: str | None = None
    """Nodes sharing this Redis, the database and the keys file form one clinic; unset:
    one node, with leases and the bus in memory."""
    redis_prefix: str = "circle:"
    """Prefix of every Redis key (two clinics may share one Redis with different ones)."""
    node_id: str | None = None
    """This node's name in the clinic; default host:port. Unique among running nodes."""
    lease_ttl_s: float = Field(6.0, ge=1.0, le=60.0)
    """How long a dead node's sessions stay unowned at most (renewed every third of it)."""
    log_level: str = "INFO"
    media: bool = True
    """Run the media relay (aiortc); false: signaling only."""
    media_workers: int | None = Field(None, ge=0, le=256)
    """Relay worker processes; default one per core; 0 runs the relay in the server's own
    event loop (tests, tiny installs)."""
    ice_servers: Annotated[list[dict[str, Any]], NoDecode] = Field(default_factory=list)
    """JSON list of RTCIceServer dicts; empty means host candidates only (never public STUN)."""
    allowed_candidate_networks: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Remote ICE candidate ranges the relay may probe; empty: loopback and own addresses
    when bound to loopback, otherwise none but what TURN relays."""
    events_per_second: float = 20.0
    events_burst: float = 40.0
    clock_offset_s: float = Field(0.0, ge=-10 * 366 * 86400, le=10 * 366 * 86400)
    """Seconds added to the machine's clock: for testing a schedule a year ahead or behind.
    Leave at 0 in production (the server logs a warning when it is not)."""

    @field_validator("ice_servers", mode="before")
    @classmethod
    def _json_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return json.loads(value) if value.strip() else []
        return value

    @field_validator("allowed_candidate_networks", mode="before")
    @classmethod
    def _csv_networks(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        for network in value:
            ipaddress.ip_network(network, strict=False)
        return value

    @field_validator("clinic_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (KeyError, ValueError):
            raise ValueError(f"unknown timezone {value!r} (use e.g. America/Chicago)") from None
        return value

    @model_validator(mode="after")
    def _two_checkpoint_files(self) -> Settings:
        if self.checkpoint_copy is not None and (
            self.checkpoint_copy.resolve() == self.checkpoint_path.resolve()
        ):
            raise ValueError("CIRCLE_CHECKPOINT_COPY must name another file than the checkpoints")
        return self

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'circle.db'}"

    @property
    def keys_path(self) -> Path:
        return self.keys_file or self.data_dir / "keys.json"

    @property
    def checkpoint_path(self) -> Path:
        """Where this node writes its checkpoints (see `checkpoint_file`)."""
        if self.checkpoint_file is not None:
            return self.checkpoint_file
        if self.redis_url is None:
            return self.keys_path.parent / "checkpoints.json"
        node = re.sub(r"[^A-Za-z0-9._-]", "_", self.node_name)
        return self.keys_path.parent / f"checkpoints-{node}.json"

    @property
    def checkpoint_paths(self) -> list[Path]:
        """The checkpoint file and its copy, if one is set: every file the server writes."""
        copy = [] if self.checkpoint_copy is None else [self.checkpoint_copy]
        return [self.checkpoint_path, *copy]

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def node_name(self) -> str:
        return self.node_id or f"{self.host}:{self.port}"

    @property
    def media_worker_count(self) -> int:
        """One per core this process may run on (its affinity mask, not the host's count)."""
        if self.media_workers is None:
            return len(os.sched_getaffinity(0)) or 1
        return self.media_workers

    @property
    def clock(self) -> WallClock:
        return WallClock(self.clock_offset_s)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.clinic_timezone)
