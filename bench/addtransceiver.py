"""CPU of the relay's m-sections when twelve join: 12 peers x 11 sendonly video slots.

`python -m bench.addtransceiver [--peers 12] [--slots 11] [--repeat 3]`: process CPU of
`addTransceiver` with aiortc as shipped, then after `aiortc_seam.defer_bitrate_estimators`
(the relay's setting), in the same process and run. Each video receiver aiortc builds
makes a `RemoteBitrateEstimator` the relay never uses.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from aiortc import RTCConfiguration, RTCPeerConnection

from server.media import aiortc_seam


async def slots_cpu_ms(peers: int, slots: int) -> float:
    pcs = [RTCPeerConnection(RTCConfiguration(iceServers=[])) for _ in range(peers)]
    started = time.process_time()
    for pc in pcs:
        for _ in range(slots):
            pc.addTransceiver("video", direction="sendonly")
    spent = time.process_time() - started
    await asyncio.gather(*(pc.close() for pc in pcs))
    return spent * 1000


async def main_async(args: argparse.Namespace) -> None:
    n = args.peers * args.slots
    stock = [await slots_cpu_ms(args.peers, args.slots) for _ in range(args.repeat)]
    aiortc_seam.defer_bitrate_estimators()
    deferred = [await slots_cpu_ms(args.peers, args.slots) for _ in range(args.repeat)]
    print(f"| aiortc | {n} sendonly video m-sections, ms CPU (runs) | ms each (best) |")
    print("|---|---|---|")
    for label, runs in (("as shipped", stock), ("estimators deferred", deferred)):
        print(f"| {label} | {', '.join(f'{r:.1f}' for r in runs)} | {min(runs) / n:.3f} |")
    print(f"ratio as shipped / deferred (best runs): {min(stock) / min(deferred):.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peers", type=int, default=12)
    parser.add_argument("--slots", type=int, default=11)
    parser.add_argument("--repeat", type=int, default=3)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
