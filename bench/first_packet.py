"""Join latency: N clients admitted at once, how soon each receives every other publisher.

    .venv/bin/python -m bench.first_packet --clients 12            # forward + janus, < 2 min
    .venv/bin/python -m bench.first_packet --clients 12 --modes forward --repeat 3
    .venv/bin/python -m bench.first_packet --clients 12 --json out.json

Same harness as `bench.relay`: the SFU runs alone in `bench.server` (`forward` = Circle's
`MediaRelay` through its public API, `janus` = Janus 1.1's videoroom), the clients in
`bench.client` worker processes replaying the pre-encoded VP8 + Opus clip (a PLI restarts
it: frame 0 is a keyframe). Admission = the harness applies one plan with all N
participants and, right after, tells every worker to join all its clients at once (each
client offers first). Every timestamp is `time.monotonic()` (CLOCK_MONOTONIC, shared by
every process on the machine), measured from admission, per client:

- `answer`: the SFU's answer to the client's first offer has arrived (`offer_rtt` = from
  sending that offer);
- `ice` / `dtls`: the client's connection reached ICE `completed` / `connected` (DTLS up;
  with Janus, the subscriber connection's too: `sub_ice`, `sub_dtls`);
- `relay_offers`: SFU offers the client answered; `last_offer` = when the last one arrived;
- `first_pkt`: the first RTP packet of every one of the 2 (N-1) expected streams (audio and
  video of every other publisher): the worst (latest) of them;
- `first_key`: the first complete keyframe of every one of the N-1 video streams (its
  marker packet): when a decoder could show the first frame; the worst of them.

Then p50 / p95 / max over clients of each, and the ratio forward / janus in the same run.
A stream that never arrives within `--timeout` counts as the timeout.

Mode `forward` also traces the relay (bench-only, in the relay process: this module runs
`bench.server` with wrappers, server/media is unchanged): per forwarded video track, when
its egress started, when the relay sent the publisher a PLI, when a keyframe reached the
ingress and when the egress sent its first packet; and when the relay handled each offer
and answer. `--trace-out FILE` keeps the raw events. `--experiment no-sdp-gate` runs the relay
without peer.py's SDP gate (the "before" of docs/benchmarks-join.md).
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Any

from bench.clip import load_clip
from bench.relay import Proc, _control, join_clients

METRICS = ("offer_sent", "offer_rtt", "answer", "ice", "dtls", "last_offer", "first_pkt",
           "first_key")


def _worst(values: list[float | None], timeout: float) -> float:
    return max((timeout if v is None else v) for v in values) if values else timeout


def _client_figures(entry: dict[str, Any], t0: float, expected: int,
                    timeout: float) -> dict[str, Any]:
    def rel(value: float | None) -> float | None:
        return None if value is None else round(value - t0, 4)

    streams = list(entry["streams"].values())
    video = [s for s in streams if s["mime"].lower().startswith("video/")]
    firsts: list[float | None] = [rel(s["first"]) for s in streams]
    firsts += [None] * max(0, 2 * expected - len(streams))
    keys: list[float | None] = [rel(s["key_done"]) for s in video]
    keys += [None] * max(0, expected - len(video))
    ice = [entry[k] - t0 for k in ("ice", "sub_ice") if entry[k] is not None]
    dtls = [entry[k] - t0 for k in ("dtls", "sub_dtls") if entry[k] is not None]
    offers = entry["server_offers"]
    lost = sum(max(0, s["high"] - s["seq0"] + 1 - s["count"]) for s in streams)
    return {
        "offer_sent": rel(entry.get("offer_sent")),
        "offer_rtt": rel(entry["answer"] and entry["answer"] - entry["offer_sent"] + t0),
        "answer": rel(entry["answer"]),
        "ice": round(max(ice), 4) if ice else None,
        "dtls": round(max(dtls), 4) if dtls else None,
        "relay_offers": len(offers),
        "last_offer": rel(offers[-1][0]) if offers else None,
        "first_pkt": round(_worst(firsts, timeout), 4),
        "first_key": round(_worst(keys, timeout), 4),
        "streams": len(streams),
        "lost": lost,
        "key_retries": sum(max(0, s["key_starts"] - 1) for s in video),
        "offers": [[rel(o[0]), rel(o[1]), *o[2:]] for o in offers],
        "pli_in": [[rel(t), accepted] for t, accepted in entry.get("pli_in", [])],
        "restarts": [rel(t) for t in entry.get("restarts", [])],
    }


def _done(entry: dict[str, Any], expected: int) -> bool:
    streams = entry["streams"].values()
    keys = sum(1 for s in streams if s["mime"].lower().startswith("video/") and s["key_done"])
    return len(entry["streams"]) >= 2 * expected and keys >= expected


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _before(cls: type, name: str, hook: Any) -> None:
    """Run `hook(self, *args)` before `cls.name`, keeping it sync or async as it is."""
    original = getattr(cls, name)
    if inspect.iscoroutinefunction(original):

        async def wrapped_async(self: Any, *args: Any) -> Any:
            hook(self, *args)
            return await original(self, *args)

        setattr(cls, name, wrapped_async)
    else:

        def wrapped(self: Any, *args: Any) -> Any:
            hook(self, *args)
            return original(self, *args)

        setattr(cls, name, wrapped)


def _install_trace(path: str, experiment: str | None) -> None:
    """In the relay process: record join events to `path` (one JSON line each)."""
    from server.media import forwarder, relay
    from server.media.keyframe import starts_keyframe

    out = open(path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
    clock = time.monotonic
    experiments = set((experiment or "").split(","))
    if "no-sdp-gate" in experiments:  # the relay before the per-loop SDP gate (peer.py)
        from server.media import peer

        peer._sdp_gate = asyncio.Lock  # a fresh lock per call: no taking turns

    def event(*fields: Any) -> None:
        out.write(json.dumps([clock(), *fields]) + "\n")

    original_signal = relay.MediaRelay.signal

    async def signal(self: relay.MediaRelay, session_id: str, participant_id: str,
                     kind: Any, sdp: str) -> str | None:
        event("signal_in", participant_id, kind)
        result = await original_signal(self, session_id, participant_id, kind, sdp)
        event("signal_done", participant_id, kind)
        peer = self.peer(session_id, participant_id)
        if peer is not None:
            for ikind, ingress in peer.ingresses.items():
                event("ingress", id(ingress), participant_id, ikind)
            for (publisher, ekind), egress in peer.egresses.items():
                event("egress", id(egress), participant_id, publisher, ekind)
        return result

    relay.MediaRelay.signal = signal  # type: ignore[method-assign]

    original_init = relay.MediaRelay.__init__

    def init(self: relay.MediaRelay, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        asyncio.get_running_loop().create_task(_loop_lag(event))

    relay.MediaRelay.__init__ = init  # type: ignore[method-assign]

    original_start = forwarder.Egress.start

    def start(self: forwarder.Egress, ingress: forwarder.Ingress) -> None:
        if not (self._running and ingress is self.ingress):
            event("egress_start", id(self), id(ingress))
        original_start(self, ingress)

    forwarder.Egress.start = start  # type: ignore[method-assign]

    sent: set[int] = set()

    def on_send(self: forwarder.Egress, *_: Any) -> None:
        if id(self) not in sent:
            sent.add(id(self))
            event("egress_first", id(self), id(self.ingress))

    def on_rtcp(self: forwarder.Ingress, data: bytes) -> None:
        if len(data) > 1 and data[1] == 206:
            event("pli", id(self))

    _before(forwarder.Egress, "_send", on_send)
    _before(forwarder.Ingress, "_send_rtcp", on_rtcp)

    original_rtp = forwarder.Ingress._handle_rtp_packet

    async def handle_rtp(self: forwarder.Ingress, packet: Any, arrival_time_ms: int) -> None:
        codec = self._codecs.get(packet.payload_type)
        if (self.kind == "video" and codec is not None
                and starts_keyframe(codec.mimeType, packet.payload)):
            event("keyframe", id(self))
        await original_rtp(self, packet, arrival_time_ms)

    forwarder.Ingress._handle_rtp_packet = handle_rtp  # type: ignore[method-assign]


async def _loop_lag(event: Any, period: float = 0.005, report_over: float = 0.02) -> None:
    """Record each time the relay's event loop woke this task late (a stall) for 30 s."""
    loop = asyncio.get_running_loop()
    end = loop.time() + 30.0
    while loop.time() < end:
        due = loop.time() + period
        await asyncio.sleep(period)
        late = loop.time() - due
        if late > report_over:
            event("stall", round(late, 4))


