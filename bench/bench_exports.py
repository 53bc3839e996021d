"""Fair CPU for exports: a run's training speed while eight clients export a long run, and the server's memory.

On a real server in its own process, with two long runs of the default `tiny` config and a snapshot at every
step: one trained to the end (1,251 snapshots: its exports can be made once and kept), one paused half way
(its exports change as it goes on, so each is made afresh). Eight clients, each from its own loopback address
(127.0.0.2 to 127.0.0.9) as eight people would be, ask for its exports in a loop: weights.npz, filters.gif of
each conv layer, and one filter's trajectory after another (every filter of every layer in turn), waiting
out a 429 for its `Retry-After` as a polite client does.

A third run trains throughout. Its speed is measured in short windows, exporting and quiet in turn (each
exporting window against the quiet ones either side of it): other programs on a shared machine come and go
over minutes, and windows side by side cancel most of that out. The RSS of the server and its export
processes together is sampled throughout. `--classic-epochs` adds the weights.npz of a long `classic` run
(the largest export: 68 MB at 1,251 snapshots of mnist): its size, time and the peak RSS it costs, made and
then kept. Figures only; nothing here passes or fails.

    .venv/bin/python -m bench.bench_exports [--windows 10] [--seconds 4] [--classic-epochs 0]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx2 as httpx

from bench.common import descendants, pct, serve

FINAL = ("finished", "failed", "diverged", "stopped")
CLIENTS = 8
LONG: dict[str, Any] = {"snapshot_every": 1}  # the default run, a snapshot every step: 1,251 of them
GOAL = 0.8  # issue 21: training keeps at least this share of its speed while 8 exports run


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """The process's resident memory (or its peak, VmHWM) in MB, from /proc."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def total_rss_mb(pid: int) -> float:
    """RSS of the server and the processes below it together, MB."""
    total = rss_mb(pid)
    for child in descendants(pid)[1:]:
        with contextlib.suppress(OSError):
            total += rss_mb(child)
    return total


class Sampler:
    """Samples the RSS of a process and its children five times a second; `peak()` since the last `reset()`."""

    def __init__(self, pid: int) -> None:
        self.pid, self._peak, self._stop = pid, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            try:
                self._peak = max(self._peak, total_rss_mb(self.pid))
            except OSError:
                return

    def reset(self) -> None:
        self._peak = total_rss_mb(self.pid)

    def peak(self) -> float:
        return self._peak

    def close(self) -> None:
        self._stop.set()


def wait_for(client: httpx.Client, run_id: str, statuses: tuple[str, ...], until: Callable[[dict[str, Any]], bool]
             | None = None) -> dict[str, Any]:
    while True:
        run: dict[str, Any] = client.get(f"/api/runs/{run_id}").json()
        if run["status"] in statuses or (until is not None and until(run)):
            return run
        time.sleep(0.5)


def export_paths(run: dict[str, Any]) -> list[str]:
    """What a person may ask of a run: its npz, a GIF per conv layer, each filter's trajectory."""
    rid, layers = run["id"], run["layers"]
    paths = [f"/api/runs/{rid}/export/weights.npz"]
    paths += [f"/api/runs/{rid}/export/filters.gif?layer={x['name']}" for x in layers]
    paths += [f"/api/runs/{rid}/filters/{x['name']}/{i}" for x in layers for i in range(x["out_channels"])]
    return paths


