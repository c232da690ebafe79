"""Builders for core tests: a session driven by commands at chosen times, no clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from signaling.core import commands as c
from signaling.core.events import Event
from signaling.core.model import Role, SessionState
from signaling.core.policy import Rejected
from signaling.core.session import Accepted, Decision, apply, decide

T0 = datetime(2026, 11, 2, 15, 0, tzinfo=UTC)
STAFF = c.Actor.staff("key1")


def therapist(pid: str = "t1") -> c.Actor:
    return c.Actor.participant(pid, "therapist")


def client(pid: str) -> c.Actor:
    return c.Actor.participant(pid, "client")


@dataclass
class Session:
    """A session under test: `do` runs a command through decide/apply, like the runtime."""

    state: SessionState = field(default_factory=SessionState)
    now: datetime = T0
    events: list[Event] = field(default_factory=list)

    @classmethod
    def created(cls, grace_s: int = 60, kind: str = "group") -> Session:
        s = cls()
        s.ok(STAFF, c.CreateSession("s1", "Tuesday group", kind, "IOP", T0, 90, grace_s))  # type: ignore[arg-type]
        return s

    def at(self, minutes: float) -> Session:
        self.now = T0 + timedelta(minutes=minutes)
        return self

    def do(self, actor: c.Actor, command: c.Command) -> Decision:
        decision = decide(self.state, command, actor, self.now)
        if isinstance(decision, Accepted):
            for event in decision.events:
                self.state = apply(self.state, event)
                self.events.append(event)
        return decision

    def ok(self, actor: c.Actor, command: c.Command) -> tuple[Event, ...]:
        decision = self.do(actor, command)
        assert isinstance(decision, Accepted), decision
        return decision.events

    def refused(self, actor: c.Actor, command: c.Command) -> Rejected:
        before = self.state
        decision = self.do(actor, command)
        assert isinstance(decision, Rejected), decision
        assert self.state == before, "a refused command must change nothing"
        return decision

    def join(self, pid: str, role: Role = "client", name: str | None = None) -> None:
        actor = c.Actor.participant(pid, role)
        self.ok(actor, c.Connect(pid, name or f"Name {pid}", role, f"tok-{pid}"))

    def status(self, pid: str) -> str:
        return self.state.participants[pid].status