def _serve(mode: str, trace: str | None, experiment: str | None) -> None:
    """`bench.server --mode MODE`, with the join trace installed first."""
    if trace and mode == "forward":
        _install_trace(trace, experiment)
    from bench import server

    sys.argv = ["bench.server", "--mode", mode]
    server.main()


def _relay_breakdown(path: str, t0: float) -> dict[str, Any]:
    """Per forwarded video track: egress start -> first packet, and what it waited for."""
    ingress_of: dict[int, tuple[str, str]] = {}
    egress_of: dict[int, tuple[str, str, str]] = {}
    events: list[list[Any]] = []
    with open(path) as f:
        for line in f:
            e = json.loads(line)
            if e[1] == "ingress":
                ingress_of[e[2]] = (e[3], e[4])
            elif e[1] == "egress":
                egress_of[e[2]] = (e[3], e[4], e[5])
            else:
                events.append(e)
    plis: dict[int, list[float]] = {}
    keys: dict[int, list[float]] = {}
    starts: dict[int, float] = {}
    firsts: dict[int, float] = {}
    answers: dict[str, list[float]] = {}
    stalls: list[tuple[float, float]] = []
    for e in events:
        t = e[0] - t0
        if e[1] == "pli":
            plis.setdefault(e[2], []).append(t)
        elif e[1] == "keyframe":
            keys.setdefault(e[2], []).append(t)
        elif e[1] == "egress_start":
            starts.setdefault(e[2], t)
        elif e[1] == "egress_first":
            firsts.setdefault(e[2], t)
        elif e[1] == "signal_done" and e[3] == "answer":
            answers.setdefault(e[2], []).append(t)
        elif e[1] == "stall" and t < 5.0:
            stalls.append((round(t, 3), e[2]))
    waits = []
    worst: list[Any] = []
    for egress, (sub, pub, kind) in egress_of.items():
        if kind != "video" or egress not in starts:
            continue
        start, first = starts[egress], firsts.get(egress)
        wait = None if first is None else round(first - start, 4)
        if wait is not None:
            waits.append(wait)
        if not worst or (wait or 1e9) > (worst[3] or 1e9):
            ingress = next((i for i, v in ingress_of.items() if v == (pub, "video")), None)
            worst = [sub, pub, round(start, 4), wait,
                     [round(p, 3) for p in plis.get(ingress or 0, [])][:12],
                     [round(k, 3) for k in keys.get(ingress or 0, [])][:12]]
    pli_total = sum(len(v) for v in plis.values())
    key_total = sum(1 for v in keys.values() for k in v if k < (max(firsts.values(), default=0)))
    return {
        "egress_starts": [round(min(starts.values(), default=0), 3),
                          round(max(starts.values(), default=0), 3)],
        "video_wait": ({"p50": round(_pct(waits, 0.5), 3), "p95": round(_pct(waits, 0.95), 3),
                        "max": round(max(waits), 3)} if waits else None),
        "worst_video": worst,
        "plis": pli_total,
        "loop_stalls_first_5s": {"count": len(stalls),
                                 "total_s": round(sum(x for _, x in stalls), 3),
                                 "max_s": max((x for _, x in stalls), default=0.0)},
        "keyframe_starts_until_last_first": key_total,
        "answers_applied": [round(min(v[-1] for v in answers.values()), 3),
                            round(max(v[-1] for v in answers.values()), 3)] if answers else None,
    }


