"""Benchmark: one full `--client all` diagnosis against the sandbox with realistic latency.

The world is the catalogue's `root-blackhole` tenant (healthy, but the root-domain web server
black-holes Autodiscover) with LATENCY ms per round trip on every host and on DNS. It prints:

- wall: the concurrent diagnosis as `mailfix diagnose` runs it (median of RUNS);
- critical path: the slowest single check run alone against the same world (each on a fresh
  network object, so it pays its own DNS) — no schedule of these checks can beat it;
- their ratio (target: wall <= 1.2 x critical path, DESIGN.md "Targets");
- sequential: the same checks run one after another on one network object.

    .venv/bin/python bench/diagnosis.py [--latency 80] [--runs 5]

Then a throughput run without latency: diagnoses per second with N in flight, and peak RSS
of this process. The world runs in its own process (`python -m sandbox`) throughout.
This is a benchmark, not a test: it prints figures (record them in docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import sys
import time
from asyncio.subprocess import PIPE

from checks.address import parse_address
from checks.cloud import hosts_for
from checks.models import Client, Status
from checks.net.seam import Network
from checks.registry import CATALOGUE
from checks.runner import diagnose, run_checks, skip_reason
from checks.settings import CheckSettings
from checks.spec import CheckContext

DEADLINE = 30.0


class SandboxProcess:
    """A catalogue world in its own process (`python -m sandbox`), so the world's servers do
    not share a CPU with the process being measured. Configured only through its environment."""

    def __init__(self, scenario: str, latency_ms: int = 0) -> None:
        self.args = [sys.executable, "-m", "sandbox", scenario, "--latency", str(latency_ms)]

    async def __aenter__(self) -> SandboxProcess:
        self.proc = await asyncio.create_subprocess_exec(*self.args, stdout=PIPE)
        assert self.proc.stdout is not None
        info = json.loads(await asyncio.wait_for(self.proc.stdout.readline(), 30))
        if "port_map" in info:
            raise SystemExit("the benchmark needs the real ports (run as root)")
        self.scenario: str = info["scenario"]
        self.address: str = info["address"]
        self.settings = CheckSettings(**{k[8:].lower(): v for k, v in info["env"].items()})
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.proc.terminate()
        await self.proc.wait()

    def network(self) -> Network:
        return Network(self.settings)


async def timed_full(world: SandboxProcess, address: str) -> tuple[float, dict[str, Status]]:
    async with world.network() as net:
        t0 = time.perf_counter()
        report = await diagnose(
            address, Client.ALL, settings=world.settings, net=net, deadline=DEADLINE
        )
        wall = time.perf_counter() - t0
    return wall, {f.check: f.status for f in report.findings}


def _context(world: SandboxProcess, address: str, net: Network) -> CheckContext:
    return CheckContext(
        address=parse_address(address),
        client=Client.ALL,
        symptom=None,
        settings=world.settings,
        net=net,
        cloud=hosts_for(world.settings.cloud),
    )


async def timed_alone(world: SandboxProcess, address: str, check_id: str) -> float:
    check = next(c for c in CATALOGUE if c.id == check_id)
    async with world.network() as net:
        ctx = _context(world, address, net)
        # Its dependencies run too: they are part of its path.
        needed = [c for c in CATALOGUE if c.id in (*check.depends_on, check.id)]
        t0 = time.perf_counter()
        await run_checks(ctx, needed, deadline=DEADLINE)
        return time.perf_counter() - t0


async def timed_sequential(world: SandboxProcess, address: str, ids: list[str]) -> float:
    async with world.network() as net:
        ctx = _context(world, address, net)
        t0 = time.perf_counter()
        for check in CATALOGUE:
            if check.id in ids:
                await run_checks(ctx, [check], deadline=DEADLINE)
        return time.perf_counter() - t0


async def latency_bench(latency: int, runs: int) -> None:
    async with SandboxProcess("root-blackhole", latency) as world:
        address = world.address
        settings = world.settings
        runnable = [c.id for c in CATALOGUE if skip_reason(c, Client.ALL, settings) is None]
        await timed_full(world, address)  # warm-up: imports, certificates, caches
        walls = []
        for _ in range(runs):
            wall, statuses = await timed_full(world, address)
            walls.append(wall)
        alone = {
            cid: statistics.median([await timed_alone(world, address, cid) for _ in range(3)])
            for cid in runnable
        }
        sequential = statistics.median(
            [await timed_sequential(world, address, runnable) for _ in range(max(1, runs // 2))]
        )
    wall = statistics.median(walls)
    critical_id = max(alone, key=lambda k: alone[k])
    critical = alone[critical_id]
    print(f"world: {world.scenario} with {latency} ms per round trip (hosts and DNS)")
    print(
        f"checks run: {len(runnable)}; statuses: "
        + ", ".join(f"{k}={v.value}" for k, v in sorted(statuses.items()) if v is not Status.SKIP)
    )
    print(
        "per check, alone (ms): "
        + ", ".join(f"{k} {v * 1000:.0f}" for k, v in sorted(alone.items(), key=lambda kv: -kv[1]))
    )
    print(f"wall (concurrent, median of {runs}): {wall * 1000:.0f} ms")
    print(f"critical path ({critical_id} alone):  {critical * 1000:.0f} ms")
    print(
        f"ratio wall / critical path:          {wall / critical:.2f}  (target <= 1.20: "
        f"{'met' if wall <= 1.2 * critical else 'NOT met'})"
    )
    print(
        f"sequential (one after another):      {sequential * 1000:.0f} ms "
        f"({sequential / wall:.1f}x the concurrent wall)"
    )


async def throughput_bench(total: int, in_flight: int) -> None:
    async with SandboxProcess("healthy") as world:
        settings = world.settings
        await timed_full(world, world.address)
        sem = asyncio.Semaphore(in_flight)
        peak = 0
        active = 0

        async def one() -> None:
            nonlocal peak, active
            async with sem:
                active += 1
                peak = max(peak, active)
                try:
                    async with world.network() as net:
                        await diagnose(
                            world.address,
                            Client.ALL,
                            settings=settings,
                            net=net,
                            deadline=DEADLINE,
                        )
                finally:
                    active -= 1

        t0 = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(total)))
        elapsed = time.perf_counter() - t0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"throughput: {total} diagnoses (--client all, no latency), {peak} in flight: "
        f"{total / elapsed:.1f} diagnoses/s; peak RSS {rss_mb:.0f} MB (target >= 30/s, <= 250 MB)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=int, default=80, help="ms per round trip")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--total", type=int, default=300, help="diagnoses in the throughput run")
    parser.add_argument("--in-flight", type=int, default=100)
    args = parser.parse_args()
    asyncio.run(latency_bench(args.latency, args.runs))
    asyncio.run(throughput_bench(args.total, args.in_flight))


if __name__ == "__main__":
    main()
