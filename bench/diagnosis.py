"""Benchmark: full `--client all` diagnoses against the sandbox, wall time and throughput.

Part one runs four catalogue worlds with LATENCY ms per round trip on every host and on DNS:
a managed user (`healthy`) and a federated one (`federated-healthy`, which adds AD FS), each
also with its root-domain web server black-holed (`root-blackhole`,
`federated-root-blackhole`: Outlook's first Autodiscover method never answers). Per world:

- wall: the concurrent diagnosis as `mailfix diagnose` runs it (median of RUNS);
- critical path: the slowest single check run alone against the same world (each on a fresh
  network object, so it pays its own DNS) — no schedule of these checks can beat it;
- their ratio (target: wall <= 1.2 x critical path, DESIGN.md "Targets");
- sequential: the same checks run one after another on one network object.

A black-holed world's critical path is only honest if the black hole costs that check nothing:
it also prints `autodiscover.v1` alone with and without the black hole (same world otherwise).

    .venv/bin/python bench/diagnosis.py [--latency 80] [--runs 5]

Part two, without latency: diagnoses per second with N in flight in one process (its garbage
collector tuned as `mailfix serve` tunes it), the CPU one diagnosis costs this process and the
world's process, and peak RSS of this process. Each
world runs in its own process (`python -m sandbox`) throughout, on loopback; the run is
bounded in count and time. This is a benchmark, not a test: it prints figures (record them in
docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import sys
import time
from asyncio.subprocess import PIPE

from bot.gc_policy import tune_for_serving
from checks.address import parse_address
from checks.cloud import hosts_for
from checks.models import Client, Status
from checks.net.seam import Network
from checks.registry import CATALOGUE
from checks.runner import diagnose, run_checks, skip_reason
from checks.settings import CheckSettings
from checks.spec import CheckContext

DEADLINE = 30.0
TIME_LIMIT = 900.0  # seconds: the whole benchmark gives up after this
WORLDS = {  # world -> its twin without the black hole (None: it has none)
    "healthy": None,
    "root-blackhole": "healthy",
    "federated-healthy": None,
    "federated-root-blackhole": "federated-healthy",
}


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


async def latency_world(scenario: str, latency: int, runs: int) -> dict[str, float]:
    """Print one world's figures; return each check's time alone (seconds)."""
    async with SandboxProcess(scenario, latency) as world:
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
        sequential = await timed_sequential(world, address, runnable)
    wall = statistics.median(walls)
    critical_id = max(alone, key=lambda k: alone[k])
    critical = alone[critical_id]
    not_passing = {k: v.value for k, v in statuses.items() if v not in (Status.PASS, Status.SKIP)}
    print(f"\n== {world.scenario}: {len(runnable)} checks, {latency} ms per round trip")
    print(f"   statuses: all pass{'' if not not_passing else f' except {not_passing}'}")
    print(
        "   alone (ms): "
        + ", ".join(f"{k} {v * 1000:.0f}" for k, v in sorted(alone.items(), key=lambda kv: -kv[1]))
    )
    print(
        f"   wall {wall * 1000:.0f} ms (median of {runs}; min {min(walls) * 1000:.0f}, "
        f"max {max(walls) * 1000:.0f}); critical path {critical * 1000:.0f} ms "
        f"({critical_id} alone); ratio {wall / critical:.2f} (target <= 1.20: "
        f"{'met' if wall <= 1.2 * critical else 'NOT met'}); "
        f"sequential {sequential * 1000:.0f} ms ({sequential / wall:.1f}x the wall)"
    )
    return alone


async def latency_bench(latency: int, runs: int) -> None:
    alone: dict[str, dict[str, float]] = {}
    for scenario in WORLDS:
        alone[scenario] = await latency_world(scenario, latency, runs)
    print()
    for scenario, twin in WORLDS.items():
        if twin is not None:
            with_hole = alone[scenario]["autodiscover.v1"] * 1000
            without = alone[twin]["autodiscover.v1"] * 1000
            print(
                f"autodiscover.v1 alone: {with_hole:.0f} ms in {scenario}, {without:.0f} ms in "
                f"{twin} (the black hole costs {with_hole - without:+.0f} ms)"
            )


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of another process (Linux /proc)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def throughput_bench(total: int, in_flight: int) -> None:
    async with SandboxProcess("healthy") as world:
        settings = world.settings
        await timed_full(world, world.address)
        tune_for_serving()  # as `mailfix serve` does once it has started
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

        t0, cpu0, world0 = time.perf_counter(), time.process_time(), _cpu_seconds(world.proc.pid)
        await asyncio.gather(*(one() for _ in range(total)))
        elapsed = time.perf_counter() - t0
        cpu = (time.process_time() - cpu0) / total * 1000
        world_cpu = (_cpu_seconds(world.proc.pid) - world0) / total * 1000
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rate = total / elapsed
    print(
        f"\nthroughput: {total} diagnoses of {world.scenario} (--client all, no latency), "
        f"{peak} in flight: {rate:.1f} diagnoses/s (target >= 30: "
        f"{'met' if rate >= 30 else 'NOT met'}); peak RSS {rss_mb:.0f} MB (target <= 250: "
        f"{'met' if rss_mb <= 250 else 'NOT met'})"
    )
    print(
        f"CPU per diagnosis: {cpu:.1f} ms in this process ({1000 / cpu:.0f} diagnoses per "
        f"CPU-second), {world_cpu:.1f} ms in the world's process"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=int, default=80, help="ms per round trip")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--total", type=int, default=300, help="diagnoses in the throughput run")
    parser.add_argument("--in-flight", type=int, default=100)
    parser.add_argument("--skip-latency", action="store_true", help="throughput only")
    args = parser.parse_args()

    async def both() -> None:
        async with asyncio.timeout(TIME_LIMIT):
            if not args.skip_latency:
                await latency_bench(args.latency, args.runs)
            await throughput_bench(args.total, args.in_flight)

    asyncio.run(both())


if __name__ == "__main__":
    main()
