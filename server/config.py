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

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from server.clock import WallClock
from server.turn import parse_turn_url


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
    late_after_minutes: float = Field(10, ge=0, le=240)
    """Attendance status `late`: first admitted more than this after the scheduled start."""
    left_early_minutes: float = Field(10, ge=0, le=240)
    """Attendance status `left_early`: the last presence ended more than this before the
    session's end (or its scheduled end, if earlier). Rules: docs/records.md."""
    video_modality_share: float = Field(0.5, ge=0, le=1)
    """Attendance `modality` is `audio-video` when video flowed for at least this share of
    the participant's minutes present (else `audio-only` if audio flowed). docs/records.md."""
    iop_daily_minimum_hours: float | None = Field(3, ge=0, le=24)
    """Program minimums for totals (`meets_minimum`); empty or `none`: no minimum."""
    iop_weekly_minimum_hours: float | None = Field(9, ge=0, le=168)
    php_daily_minimum_hours: float | None = Field(3, ge=0, le=24)
    php_weekly_minimum_hours: float | None = Field(20, ge=0, le=168)
    op_daily_minimum_hours: float | None = Field(None, ge=0, le=24)
    op_weekly_minimum_hours: float | None = Field(None, ge=0, le=168)
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
    media_flow_sample_s: float = Field(2.0, ge=0.1, le=60)
    """How often the relay samples whether each participant's audio and video flow (the
    minutes of media attendance counts; a flow's ends are dated to within this)."""
    ice_servers: Annotated[list[dict[str, Any]], NoDecode] = Field(default_factory=list)
    """JSON list of RTCIceServer dicts; empty means host candidates only (never public STUN)."""
    allowed_candidate_networks: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Remote ICE candidate ranges the relay may probe; empty: loopback and own addresses
    when bound to loopback, otherwise none but what TURN relays."""
    turn_secret: SecretStr | None = None
    """coturn's `static-auth-secret` (`use-auth-secret`): with CIRCLE_TURN_URLS, every
    participant's `config` carries TURN credentials minted from it (server/turn.py)."""
    turn_urls: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Comma-separated turn:/turns: URLs of the clinic's TURN server, handed to clients with
    their credentials (turn:turn.example.org:3478?transport=udp,turns:turn.example.org)."""
    e2ee_default: bool = False
    """New sessions are end-to-end encrypted unless created with `"e2ee": false` (browsers
    without encoded transforms, and the Python client, cannot join those)."""
    turn_ttl_s: int = Field(86400, ge=60, le=7 * 86400)
    """How long minted TURN credentials stay valid. Longer than the longest session: coturn
    ends an allocation whose credentials expired at its next refresh (a reconnect mints new
    ones)."""
    web_dir: Path | None = None
    """The built browser app (index.html, assets/). Default: the app packaged with the
    server, or client/web/dist in a source checkout (server/webapp.py)."""
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

    @field_validator("turn_secret", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("turn_urls", mode="before")
    @classmethod
    def _csv_turn_urls(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        for url in value:
            parse_turn_url(url)
        return value

    @field_validator("iop_daily_minimum_hours", "iop_weekly_minimum_hours",
                     "php_daily_minimum_hours", "php_weekly_minimum_hours",
                     "op_daily_minimum_hours", "op_weekly_minimum_hours", mode="before")
    @classmethod
    def _no_minimum(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() in ("", "none"):
            return None
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

    @model_validator(mode="after")
    def _turn_pair(self) -> Settings:
        if bool(self.turn_urls) != (self.turn_secret is not None):
            raise ValueError("CIRCLE_TURN_SECRET and CIRCLE_TURN_URLS go together: set both "
                             "(TURN credentials for clients) or neither")
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
