"""Runs the benchmark scenarios and regenerates docs/performance.md and its plot.

    .venv/bin/python -m bench.run --quick            # every scenario, small (< 2 minutes)
    .venv/bin/python -m bench.run a                  # scenario (a) in full
    .venv/bin/python -m bench.run a --profile        # (a) again with py-spy attached
    .venv/bin/python -m bench.run --docs-only        # rebuild the page from bench/results

Each scenario gets fresh processes: the fake model server (bench/fake_upstream.py), the app
under plain daphne with its own database (a temporary DATA_DIR with SQLite, or a new
PostgreSQL database and an empty Redis database for (f)), migrated, with users, sessions
and conversations made by bench/dbtool.py; then the load generator (bench/loadgen.py) runs
the direct phase (the limit) and the app phase with the same load, in that order. Results
go to bench/results/<scenario>.json.
"""

import argparse
import contextlib
import hashlib
import os
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import orjson

from bench import procstat, report
from bench.fake_upstream import Shape
from bench.loadgen import BASELINES

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PYTHON = sys.executable
BIN = Path(sys.executable).parent
WARMUP_MODEL = "bench-40x2ms"
POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_HOST_URL = "redis://127.0.0.1:6379"
SCENARIOS = "abcdefg"
_LOG_KEEP = 512 * 1024  # each run's daphne log is kept beside its results (start and end)


def app_code() -> dict:
    """A fingerprint of the code under test (the app's Python, templates and settings):
    others edit the app while benchmarks run, and a figure is only comparable with one
    measured on the same code."""
    digest = hashlib.sha256()
    newest = (0.0, "")
    for pattern in ("chatsite/**/*.py", "conversations/**/*.py", "templates/**/*.html"):
        for path in sorted(ROOT.glob(pattern)):
            digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
            newest = max(newest, (path.stat().st_mtime, str(path.relative_to(ROOT))))
    changed = datetime.fromtimestamp(newest[0], UTC).isoformat(timespec="seconds")
    return {"sha256": digest.hexdigest()[:12], "newest_file": newest[1], "newest_mtime": changed}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _raise_nofile() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@dataclass
class Plan:
    """One scenario: the server it needs and the phases the load generator runs."""

    scenario: str
    title: str
    users: int
    models: list[str]
    phases: list[dict]
    database: str = "sqlite"  # or "postgres" (with Redis)
    baselines: bool = False  # also run the baseline relays (bench/<kind>_relay.py)
    page_messages: int = 0
    profile: bool = False
    config: dict = field(default_factory=dict)


def streaming_pair(name: str, *, model: str, clients: int, **load) -> list[dict]:
    """The direct phase (the limit) and the app phase, same load."""
    common = {"model": model, "use": clients, **load}
    return [
        {"kind": "direct", "name": f"{name}-direct", **common},
        {"kind": "app", "name": f"{name}-app", **common},
    ]


def warmup() -> list[dict]:
    """The server's imports, pools and caches warm before anything is measured (the
    direct path has nothing to warm)."""
    return streaming_pair("warmup", model=WARMUP_MODEL, clients=4, rounds=2)[1:]


