"""Timing hooks for benchmarks/league_overhead.py, active only when the environment
variable LEAGUE_BENCH_TIMING names a directory (the benchmark puts this folder on
PYTHONPATH of the `league up` it launches, so every league process imports it at start-up).

Nothing in the league changes behaviour: after ``services.referee`` or ``agents.runtime``
is imported, a few of its functions are wrapped to append timestamped events (time.time(),
comparable across the processes of one machine, and the calling thread's CPU seconds
``cpu_s`` for the timed calls) to ``$LEAGUE_BENCH_TIMING/<pid>.jsonl``:

referee: round (play_round start/end), pin (_pin start/end), fetch (one Referee._fetch:
agent, kind, min_version, start, start of its last poll, end, polls), sample
(the rollout, ``play``, start/end), group (_play_group start/end), broadcast (match id, time).
agent: learn (agent, match id, chain step, start/end of AgentProcess.learn).

With LEAGUE_BENCH_PROFILE naming a directory as well, the threads that do a round's work run
under cProfile (one profiler per thread; cProfile sees only the thread it was enabled in) and
each dumps ``<dir>/<process>.<thread>.prof`` when it ends: the referee's round loop
(``Referee.run``), an agent's stream reader (``AgentProcess.run``) and its learner
(``AgentProcess._learn_loop``). Profiling slows what it sees: use it to find where the
time goes, not for the timings."""

import os
import sys

_DIR = os.environ.get("LEAGUE_BENCH_TIMING")


def _install() -> None:
    import functools
    import importlib.abc
    import importlib.machinery
    import json
    import threading
    import time

    lock = threading.Lock()
    path = os.path.join(_DIR, f"{os.getpid()}.jsonl")
    local = threading.local()

    def log(ev: str, **kw) -> None:
        line = json.dumps({"ev": ev, "pid": os.getpid(), **kw})
        with lock:
            with open(path, "a") as f:
                f.write(line + "\n")

    def timed(ev, fn, info=None):
        @functools.wraps(fn)
        def wrapper(*a, **kw):
            extra = info(*a, **kw) if info else {}
            t0, c0 = time.time(), time.thread_time()
            try:
                return fn(*a, **kw)
            finally:  # cpu_s: the calling thread's CPU time (what the call computed, not what it waited)
                log(ev, t0=t0, t1=time.time(), cpu_s=time.thread_time() - c0, **extra)
        return wrapper

    def patch_referee(mod) -> None:
        R = mod.Referee
        real_fetch_parameters = mod.fetch_parameters

        def counting_fetch(*a, **kw):
            local.polls = getattr(local, "polls", 0) + 1
            local.last = time.time()
            return real_fetch_parameters(*a, **kw)

        mod.fetch_parameters = counting_fetch
        real_fetch = R._fetch

        def _fetch(self, member, kind, min_version):
            local.polls, t0 = 0, time.time()
            try:
                return real_fetch(self, member, kind, min_version)
            finally:
                log("fetch", agent=member.agent_id, kind=kind, min_version=min_version, round=self.round,
                    t0=t0, t_last_poll=getattr(local, "last", t0), t1=time.time(), polls=local.polls)

        R._fetch = _fetch
        R.play_round = timed("round", R.play_round, lambda self: {"round": self.round})
        R._pin = timed("pin", R._pin, lambda self, *a, **k: {"round": self.round})
        R._play_group = timed("group", R._play_group, lambda self, group, *a, **k: {"round": self.round,
                                                                                    "matches": len(group)})
        mod.play = timed("sample", mod.play)
        real_broadcast = R._broadcast

        def _broadcast(self, messages):  # one batch: its messages (whole, or its parts)
            real_broadcast(self, messages)
            batch = messages[0]
            log("broadcast", t=time.time(), match=batch.match_id, round=batch.round, step=batch.step)

        R._broadcast = _broadcast

    def patch_agent(mod) -> None:
        A = mod.AgentProcess
        # one event per learning call; a call may learn several chains' batches at once
        A.learn_many = timed("learn", A.learn_many, lambda self, batches: {
            "agent": self.spec.id, "match": batches[0].match_id if batches else "",
            "step": batches[0].step if batches else -1, "round": batches[0].round if batches else -1,
            "batches": len(batches)})

    profile_dir = os.environ.get("LEAGUE_BENCH_PROFILE")

    def profiled(fn, name):
        """``fn`` under its own cProfile, dumped to ``profile_dir/<name(self)>.<fn>.prof``."""
        import cProfile

        @functools.wraps(fn)
        def wrapper(self, *a, **kw):
            prof = cProfile.Profile()
            prof.enable()
            try:
                return fn(self, *a, **kw)
            finally:
                prof.disable()
                prof.dump_stats(os.path.join(profile_dir, f"{name(self)}.{fn.__name__}.prof"))
        return wrapper

    def profile_referee(mod) -> None:
        mod.Referee.run = profiled(mod.Referee.run, lambda self: "referee")

    def profile_agent(mod) -> None:
        A = mod.AgentProcess
        A.run = profiled(A.run, lambda self: self.spec.id)
        A._learn_loop = profiled(A._learn_loop, lambda self: self.spec.id)

    def both(*patches):
        return lambda mod: [patch(mod) for patch in patches]

    targets = {"services.referee": patch_referee, "agents.runtime": patch_agent}
    if profile_dir:
        targets = {"services.referee": both(patch_referee, profile_referee),
                   "agents.runtime": both(patch_agent, profile_agent)}

    class Finder(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name not in targets:
                return None
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            if spec is None or spec.loader is None:
                return spec
            real_exec = spec.loader.exec_module

            def exec_module(module):
                real_exec(module)
                targets[name](module)

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, Finder())


if _DIR:
    _install()
