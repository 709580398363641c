"""Submission throughput: the whole submit path beside a bare Strawberry mutation.

    python bench/submit.py                         # SQLite, 16 clients, 1 000 users, 3 × 10 s
    python bench/submit.py --database-url postgres://postgres@127.0.0.1:5432
    python bench/submit.py --clients 32 --duration 20 --profile /tmp/prof   # needs py-spy

Both servers are uvicorn processes started the same way (one worker, httptools, no access
log), with Strawberry's parser and validation caches, measured one after the other from this
process by N concurrent clients, each on its own keep-alive connection, sending the same
document with new variables each time, as each of its share of `--users` users in turn (so a
user has a few unfinished jobs, as the default cap allows, and the API looks a thousand
tokens up again every 5 s, when its token cache lets them go):

- bare: `submitText2Image(input)` answering a constant job, nothing else;
- StarGraph: `stargraph api` on the database given (a fresh one, migrated) and Redis (the
  server on 127.0.0.1:6379 when it listens, else in-process): authentication, validation,
  the hold and the job row in one transaction, the fair queue's Lua script, the event.

With `--ceiling`, a third kind runs too: `stargraph api` whose submit validates and renders
the job but skips the database and Redis (`submit without I/O`). It shows how far any work on
the submit path itself can go: the rest is HTTP, the middleware and the schema.

The servers run in `--rounds` rounds (3 by default), each round every server once, the bare
one first, each StarGraph on a fresh database. On a shared VM a server's speed drifts by a
fifth or more from one minute to the next; a ratio taken within one round, and the median of
those, moves much less than one run of each.

Printed, per server (medians over the rounds): submissions/s, p50/p99 latency (of all
rounds' requests), the server's CPU (cores, and milliseconds per submission, with its range),
and StarGraph ÷ bare (the median of the rounds' ratios, with their range).
Target: StarGraph at 50 % or more of the bare figure. `--profile DIR` records each StarGraph
server with py-spy during its measured window (collapsed stacks, `DIR/<database>.txt`, and
`DIR/without-io.txt` with `--ceiling`; the last round's).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import strawberry

from stargraph.domain.params import SubmitRequest
from stargraph.domain.types import Principal

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    CHECKPOINT,
    ProcessClock,
    Processes,
    RawHttp,
    database_label,
    forget_prefix,
    free_port,
    fresh_database,
    machine,
    percentile,
    prepare_database,
    redis_url,
    run,
    stargraph_env,
    table,
    wait_until_up,
)

SUBMIT = """mutation($input: Text2ImageInput!) {
  submitText2Image(input: $input) { id status cost queuePosition }
}"""


@dataclass
class Figures:
    name: str
    latencies_ms: list[float]
    seconds: float
    cores: float
    errors: int

    @property
    def rate(self) -> float:
        return len(self.latencies_ms) / self.seconds


def _input(n: int) -> dict[str, object]:
    return {"prompt": f"a lighthouse at dawn, take {n}", "steps": 20, "width": 512,
            "height": 512, "seed": n + 1}  # fmt: skip


async def _client(url: str, tokens: list[str | None], until: float, start: float,
                  latencies: list[float], errors: list[str]) -> None:  # fmt: skip
    """One keep-alive connection; each request as the next of `tokens`' users, in turn."""
    http = RawHttp(url)
    n = 0
    try:
        while (now := time.monotonic()) < until:
            n += 1
            body = json.dumps({"query": SUBMIT, "variables": {"input": _input(n)}}).encode()
            status, answer = await http.post_json("/graphql", body, tokens[n % len(tokens)])
            took = (time.monotonic() - now) * 1000
            if status != 200 or b'"errors"' in answer:
                errors.append(answer[:300].decode(errors="replace"))
            elif now >= start:
                latencies.append(took)
    finally:
        await http.aclose()


async def load(name: str, url: str, clients: int, tokens: list[str | None], clock: ProcessClock,
               warmup: float, duration: float) -> Figures:  # fmt: skip
    """`clients` clients for warm-up + duration, client k submitting as users k, k + clients,
    k + 2 × clients … of `tokens` in turn; only the measured window counts."""
    latencies: list[float] = []
    errors: list[str] = []
    start = time.monotonic() + warmup
    until = start + duration

    async def measure_cpu() -> float:
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        clock.start()
        await asyncio.sleep(duration)
        return clock.cores_used()

    cpu = asyncio.create_task(measure_cpu())
    shares = [tokens[k::clients] for k in range(clients)]
    await asyncio.gather(
        *(_client(url, share, until, start, latencies, errors) for share in shares)
    )
    if errors:
        print(f"{name}: {len(errors)} failed requests, e.g. {errors[0]}", file=sys.stderr)
    return Figures(name, latencies, duration, await cpu, len(errors))