class Exporters:
    """Eight clients exporting in a loop; counts answers and times the ones that came (seconds, per kind)."""

    def __init__(self, base: str, paths: list[str]) -> None:
        self.base, self.paths = base, paths
        self.on = threading.Event()  # the clients ask while this is set
        self.stop = threading.Event()
        self.done: dict[str, list[float]] = {"npz": [], "gif": [], "trajectory": []}
        self.refused = 0
        self.failed: list[str] = []
        self.bytes = 0
        self.in_flight = 0
        self._lock = threading.Lock()

    def client(self, n: int) -> None:
        transport = httpx.HTTPTransport(local_address=f"127.0.0.{n + 2}")
        with httpx.Client(base_url=f"http://{self.base}", timeout=300, transport=transport) as client:
            i = n * 7  # each client starts elsewhere in the list
            while not self.stop.is_set():
                if not self.on.wait(0.1):
                    continue
                path = self.paths[i % len(self.paths)]
                started = time.perf_counter()
                with self._lock:
                    self.in_flight += 1
                try:
                    res = client.get(path)
                except httpx.TransportError as exc:
                    self.failed.append(type(exc).__name__)
                    continue
                finally:
                    with self._lock:
                        self.in_flight -= 1
                if res.status_code == 429:
                    self.refused += 1
                    self.stop.wait(float(res.headers.get("retry-after", "1")))
                    continue
                if res.status_code != 200:
                    self.failed.append(f"{res.status_code} {path}")
                else:
                    kind = "npz" if path.endswith(".npz") else "gif" if ".gif" in path else "trajectory"
                    self.done[kind].append(time.perf_counter() - started)
                    self.bytes += len(res.content)
                i += 1

    @contextmanager
    def running(self) -> Iterator[None]:
        threads = [threading.Thread(target=self.client, args=(n,), daemon=True) for n in range(CLIENTS)]
        for t in threads:
            t.start()
        try:
            yield
        finally:
            self.stop.set()
            for t in threads:
                t.join(60)  # an export of the old code can take minutes: leave it behind

    def quiet(self, timeout: float = 120) -> float:
        """Stop asking and wait until no request is in flight; the seconds it took."""
        self.on.clear()
        started = time.monotonic()
        while self.in_flight and time.monotonic() - started < timeout:
            time.sleep(0.05)
        return time.monotonic() - started

    def summary(self) -> str:
        parts = [f"{k} {len(v)} (p50 {pct(v, 0.5):.2f} s, max {max(v):.2f} s)" if v else f"{k} 0"
                 for k, v in self.done.items()]
        return (f"{', '.join(parts)}; {self.refused} answered 429; {len(self.failed)} failed"
                f"{' (' + ', '.join(sorted(set(self.failed))[:3]) + ')' if self.failed else ''}; "
                f"{self.bytes / 1e6:,.0f} MB sent")


def speed(client: httpx.Client, run_id: str, seconds: float) -> float:
    """The run's training speed (samples per second of wall time) over the next `seconds`."""
    first, t0 = client.get(f"/api/runs/{run_id}").json()["samples_seen"], time.monotonic()
    time.sleep(seconds)
    last, t1 = client.get(f"/api/runs/{run_id}").json()["samples_seen"], time.monotonic()
    return float((last - first) / (t1 - t0))


def windows(client: httpx.Client, run_id: str, exporters: Exporters, count: int, seconds: float,
            sampler: Sampler) -> tuple[list[float], list[float], float]:
    """`count` exporting windows, each between two quiet ones: their speed ratios, the quiet speeds, and the
    peak RSS while exporting."""
    quiet = [speed(client, run_id, seconds)]
    ratios, peak = [], 0.0
    for _ in range(count):
        sampler.reset()
        exporters.on.set()
        busy = speed(client, run_id, seconds)
        exporters.quiet()
        peak = max(peak, sampler.peak())
        quiet.append(speed(client, run_id, seconds))
        ratios.append(busy / ((quiet[-2] + quiet[-1]) / 2))
    return ratios, quiet, peak


