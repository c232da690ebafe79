"""`python -m client --token T [--server URL ...]`: join a Circle session from the command line.

Prints each change of the participant's own state, notices and chat; publishes a synthetic
camera and microphone once admitted (unless --no-media or --audio-only), and at the end
prints per publisher what it received. Useful for demos and for a therapist testing a room.
With several nodes (--server repeated, or a comma-separated list) or one load balancer, a
lost connection is followed by reconnection to the next node with the same token.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from typing import Any

from client.participant import CircleClient, JoinRefused, MediaOptions
from client.reconnect import parse_nodes

DEFAULT_SERVER = "http://127.0.0.1:8080"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m client", description=__doc__)
    parser.add_argument("--token", required=True, help="join token (from the invite)")
    parser.add_argument("--server", "--url", dest="servers", action="append", metavar="URL",
                        help="a Circle node's URL; repeat it or give a comma-separated list "
                        "to fail over between nodes, or give one load balancer's URL "
                        f"(default: {DEFAULT_SERVER})")
    parser.add_argument("--seconds", type=float, default=0,
                        help="leave after this many seconds (default: until Ctrl-C)")
    media = parser.add_mutually_exclusive_group()
    media.add_argument("--no-media", action="store_true", help="signaling only")
    media.add_argument("--audio-only", action="store_true", help="publish audio only")
    parser.add_argument("--relay-only", action="store_true",
                        help="send media only through the clinic's TURN server (checks it)")
    parser.add_argument("--hand", action="store_true", help="raise a hand once admitted")
    parser.add_argument("--admit-all", action="store_true",
                        help="as a therapist: admit everyone who is waiting, as they arrive")
    parser.add_argument("--say", default=None, help="send this chat message once admitted")
    parser.add_argument("--check-in", dest="check_in", default=None, metavar="WHERE:REGION",
                        help="as a client or family member: check in once connected, with "
                        "consent to telehealth; WHERE is home or other, REGION a state or "
                        "province code (home:CA, other:US-NV)")
    args = parser.parse_args(argv)
    if args.check_in is not None:
        where, _, region = args.check_in.partition(":")
        if where not in ("home", "other") or not region:
            parser.error("--check-in: use home:REGION or other:REGION, e.g. home:CA")
        args.check_in = {"location": where, "region": region.upper(), "consent": True}
    try:
        args.nodes = parse_nodes(args.servers or [DEFAULT_SERVER])
    except ValueError as exc:
        parser.error(str(exc))
    return args


def _admissible(state: dict[str, Any]) -> bool:
    """Someone waits whom `admit_all` would admit (those owing a check-in stay waiting)."""
    required = bool(state["session"].get("checkin_required"))
    return any(w.get("checkin") or not required for w in state.get("waiting") or [])


def _describe(state: dict[str, Any]) -> str:
    you = state["you"]
    if you.get("second_device") == "waiting":
        return (f"[rev {state['rev']}] you are already in this session on another device; "
                "the therapist has been asked to let this device take your place")
    where = f" in {you['room']}" if you.get("room") else ""
    role = f" as {you['breakout_role']}" if you.get("breakout_role") else ""
    others = ", ".join(p["name"] for p in state["participants"] if p["handle"] != you.get("handle"))
    return f"[rev {state['rev']}] {you['status']}{where}{role}" + (
        f"; with {others}" if others else ""
    )


def _print_link(what: str, detail: str) -> None:
    if what == "lost":
        print(f"connection lost: {detail}; reconnecting", flush=True)
    elif what == "connected":
        print(f"connected to {detail}", flush=True)


async def run(args: argparse.Namespace) -> int:
    media = None if args.no_media else MediaOptions(audio=True, video=not args.audio_only,
                                                    relay_only=args.relay_only)
    client = CircleClient(args.nodes, args.token, media=media)
    client.on_state.append(lambda state: print(_describe(state), flush=True))
    client.on_link.append(_print_link)
    try:
        await client.connect()
    except JoinRefused as refused:
        print(f"refused: {refused.message} ({refused.code})", file=sys.stderr)
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    if args.seconds:
        loop.call_later(args.seconds, stop.set)
    acted = False
    seen_notices = seen_chats = 0
    while not stop.is_set() and not client.ended.is_set() and client.gave_up is None:
        state = client.state
        if state is not None and state["you"]["status"] in ("denied", "removed"):
            break
        if state is not None and client.connected:  # commands wait while it reconnects
            if state["you"]["status"] == "admitted" and not client.second_device and not acted:
                acted = True
                if args.hand:
                    await client.call("hand", {"raised": True})
                if args.say:
                    await client.call("chat", {"text": args.say})
            if args.check_in and state["you"]["status"] in ("waiting", "admitted") \
                    and not client.second_device:
                ack = await client.call("checkin", args.check_in)
                if not ack["ok"]:
                    print(f"checkin refused: {ack['error']['message']}", file=sys.stderr)
                args.check_in = None
            if args.admit_all and _admissible(state):
                ack = await client.call("admit_all")
                if not ack["ok"]:
                    print(f"admit_all refused: {ack['error']['message']}", file=sys.stderr)
                    args.admit_all = False
                elif ack.get("message"):
                    print(ack["message"], flush=True)
        for notice in client.notices[seen_notices:]:
            print(f"notice ({notice['kind']}): {notice['text']}", flush=True)
        for chat in client.chats[seen_chats:]:
            print(f"chat from {chat['name']}: {chat['text']}", flush=True)
        seen_notices, seen_chats = len(client.notices), len(client.chats)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.2)
    names = {p["id"]: p["name"] for p in (client.state or {}).get("participants", [])}
    for publisher, stats in (await client.received()).items():
        who = f"{names[publisher]} ({publisher})" if publisher in names else publisher
        print(f"received from {who}: {stats.video_frames} video frames, "
              f"{stats.audio_frames} audio frames, "
              f"{stats.video_packets + stats.audio_packets} packets", flush=True)
    if client.ended.is_set():
        print("the session has ended", flush=True)
    elif client.gave_up is not None:
        print(f"disconnected: {client.gave_up.message} ({client.gave_up.code})",
              file=sys.stderr)
    elif client.status in ("waiting", "admitted"):
        with contextlib.suppress(Exception):
            await client.call("leave")
    await client.close()
    return 0 if client.gave_up is None else 2


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(run(_parse(argv)))


if __name__ == "__main__":
    sys.exit(main())