# ---- the bare server -------------------------------------------------------------------------


@strawberry.input(name="Text2ImageInput")
class BareInput:
    prompt: str
    steps: int | None = 20
    width: int | None = 512
    height: int | None = 512
    seed: int | None = None


@strawberry.type(name="Job")
class BareJob:
    id: strawberry.ID
    status: str
    cost: int
    queue_position: int | None


@strawberry.type
class BareQuery:
    ok: bool = True


@strawberry.type
class BareMutation:
    @strawberry.mutation
    async def submit_text2_image(self, input: BareInput) -> BareJob:
        return BareJob(id=strawberry.ID("0"), status="QUEUED", cost=10, queue_position=1)


def serve_bare(port: int) -> None:
    """A Strawberry mutation of the same shape that does no work: the ceiling."""
    import uvicorn
    from strawberry.asgi import GraphQL
    from strawberry.extensions import ParserCache, ValidationCache

    schema = strawberry.Schema(
        query=BareQuery, mutation=BareMutation,
        extensions=[lambda: ParserCache(maxsize=512), lambda: ValidationCache(maxsize=512)],
    )  # fmt: skip
    uvicorn.run(GraphQL(schema), host="127.0.0.1", port=port, log_level="warning",
                access_log=False)  # fmt: skip


def serve_without_io(port: int) -> None:
    """`stargraph api` whose submit use case does everything but the database and Redis."""
    from stargraph import cli
    from stargraph.domain import submit

    async def submit_without_io(
        self: submit.Submitter, principal: Principal, request: SubmitRequest
    ) -> submit.Submitted:
        params = self._validate(principal, request)
        job = await self._prepare(principal, params, request.idempotency_key)
        return submit.Submitted(job, 1)

    submit.Submitter.submit = submit_without_io  # type: ignore[method-assign]
    cli.main(["api", "--port", str(port)])


# ---- runs --------------------------------------------------------------------------------------


async def run_bare(procs: Processes, args: argparse.Namespace) -> Figures:
    port = free_port()
    proc = await procs.start("bare", [sys.executable, __file__, "--serve-bare", str(port)],
                             stargraph_env())  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    await wait_until_up(f"{url}/graphql?query=%7Bok%7D", proc)
    figures = await load("bare Strawberry", url, args.clients, [None] * args.clients,
                         ProcessClock(proc.pid), args.warmup, args.duration)  # fmt: skip
    await procs.stop(proc)
    return figures


async def run_stargraph(
    procs: Processes, args: argparse.Namespace, spec: str, *, io: bool = True
) -> Figures:
    async with fresh_database(spec, procs.workdir) as db:
        tokens = await prepare_database(db, args.users, points=10**8)
        port = free_port()
        shared_redis = redis_url(required=False)
        env = stargraph_env(
            database_url=db, redis_url=shared_redis,
            redis_prefix=f"bench{port}", models=[CHECKPOINT], default_model=CHECKPOINT,
            submits_per_minute=10**9, max_queued_per_user=10**9, graphiql="false",
            storage_dir=procs.workdir / "images",
        )  # fmt: skip
        if io:
            name = f"StarGraph, {database_label(db)}"
            api = await procs.stargraph(f"api-{spec[:8]}", ["api", "--port", str(port)], env)
        else:
            name = "StarGraph, submit without I/O"
            command = [sys.executable, __file__, "--serve-without-io", str(port)]
            api = await procs.start("api-without-io", command, env)
        url = f"http://127.0.0.1:{port}"
        await wait_until_up(f"{url}/healthz", api)
        profile = _profile(api.pid, args, database_label(db) if io else "without-io")
        figures = await load(name, url, args.clients, list(tokens[:-1]), ProcessClock(api.pid),
                             args.warmup, args.duration)  # fmt: skip
        if profile is not None:
            await profile
        await procs.stop(api)
        if shared_redis is not None:  # a thousand users' event streams and more
            await forget_prefix(shared_redis, f"bench{port}")
        return figures