def run(mode: str, clients: int, workers: int, clip: str, timeout: float,
        relay_cpus: str | None = None, client_cpus: str | None = None,
        experiment: str | None = None, pli_interval: float = 0.5,
        trace_out: str | None = None) -> dict[str, Any]:
    env = dict(os.environ)
    env.pop("BENCH_RELAY_LATENCY", None)
    env.pop("BENCH_RELAY_WORKERS", None)
    if trace_out:
        trace = trace_out
        with open(trace, "w"):
            pass
    else:  # created empty, owner-only, under a name no one else can claim first
        fd, trace = tempfile.mkstemp(prefix="join-trace-", suffix=".jsonl")
        os.close(fd)
    server = Proc(["bench.first_packet", "--serve", mode, "--trace-out", trace]
                  + (["--experiment", experiment] if experiment else []), relay_cpus, env)
    assert server.p.stdout is not None
    port = int(server.p.stdout.readline())
    procs = [
        Proc(["bench.client", "--port", str(port), "--clip", clip, "--trailer",
              "--pli-interval", str(pli_interval)]
             + (["--separate-subscriber"] if mode == "janus" else []), client_cpus)
        for _ in range(workers)
    ]
    try:
        members = [("g0", f"p{i}") for i in range(clients)]
        for proc in procs:  # every worker has imported, loaded the clip and connected
            proc.ask({"t": "timeline"})
        t0 = time.monotonic()
        asyncio.run(_control(port, {"t": "plan", "s": "g0", "pids": [p for _, p in members]}))
        join_clients(procs, members)
        expected = clients - 1
        deadline = t0 + timeout
        timelines: dict[str, Any] = {}
        while True:
            timelines = {}
            for proc in procs:
                timelines.update(proc.ask({"t": "timeline"}))
            if all(_done(e, expected) for e in timelines.values()):
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        per_client = {name: _client_figures(e, t0, expected, timeout)
                      for name, e in sorted(timelines.items())}
        summary: dict[str, Any] = {}
        for metric in METRICS:
            values = [c[metric] for c in per_client.values() if c[metric] is not None]
            if values:
                summary[metric] = {"p50": round(_pct(values, 0.5), 3),
                                   "p95": round(_pct(values, 0.95), 3),
                                   "max": round(max(values), 3)}
        offers = [c["relay_offers"] for c in per_client.values()]
        summary["relay_offers"] = {"min": min(offers), "max": max(offers)}
        result = {"mode": mode, "clients": clients, "experiment": experiment,
                  "publisher_pli_interval": pli_interval,
                  "summary": summary, "per_client": per_client}
    finally:
        for proc in procs:
            proc.stop()
        server.stop()
    if mode == "forward":
        result["relay"] = _relay_breakdown(trace, t0)
    if trace_out is None:
        os.unlink(trace)
    return result


