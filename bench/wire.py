"""JSON lines between the bench's processes (harness, relay server, client workers)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from typing import Any

LIMIT = 1 << 24
"""Relay offers for large groups carry dozens of m-sections: well over asyncio's 64 KiB."""


def send(writer: asyncio.StreamWriter, message: dict[str, Any]) -> None:
    writer.write(json.dumps(message).encode() + b"\n")


async def recv(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    line = await reader.readline()
    if not line:
        return None
    message = json.loads(line)
    assert isinstance(message, dict)
    return message


def raise_rcvbuf(sock: socket.socket, size: int) -> None:
    """Bigger UDP receive buffers, so keyframe bursts do not overflow them (FACTS.md)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)


def udp_drops_by_inode() -> dict[int, int]:
    """Per UDP socket inode: datagrams the kernel dropped (last column of /proc/net/udp)."""
    drops: dict[int, int] = {}
    for name in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    cols = line.split()
                    drops[int(cols[9])] = int(cols[-1])
        except OSError:
            continue
    return drops


def socket_inodes(pid: int) -> set[int]:
    """Inodes of the sockets a process holds open."""
    inodes: set[int] = set()
    base = f"/proc/{pid}/fd"
    try:
        for fd in os.listdir(base):
            try:
                target = os.readlink(f"{base}/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    except OSError:
        pass
    return inodes


def snmp_udp() -> dict[str, int]:
    """System-wide UDP counters (InErrors, RcvbufErrors...) from /proc/net/snmp."""
    with open("/proc/net/snmp") as f:
        rows = [line.split() for line in f if line.startswith("Udp:")]
    return {k: int(v) for k, v in zip(rows[0][1:], rows[1][1:], strict=True)}


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def json_line(message: dict[str, Any]) -> str:
    return json.dumps(message) + "\n"


def runqueue_wait_seconds(pid: int) -> float:
    """Time the process's threads spent runnable but not running (CPU starvation)."""
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[1])
    except OSError:
        pass
    return total / 1e9


def busy_seconds() -> float:
    """CPU time the whole machine spent busy (all cores, not idle/iowait), /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")