def plan_for(scenario: str, args: argparse.Namespace) -> Plan:
    quick = args.quick
    if scenario in ("a", "f"):
        shape = Shape(tokens=args.tokens, interval=args.interval_ms / 1000)
        rounds = args.rounds or ((2 if scenario == "a" else 1) if quick else 15)
        live = streaming_pair(
            "live",
            model=shape.model,
            clients=args.streams,
            tabs=args.tabs,
            rounds=rounds,
            stagger=shape.seconds,
        )
        title = f"≈{args.streams} live streams, staggered, {shape.tokens} tokens {_ms(shape)} apart"
        database = "sqlite"
        phases = warmup() + live
        if scenario == "f":
            title += ", on PostgreSQL + Redis"
            database = "postgres"
        else:  # the baseline relays after the limit, under the same load, then the app
            for kind in BASELINES:
                warm = {**live[1], "kind": kind, "name": f"warmup-{kind}", "use": 4, "rounds": 1}
                phases.insert(1, warm)
                phases.insert(-1, {**live[1], "kind": kind, "name": f"live-{kind}"})
        return Plan(
            scenario,
            title,
            users=args.streams,
            models=[shape.model, WARMUP_MODEL],
            phases=phases,
            database=database,
            baselines=scenario == "a",
            profile=args.profile and scenario == "a",
            config={
                "shape": shape.model,
                "streams": args.streams,
                "tabs": args.tabs,
                "rounds": rounds,
            },
        )
    if scenario == "b":
        steady = Shape(tokens=100 if quick else 200, interval=0.010)
        bursty = Shape(
            tokens=1500 if quick else 2000, interval=0.010, per_write=args.burst_per_write
        )
        rounds = 1 if quick else 5
        phases = warmup()
        phases += streaming_pair(
            "steady",
            model=steady.model,
            clients=args.throughput_streams,
            rounds=rounds,
            stagger=0.3 if quick else 1.0,
        )
        phases += streaming_pair(
            "bursty",
            model=bursty.model,
            clients=args.bursty_streams,
            rounds=rounds,
            stagger=0.15 if quick else 0.5,
        )
        return Plan(
            "b",
            f"throughput: {args.throughput_streams} streams, tokens 10 ms apart; "
            f"{args.bursty_streams} bursty streams, {bursty.per_write} tokens per write",
            users=max(args.throughput_streams, args.bursty_streams),
            models=[steady.model, bursty.model, WARMUP_MODEL],
            phases=phases,
            config={"steady": steady.model, "bursty": bursty.model, "rounds": rounds},
        )
    if scenario == "c":
        shape = Shape(tokens=200, interval=0.010)
        bursts = 1 if quick else 5
        phases = warmup()
        for i in range(bursts):
            pair = streaming_pair(
                f"burst{i}", model=shape.model, clients=args.burst_streams, rounds=1, stagger=0.0
            )
            for phase in pair:
                phase["pause"] = 0.5
            phases += pair
        return Plan(
            "c",
            f"a burst of {args.burst_streams} streams started at once "
            f"({bursts} burst{'s' if bursts > 1 else ''})",
            users=args.burst_streams,
            models=[shape.model, WARMUP_MODEL],
            phases=phases,
            config={"shape": shape.model, "bursts": bursts},
        )
    if scenario == "d":
        shape = Shape(tokens=10 if quick else 100, interval=0.100)
        phases = warmup()
        capacity = streaming_pair(
            "capacity",
            model=shape.model,
            clients=args.capacity_streams,
            rounds=1 if quick else 2,
            stagger=1.0 if quick else 3.0,
            answer_timeout=180.0,
        )
        if args.idle_sockets == args.capacity_streams:
            # The capacity sockets, once open and subscribed and before any `send`, are
            # the idle ones: one set of handshakes instead of two.
            capacity[1]["measure_idle"] = True
        else:
            phases.append(
                {"kind": "idle", "name": "idle", "model": shape.model, "use": args.idle_sockets}
            )
        phases += capacity
        return Plan(
            "d",
            f"capacity: {args.capacity_streams} concurrent streams ({shape.tokens} tokens "
            f"{_ms(shape)} apart), and {args.idle_sockets} idle sockets",
            users=max(args.capacity_streams, args.idle_sockets),
            models=[shape.model, WARMUP_MODEL],
            phases=phases,
            config={"shape": shape.model},
        )
    if scenario == "e":
        shape = Shape(tokens=200 if quick else 500, interval=0.010)
        rounds = 1 if quick else 4
        phases = warmup() + streaming_pair(
            "persist",
            model=shape.model,
            clients=args.persist_streams,
            tabs=args.persist_tabs,
            rounds=rounds,
            stagger=1.0,
        )
        return Plan(
            "e",
            f"persistence and fan-out: {args.persist_streams} conversations with "
            f"{args.persist_tabs} tabs each, {shape.tokens} tokens {_ms(shape)} apart",
            users=args.persist_streams,
            models=[shape.model, WARMUP_MODEL],
            phases=phases,
            config={"shape": shape.model, "tabs": args.persist_tabs, "rounds": rounds},
        )
    if scenario == "g":
        requests = 10 if quick else 40
        return Plan(
            "g",
            f"the conversation page with {args.page_messages} messages on the branch shown, "
            "and branches",
            users=1,
            models=[WARMUP_MODEL],
            phases=[
                # The page, the thread a tab reloads, and a branch switch back and forth.
                {"kind": "page", "name": name, "requests": requests, "warmup": 4}
                for name in ("page", "thread", "branch")
            ],
            page_messages=args.page_messages,
            config={"messages": args.page_messages, "requests": requests},
        )
    raise SystemExit(f"unknown scenario {scenario!r}: choose from {SCENARIOS}")


