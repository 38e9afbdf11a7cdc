"""`python -m sandbox SCENARIO`: run one catalogue world on loopback until interrupted.

Prints one JSON line with the environment that points mailfix at it (MAILFIX_DNS_SERVERS,
MAILFIX_CA_BUNDLE, MAILFIX_ALLOWED_PRIVATE_NETWORKS[, MAILFIX_CLOUD]; for a scenario with
tenant data also MAILFIX_TENANT_ID, MAILFIX_CLIENT_ID and MAILFIX_CLIENT_SECRET — the sandbox
app's, test data) and the person's address, then serves. `--list` prints the scenario ids.
Used by the benchmarks (so the world does not share a CPU with the process being measured)
and handy for trying the CLI by hand:

    .venv/bin/python -m sandbox autodiscover-cname-missing
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys

from sandbox.catalogue import CATALOGUE, get
from sandbox.world import World


async def serve(scenario_id: str, latency_ms: int, certificate: bool = False) -> None:
    scenario = get(scenario_id)
    if latency_ms:
        hosts = tuple(h.model_copy(update={"latency_ms": latency_ms}) for h in scenario.hosts)
        scenario = scenario.model_copy(update={"hosts": hosts, "dns_latency_ms": latency_ms})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with World(scenario) as world:
        line = {
            "scenario": scenario.id,
            "address": scenario.address,
            "env": world.env(certificate=certificate),
        }
        if world.port_map:
            line["port_map"] = {f"{ip}:{port}": real for (ip, port), real in world.port_map.items()}
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__.splitlines()[0])
    parser.add_argument("scenario", nargs="?", default="healthy")
    parser.add_argument("--latency", type=int, default=0, help="ms per round trip on every host")
    parser.add_argument("--list", action="store_true", help="list the scenario ids and exit")
    parser.add_argument(
        "--certificate",
        action="store_true",
        help="tenant scenarios: print MAILFIX_CLIENT_CERTIFICATE (the sandbox app's PEM) "
        "instead of MAILFIX_CLIENT_SECRET",
    )
    args = parser.parse_args()
    if args.list:
        for scenario in CATALOGUE.values():
            print(f"{scenario.id:32} {scenario.title}")
        return
    if args.scenario not in CATALOGUE:
        parser.error(f"unknown scenario {args.scenario!r}; see --list")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.scenario, args.latency, args.certificate))


if __name__ == "__main__":
    main()