def _profile(pid: int, args: argparse.Namespace, label: str) -> asyncio.Task[None] | None:
    if args.profile is None:
        return None
    spy = shutil.which("py-spy")
    if spy is None:
        print("--profile: py-spy is not installed (pip install py-spy)", file=sys.stderr)
        return None
    out = Path(args.profile) / f"{label.lower()}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)

    async def record() -> None:
        await asyncio.sleep(args.warmup)
        proc = await asyncio.create_subprocess_exec(
            spy, "record", "--pid", str(pid), "--duration", str(int(args.duration)),
            "--rate", "250", "--format", "raw", "-o", str(out),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        await proc.wait()
        print(f"profile of {label}: {out}", file=sys.stderr)

    return asyncio.create_task(record())


def _cpu_ms(f: Figures) -> float:
    return f.cores * f.seconds / len(f.latencies_ms) * 1000 if f.latencies_ms else float("nan")


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _spread(values: list[float], digits: int = 2, unit: str = "") -> str:
    if len(values) < 2 or min(values) == max(values):
        return "-"
    return f"{min(values):.{digits}f}–{max(values):.{digits}f}{unit}"


def report(args: argparse.Namespace, rounds: list[tuple[Figures, list[Figures]]]) -> str:
    """One row per server: medians over the rounds; a round's ratio divides by the bare
    figure of that same round, so a machine that drifts between rounds moves both."""
    names = [f.name for f in [rounds[0][0], *rounds[0][1]]]
    rows = []
    for i, name in enumerate(names):
        runs = [[bare, *others][i] for bare, others in rounds]
        ratios = [f.rate / bare.rate if bare.rate else float("nan") for (bare, _), f in
                  zip(rounds, runs, strict=True)]  # fmt: skip
        latencies = [ms for f in runs for ms in f.latencies_ms]
        rows.append([name, f"{_median([f.rate for f in runs]):,.0f}", percentile(latencies, 50),
                     percentile(latencies, 99), _median([f.cores for f in runs]),
                     _median([_cpu_ms(f) for f in runs]), _spread([_cpu_ms(f) for f in runs]),
                     sum(f.errors for f in runs), f"{_median(ratios) * 100:.0f} %",
                     _spread([r * 100 for r in ratios], 0, " %")])  # fmt: skip
    title = (f"submit: {args.clients} clients, {len(rounds)} round(s) of {args.duration:.0f} s "
             f"per server (after {args.warmup:.0f} s warm-up), servers alternated in each "
             f"round; medians over the rounds; target StarGraph ≥ 50 % of bare\n"
             f"machine: {machine()}\n"
             "CPU ms/submit (the server's) is the steadier figure on a busy machine, where "
             "the rates depend on what else runs")  # fmt: skip
    headers = ["server", "submits/s", "p50 ms", "p99 ms", "server cores", "CPU ms/submit",
               "CPU range", "errors", "of bare", "of bare range"]  # fmt: skip
    return table(title, headers, rows)


async def main(args: argparse.Namespace) -> None:
    rounds: list[tuple[Figures, list[Figures]]] = []
    with tempfile.TemporaryDirectory(prefix="sg-bench-submit-") as tmp:
        async with Processes(Path(tmp)) as procs:
            for number in range(args.rounds):
                bare = await run_bare(procs, args)
                runs = [await run_stargraph(procs, args, spec) for spec in args.database]
                if args.ceiling:
                    runs.append(await run_stargraph(procs, args, "sqlite", io=False))
                rounds.append((bare, runs))
                if args.rounds > 1:
                    done = ", ".join(f"{f.name} {f.rate / bare.rate:.0%}" for f in runs)
                    print(f"round {number + 1}/{args.rounds}: {done}", file=sys.stderr)
    print(report(args, rounds))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--users", type=int, default=1000,
                        help="users the clients submit as, in turn (≥ --clients)")  # fmt: skip
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per server")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of every server in turn (medians reported)")  # fmt: skip
    parser.add_argument("--database-url", action="append", default=[], metavar="SERVER_URL",
                        help="also run on this database server, e.g. postgres://"
                        "postgres@127.0.0.1:5432 (repeatable; SQLite always runs)")  # fmt: skip
    parser.add_argument("--profile", metavar="DIR", help="py-spy the StarGraph server")
    parser.add_argument("--ceiling", action="store_true",
                        help="also run StarGraph with a submit that skips the database and "
                        "Redis")  # fmt: skip
    parser.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--serve-without-io", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.users < args.clients:
        parser.error("--users must be at least --clients")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    args.database = ["sqlite", *args.database_url]
    return args


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.serve_bare:
        serve_bare(arguments.serve_bare)
    elif arguments.serve_without_io:
        serve_without_io(arguments.serve_without_io)
    else:
        run(main(arguments))