def _ms(shape: Shape) -> str:
    return f"{shape.interval * 1000:g} ms"


# Processes


class Upstream:
    def __init__(self, log: Path) -> None:
        self.process = subprocess.Popen(  # noqa: S603 (fixed arguments)
            [PYTHON, "-m", "bench.fake_upstream", "--port", "0"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=log.open("wb"),
            preexec_fn=_raise_nofile,  # noqa: PLW1509
        )
        line = self.process.stdout.readline().decode().split()
        if len(line) != 2 or line[0] != "READY":
            raise RuntimeError(f"the fake upstream did not start: {line}")
        self.port = int(line[1])
        self.pid = self.process.pid

    def stop(self) -> None:
        _stop(self.process)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


class Relay:
    """A baseline relay (bench/lean_relay.py or bench/floor_relay.py) under daphne, reading
    the same fake model server as the app."""

    def __init__(self, kind: str, upstream: Upstream, model: str, log: Path) -> None:
        self.kind = kind
        self.port = _free_port()
        env = {
            **os.environ,
            "LEAN_UPSTREAM": f"http://127.0.0.1:{upstream.port}",
            "LEAN_MODEL": model,
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("DJANGO_SETTINGS_MODULE", None)
        with log.open("wb") as out:
            self.process = subprocess.Popen(  # noqa: S603 (fixed arguments)
                [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(self.port)]
                + [f"bench.{kind}_relay:application"],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_raise_nofile,  # noqa: PLW1509
            )
        self.pid = self.process.pid
        self.log = log

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the {self.kind} relay exited:\n{self.log.read_text()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
                return
            time.sleep(0.05)
        raise RuntimeError(f"the {self.kind} relay did not listen within 30 s")

    def stop(self) -> None:
        _stop(self.process)


class Site:
    """The app under daphne with its own database."""

    def __init__(self, plan: Plan, workdir: Path, upstream: Upstream, template: Path | None):
        self.plan = plan
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.data_dir.mkdir()
        self.port = _free_port()
        self.log = workdir / "daphne.log"
        self.process: subprocess.Popen | None = None
        self.database_name = ""
        self.redis_db: int | None = None
        self.env = {
            **os.environ,
            "DATA_DIR": str(self.data_dir),
            "SECRET_KEY": secrets.token_urlsafe(40),
            "MISTRAL_BASE_URL": f"http://127.0.0.1:{upstream.port}/v1",
            "MISTRAL_API_KEY": "bench",
            "MISTRAL_MODEL": plan.models[0],
            "DEBUG": "false",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DJANGO_SETTINGS_MODULE": "chatsite.settings",
            # Each simulated user asks far more than a person would: limits out of reach, but
            # on, so their count is measured with every question (conversations/limits.py).
            "CHAT_QUESTIONS_PER_MINUTE": "1000000",
            "CHAT_ANSWERS_AT_ONCE": "1000000",
            "CHAT_CONVERSATIONS_PER_MINUTE": "1000000",
            "PYTHONUNBUFFERED": "1",
        }
        for name in ("DATABASE_URL", "REDIS_URL"):
            self.env.pop(name, None)
        if plan.database == "postgres":
            self._create_postgres()
            self._migrate()
        elif template is not None:
            for path in template.iterdir():
                if path.name.startswith("db.sqlite3"):
                    shutil.copy(path, self.data_dir / path.name)
        else:
            self._migrate()

    def _create_postgres(self) -> None:
        import psycopg
        import redis

        self.database_name = f"bench_{os.getpid()}_{secrets.token_hex(3)}"
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.database_name}"')
        self.env["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{self.database_name}"
        for db in range(15, 0, -1):  # an empty database, so nothing of anyone else's is touched
            client = redis.Redis.from_url(f"{REDIS_HOST_URL}/{db}")
            if client.dbsize() == 0:
                self.redis_db = db
                break
        if self.redis_db is None:
            raise RuntimeError("no empty Redis database among 1..15")
        self.env["REDIS_URL"] = f"{REDIS_HOST_URL}/{self.redis_db}"

    def _migrate(self) -> None:
        subprocess.run(  # noqa: S603 (fixed arguments)
            [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"],
            cwd=ROOT,
            env=self.env,
            check=True,
        )

    def dbtool(self, *args: str) -> dict:
        out = subprocess.run(  # noqa: S603 (fixed arguments)
            [PYTHON, "-m", "bench.dbtool", *args],
            cwd=ROOT,
            env=self.env,
            check=True,
            capture_output=True,
        )
        return orjson.loads(out.stdout)

    def start(self) -> None:
        """Start daphne; `wait_ready()` waits for it to serve."""
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(  # noqa: S603 (fixed arguments)
                [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(self.port)]
                + ["chatsite.asgi:application"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_raise_nofile,  # noqa: PLW1509
            )

    def wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + 30
        url = f"http://127.0.0.1:{self.port}/accounts/login/"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"daphne exited:\n{self.log.read_text()}")
            try:
                with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"daphne did not answer within 30 s:\n{self.log.read_text()}")

    def wait_idle(self, timeout: float = 15.0) -> None:
        """Let the server finish what the clients left (disconnects, title requests) before
        its rows are counted and it is stopped: until it uses under 5 % of a core."""
        deadline = time.monotonic() + timeout
        last = procstat.cpu_seconds(self.pid)
        while time.monotonic() < deadline:
            time.sleep(0.2)
            now = procstat.cpu_seconds(self.pid)
            if now - last < 0.01:
                return
            last = now

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)

    def cleanup(self) -> None:
        if self.database_name:
            import psycopg

            with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.database_name}" WITH (FORCE)')
        if self.redis_db is not None:
            import redis

            # Only the channel layer's keys (channels_redis' default prefix), in the database
            # that was empty when the run began: the server is shared.
            client = redis.Redis.from_url(f"{REDIS_HOST_URL}/{self.redis_db}")
            keys = list(client.scan_iter(match="asgi*", count=1000))
            for start in range(0, len(keys), 1000):
                client.delete(*keys[start : start + 1000])


def sqlite_template(workdir: Path) -> Path:
    """One migrated SQLite database per invocation, copied for each scenario."""
    template = workdir / "template"
    template.mkdir()
    env = {
        **os.environ,
        "DATA_DIR": str(template),
        "SECRET_KEY": "template",
        "DJANGO_SETTINGS_MODULE": "chatsite.settings",
    }
    env.pop("DATABASE_URL", None)
    subprocess.run(  # noqa: S603 (fixed arguments)
        [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
    )
    return template


class Profiler:
    """py-spy attached to the server while a named phase runs."""

    def __init__(self, phase: str, duration: int, output: Path) -> None:
        self.phase = phase
        self.duration = duration
        self.output = output
        self.process: subprocess.Popen | None = None

    def on_line(self, line: str, server_pid: int) -> None:
        if line.strip() == f"::start {self.phase}" and self.process is None:
            self.process = subprocess.Popen(  # noqa: S603 (fixed arguments)
                [str(BIN / "py-spy"), "record", "--pid", str(server_pid)]
                + ["--duration", str(self.duration), "--rate", "200"]
                + ["--format", "speedscope", "-o", str(self.output)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )

    def wait(self) -> str:
        if self.process is None:
            return "py-spy never started"
        _, err = self.process.communicate(timeout=self.duration + 60)
        return err.decode(errors="replace")


def run_loadgen(spec: dict, workdir: Path, profiler: Profiler | None, server_pid: int) -> dict:
    spec_path = workdir / "spec.json"
    out_path = workdir / "loadgen.json"
    spec_path.write_bytes(orjson.dumps(spec))
    process = subprocess.Popen(  # noqa: S603 (fixed arguments)
        [PYTHON, "-m", "bench.loadgen", str(spec_path), str(out_path)],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        preexec_fn=_raise_nofile,  # noqa: PLW1509
    )
    for raw in process.stderr:
        line = raw.decode(errors="replace")
        if profiler is not None:
            profiler.on_line(line, server_pid)
        if not line.startswith("::"):
            sys.stderr.write(line)
    if process.wait() != 0:
        raise RuntimeError(f"the load generator failed ({process.returncode})")
    return orjson.loads(out_path.read_bytes())


def execute(plan: Plan, workdir: Path, template: Path | None, name: str) -> dict:
    print(f"[{plan.scenario}] {plan.title}", file=sys.stderr, flush=True)
    code_before = app_code()
    upstream = Upstream(workdir / "upstream.log")
    site = None
    relays: list[Relay] = []
    try:
        for kind in BASELINES if plan.baselines else ():
            relays.append(Relay(kind, upstream, plan.models[0], workdir / f"{kind}.log"))
        site = Site(plan, workdir, upstream, template)
        site.start()  # its imports take a second: the rows are made meanwhile
        prepared = site.dbtool(
            "prepare",
            "--users",
            str(plan.users),
            "--models",
            ",".join(plan.models),
            "--page-messages",
            str(plan.page_messages),
        )
        if prepared.get("page"):  # the shape of the page's tree, for the report
            shape = ("all_messages", "off_shown_branch")
            plan.config["tree"] = {key: prepared["page"][key] for key in shape}
        site.wait_ready()
        for relay in relays:
            relay.wait_ready()
        families = ["postgres", "redis-server"] if plan.database == "postgres" else []
        spec = {
            "host": "127.0.0.1",
            "port": site.port,
            "upstream_port": upstream.port,
            "server_pid": site.pid,
            "upstream_pid": upstream.pid,
            "families": families,
            "phases": [_resolve(phase, prepared) for phase in plan.phases],
        }
        spec["relays"] = {relay.kind: {"port": relay.port, "pid": relay.pid} for relay in relays}
        profiler = None
        if plan.profile:
            profiler = Profiler("live-app", 20, RESULTS / "profile.speedscope.json")
        started = time.monotonic()
        raw = run_loadgen(spec, workdir, profiler, site.pid)
        profile_log = profiler.wait() if profiler else ""
        site.wait_idle()
        writes = site.dbtool("writes")
        elapsed = time.monotonic() - started
    finally:
        if site is not None:
            site.stop()
        for relay in relays:
            relay.stop()
        upstream.stop()
        if site is not None:
            site.cleanup()
            log = report.condensed_log(site.log.read_text(errors="replace")).encode()
            if len(log) > 2 * _LOG_KEEP:
                log = log[:_LOG_KEEP] + b"\n[bench: ... cut ...]\n" + log[-_LOG_KEEP:]
            (RESULTS / f"{name}.server.log").write_bytes(log)
    result = report.evaluate(
        scenario=plan.scenario,
        title=plan.title,
        config=plan.config,
        database=plan.database,
        raw=raw,
        writes=writes,
        server_log=site.log.read_text(errors="replace"),
        upstream_log=(workdir / "upstream.log").read_text(errors="replace"),
    )
    result["elapsed_s"] = round(elapsed, 1)
    code_after = app_code()
    result["app_code"] = {**code_after, "changed_during_run": code_after != code_before}
    result["quick"] = plan.config.get("quick", False)
    if profiler is not None:
        result["profile"] = report.profile_summary(RESULTS / "profile.speedscope.json")
        result["profile_log"] = profile_log[-2000:]
    return result


def _resolve(phase: dict, prepared: dict) -> dict:
    phase = dict(phase)
    if phase["kind"] == "page":
        page = prepared["page"]
        path = f"/c/{page['conversation']}/"
        phase.update(path=path, cookie=page["cookie"])
        if phase["name"] == "thread":
            phase["path"] = path + "thread/"
        elif phase["name"] == "branch":  # two versions of an answer in turn, from the shown one
            csrf = page["csrf"]
            phase["path"] = path + "branch/"
            phase["cookie"] += f"; {page['csrf_cookie']}={csrf}"
            phase["headers"] = {
                "X-CSRFToken": csrf,
                "Content-Type": "application/x-www-form-urlencoded",
            }
            phase["bodies"] = [f"message={pk}" for pk in page["switch"]]
        return phase
    count = phase.pop("use")
    people = prepared["clients"][:count]
    if len(people) < count:
        raise RuntimeError(f"{count} clients asked for, {len(people)} prepared")
    phase["clients"] = [
        {"cookie": p["cookie"], "conversation": p["conversations"][phase["model"]]} for p in people
    ]
    return phase


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Benchmarks of the relay against the direct limit.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "scenarios",
        nargs="*",
        default=[],
        help="any of a (live streams), b (throughput), c (burst), d (capacity, idle memory), "
        "e (persistence, fan-out), f (a on PostgreSQL + Redis), g (page timing); default all",
    )
    parser.add_argument("--quick", action="store_true", help="small runs, < 2 minutes in all")
    parser.add_argument("--profile", action="store_true", help="py-spy on the server during (a)")
    parser.add_argument("--docs-only", action="store_true", help="only rebuild docs from results")
    group = parser.add_argument_group("(a) and (f): live streams")
    group.add_argument("--streams", type=int, default=100)
    group.add_argument("--tokens", type=int, default=200)
    group.add_argument("--interval-ms", type=float, default=10.0)
    group.add_argument("--tabs", type=int, default=1, help="sockets per conversation (fan-out)")
    group.add_argument("--rounds", type=int, default=0, help="answers per stream (0: preset)")
    group = parser.add_argument_group("(b) throughput")
    group.add_argument("--throughput-streams", type=int, default=300)
    group.add_argument("--bursty-streams", type=int, default=100)
    group.add_argument("--burst-per-write", type=int, default=20)
    group = parser.add_argument_group("(c) burst, (d) capacity, (e) persistence, (g) page")
    group.add_argument("--burst-streams", type=int, default=100)
    group.add_argument("--capacity-streams", type=int, default=1000)
    group.add_argument("--idle-sockets", type=int, default=1000)
    group.add_argument("--persist-streams", type=int, default=20)
    group.add_argument("--persist-tabs", type=int, default=3)
    group.add_argument("--page-messages", type=int, default=1000)
    args = parser.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    command = "python -m bench.run " + " ".join(sys.argv[1:] if argv is None else argv)
    if not args.docs_only:
        scenarios = args.scenarios or list(SCENARIOS)
        if args.profile and not args.scenarios:
            scenarios = ["a"]
        _raise_nofile()
        with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
            template = sqlite_template(Path(tmp))
            for scenario in scenarios:
                plan = plan_for(scenario, args)
                plan.config["quick"] = args.quick
                if args.quick:
                    for phase in plan.phases:
                        phase.setdefault("answer_timeout", 60.0)
                        phase.setdefault("idle_settle", 0.5)
                workdir = Path(tmp) / scenario
                workdir.mkdir()
                name = f"{scenario}-profile" if plan.profile else scenario
                result = execute(plan, workdir, template, name)
                result["command"] = command
                result["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
                (RESULTS / f"{name}.json").write_bytes(
                    orjson.dumps(result, option=orjson.OPT_INDENT_2)
                )
                print(report.console_table(result), file=sys.stderr, flush=True)
    with contextlib.suppress(FileNotFoundError):
        report.write_docs(RESULTS, ROOT / "docs")
    print(f"wrote {ROOT / 'docs' / 'performance.md'}", file=sys.stderr)


if __name__ == "__main__":
    main()