def long_runs(client: httpx.Client) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ended long run, and one paused half way."""
    ended = client.post("/api/runs", json=LONG).json()
    ended = wait_for(client, ended["id"], FINAL)
    paused = client.post("/api/runs", json=LONG).json()
    token = {"Authorization": f"Bearer {paused['token']}"}
    wait_for(client, paused["id"], FINAL, lambda r: r["snapshots"] >= ended["snapshots"] // 2)
    client.post(f"/api/runs/{paused['id']}/pause", headers=token)
    return ended, wait_for(client, paused["id"], ("paused",))


def classic_npz(client: httpx.Client, pid: int, epochs: int) -> None:
    """Train a long `classic` run; the size, time and peak-RSS cost of its weights.npz, made and then kept."""
    run = client.post("/api/runs", json={**LONG, "model": "classic", "epochs": epochs}).json()
    run = wait_for(client, run["id"], FINAL)
    for attempt in ("made", "kept"):
        before = total_rss_mb(pid)
        sampler = Sampler(pid)
        sampler.reset()
        started = time.perf_counter()
        res = client.get(f"/api/runs/{run['id']}/export/weights.npz", timeout=600)
        seconds = time.perf_counter() - started
        sampler.close()
        print(f"classic, {run['snapshots']} snapshots, weights.npz {attempt}: {len(res.content) / 1e6:,.0f} MB in "
              f"{seconds:.1f} s; RSS (server and export processes) {before:,.0f} MB before, peak "
              f"{max(sampler.peak(), before):,.0f} MB", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=10, help="exporting windows per long run (default 10; 0: "
                                                                "only the classic npz)")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of a window (default 4 s)")
    parser.add_argument("--classic-epochs", type=int, default=0,
                        help="also measure a classic run's npz, trained this many epochs (5: 1,251 snapshots)")
    args = parser.parse_args()
    proc, base = serve()
    sampler = Sampler(proc.pid)
    results: dict[str, tuple[list[float], float, str]] = {}
    quiet_rss = 0.0
    try:
        with httpx.Client(base_url=f"http://{base}", timeout=60) as client:
            if args.windows:
                results, quiet_rss = exporting(client, base, proc.pid, args.windows, args.seconds, sampler)
            if args.classic_epochs:
                classic_npz(client, proc.pid, args.classic_epochs)
    finally:
        sampler.close()
        proc.terminate()
        proc.wait(30)
    if results:
        print()
        print(f"{CLIENTS} clients; {args.windows} windows of {args.seconds:g} s each way; training speed exporting "
              "against quiet (median, range); RSS of the server and its export processes")
    for name, (ratios, peak, _) in results.items():
        verdict = "meets" if statistics.median(ratios) >= GOAL else "MISSES"
        print(f"  exporting the {name} run: ratio {statistics.median(ratios):.2f} ({min(ratios):.2f}-"
              f"{max(ratios):.2f}), {verdict} goal >= {GOAL}; peak RSS {peak:,.0f} MB (after: {quiet_rss:,.0f} MB)")


def exporting(client: httpx.Client, base: str, pid: int, count: int, seconds: float, sampler: Sampler,
              ) -> tuple[dict[str, tuple[list[float], float, str]], float]:
    """The long runs, a run training throughout, and the windows of each long run's exports."""
    results: dict[str, tuple[list[float], float, str]] = {}
    ended, paused = long_runs(client)
    print(f"long runs: {ended['snapshots']} snapshots ended ({ended['bytes'] / 1e6:.0f} MB), "
          f"{paused['snapshots']} paused; RSS {total_rss_mb(pid):,.0f} MB", flush=True)
    measured = client.post("/api/runs", json={"epochs": 100}).json()  # trains throughout
    token = {"Authorization": f"Bearer {measured['token']}"}
    wait_for(client, measured["id"], FINAL, lambda r: r["step"] > 50)
    for name, run in (("ended", ended), ("paused", paused)):
        exporters = Exporters(base, export_paths(run))
        with exporters.running():
            ratios, quiet, peak = windows(client, measured["id"], exporters, count, seconds, sampler)
        results[name] = (ratios, peak, exporters.summary())
        print(f"exporting the {name} run: ratios {', '.join(f'{r:.2f}' for r in ratios)} (quiet "
              f"{min(quiet):,.0f}-{max(quiet):,.0f} samples/s); {exporters.summary()}; peak RSS {peak:,.0f} MB",
              flush=True)
    quiet_rss = total_rss_mb(pid)
    client.post(f"/api/runs/{measured['id']}/stop", headers=token)
    return results, quiet_rss


if __name__ == "__main__":
    main()