def _print(result: dict[str, Any], verbose: bool) -> None:
    print(f"\n== {result['mode']}, {result['clients']} clients "
          f"(seconds from admission; offer_rtt from sending the first offer)")
    if verbose:
        cols = ("offer_sent", "offer_rtt", "answer", "ice", "dtls", "relay_offers",
                "last_offer", "first_pkt", "first_key", "lost", "key_retries")
        print("client | " + " | ".join(cols))
        for name, c in result["per_client"].items():
            print(f"{name} | " + " | ".join(str(c[k]) for k in cols))
    print("metric | p50 | p95 | max")
    for metric in METRICS:
        s = result["summary"].get(metric)
        if s:
            print(f"{metric} | {s['p50']} | {s['p95']} | {s['max']}")
    o = result["summary"]["relay_offers"]
    print(f"SFU offers per client: {o['min']}-{o['max']}")
    if "relay" in result:
        r = result["relay"]
        print(f"relay: answers applied {r['answers_applied']}, video egresses started "
              f"{r['egress_starts']}, egress start -> first video packet {r['video_wait']}, "
              f"PLIs sent {r['plis']}, relay loop stalls > 20 ms in the first 5 s "
              f"{r['loop_stalls_first_5s']}")
        print(f"relay: worst video track [subscriber, publisher, egress start, wait, "
              f"PLIs at, keyframes at ingress]: {r['worst_video']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=12)
    parser.add_argument("--modes", default=None,
                        help="forward, janus (default: both if /usr/bin/janus exists)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per mode, interleaved")
    parser.add_argument("--workers", type=int, default=2, help="client processes")
    parser.add_argument("--timeout", type=float, default=15.0,
                        help="seconds from admission before a run is cut off")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--fps", type=int, default=15)
    parser.add_argument("--bitrate", type=int, default=600_000)
    parser.add_argument("--relay-cpus", help="taskset -c list for the SFU")
    parser.add_argument("--client-cpus", help="taskset -c list for the client workers")
    parser.add_argument("--verbose", "-v", action="store_true", help="one row per client")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--experiment",
                        help="no-sdp-gate: peer.py without its SDP gate, for before/after "
                             "runs in one checkout")
    parser.add_argument("--publisher-pli-interval", type=float, default=0.5,
                        help="bench publishers restart their clip (a keyframe) on a PLI at "
                             "most this often (aiortc's own sender: 0, every PLI)")
    parser.add_argument("--trace-out", help="keep the relay's raw join events here")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve(args.serve, args.trace_out, args.experiment)
        return
    modes = (args.modes or ("forward,janus" if shutil.which("janus") or
                            os.path.exists("/usr/bin/janus") else "forward")).split(",")
    clip = str(load_clip(args.width, args.height, args.fps, 3.0, args.bitrate))
    results: list[dict[str, Any]] = []
    for _ in range(args.repeat):
        for mode in modes:
            try:
                results.append(run(mode, args.clients, args.workers, clip, args.timeout,
                                   args.relay_cpus, args.client_cpus, args.experiment,
                                   args.publisher_pli_interval, args.trace_out))
            except Exception as exc:  # one broken run (a process died) must not lose the rest
                print(f"\n== {mode}: run failed ({type(exc).__name__}: {exc})")
                continue
            _print(results[-1], args.verbose)
    by_mode: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by_mode.setdefault(r["mode"], []).append(r)
    if "forward" in by_mode and "janus" in by_mode:
        print("\nforward / janus (same run; median over repeats of each statistic). Janus "
              "forwards delta frames at once, Circle holds video back until a keyframe: "
              "Circle's first_pkt is a keyframe, Janus's may not be decodable:")
        for metric in ("answer", "dtls", "first_pkt", "first_key"):
            parts = []
            for stat in ("p50", "p95", "max"):
                f = _pct([r["summary"][metric][stat] for r in by_mode["forward"]], 0.5)
                j = _pct([r["summary"][metric][stat] for r in by_mode["janus"]], 0.5)
                parts.append(f"{stat} {f:.3f}/{j:.3f} = {f / max(j, 1e-6):.2f}x")
            print(f"{metric}: " + "; ".join(parts))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=1)


if __name__ == "__main__":
    main()
