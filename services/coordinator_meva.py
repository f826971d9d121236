"""Coordinator modes of a differentiable-game league (docs/meva.md, "League mode"): two
processes, each a mode of ``league coordinator`` (registered in
``services.coordinator.MODES``), so that the league keeps playing when the model trainer
is gone:

- ``diffgame`` (:class:`DiffGameRoundsMode`) plays the rounds: pairs the agents
  (``league.meva.league.pairings``), reads each one's parameters (kind ``x``) and pushes
  every seat its match's joint point (kind ``joint``); each agent steps with its own rule
  before its push returns. It does the referee's job for a game that needs no rollout; it
  is a coordinator because the access table lets the coordinator role read *and push*
  agents' parameters (the referee only reads, and its rounds are sampled rollouts with
  joins checked against policy classes), so no new RPC or access rule is needed.
- ``meva`` (:class:`MevaMode`) trains MeVa's model on the league's optimisation
  trajectories (every agent's kind ``trajectory``: joint point before, own parameters after
  each round) with ``league.meva.league.MetaValueLearner`` (``league.meva.train``'s loss,
  targets and gammas) and serves it versioned: after round ``r`` it pushes version ``r + 2``
  (kind ``meva-model``) to every MeVa agent, which steps in round ``r + 1`` with it.

Iterations are rounds (``--iterations N``). Agents are named with ``--agents
ID=HOST:PORT,...``; they join no referee."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import torch
from prometheus_client import Gauge

from league.meva.league import DiffLeagueConfig, MetaValueLearner, load_diff_league, model_params, pairings
from services import server as srv
from services.client import AgentClient, describe, fetch_parameters, push_parameters

log = logging.getLogger("league.coordinator")

MODEL_KIND = "meva-model"


class _DiffLeagueMode:
    """What both modes share: the league config, the agents' stubs, the rounds' pairings."""

    name = ""
    methods: tuple[str, ...] = ()

    @staticmethod
    def load_experiment(path: str, sets: list[str] | None = None) -> DiffLeagueConfig:
        """``--experiment``: a differentiable-league TOML (``configs/meva/league_ipd.toml``)."""
        return load_diff_league(path, sets)

    def __init__(self, experiment: DiffLeagueConfig, method: str, seed: int, cfg: Any) -> None:
        from services.coordinator import CoordinatorMetrics  # the shared metrics (iterations, objective)

        if method not in self.methods:
            raise ValueError(f"coordinator mode {self.name!r} runs {', '.join(self.methods)}, not {method!r}")
        if not isinstance(experiment, DiffLeagueConfig):
            raise ValueError(f"coordinator mode {self.name!r} takes a differentiable-league config "
                             "(configs/meva/league_ipd.toml)")
        torch.set_num_threads(1)
        self.league, self.cfg = experiment, cfg
        self.game = experiment.make_game()
        self.ids = [a.id for a in experiment.agents]
        missing = [a for a in self.ids if a not in cfg.agents]
        if missing:
            raise ValueError(f"--agents gives no address for {missing}: name every agent as ID=HOST:PORT")
        self.stubs = {a: AgentClient(srv.channel(cfg.agents[a], cfg.credentials)) for a in self.ids}
        self.iteration = 0
        self.metrics = CoordinatorMetrics(experiment.game, method)

    def matches(self, round_: int) -> list[tuple[str, ...]]:
        return pairings(self.ids, self.game.n_players, self.league.seed, round_)

    def wait_for_members(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        for a in self.ids:
            while True:
                try:
                    describe(self.stubs[a], timeout=5.0)
                    break
                except grpc.RpcError as err:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"agent {a} at {self.cfg.agents[a]} did not answer within {timeout}s: "
                                           f"{err.code().name}") from None
                    time.sleep(0.2)

    def _record(self, stats: dict[str, float]) -> None:
        m = self.metrics
        m.iterations.inc()
        m.objective.set(stats["objective"])
        m.seconds.observe(stats["seconds"])


class DiffGameRoundsMode(_DiffLeagueMode):
    """Plays the rounds of a differentiable-game league: pairs, distributes joint points."""

    name = "diffgame"
    methods = ("rounds",)

    def iterate(self) -> dict[str, float]:
        """Round ``self.iteration``: every match's seats get its joint point and step."""
        t0 = time.perf_counter()
        r = self.iteration
        matches = self.matches(r)
        playing = [a for m in matches for a in m]
        x = {a: fetch_parameters(self.stubs[a], "x", timeout=self.cfg.timeout).params["x"] for a in playing}
        pushes = []
        for m in matches:
            joint = torch.cat([x[a] for a in m]).unsqueeze(0)  # [1, n, d]
            for seat, a in enumerate(m):
                pushes.append((a, {"joint": joint, "seat": torch.tensor([seat]), "round": torch.tensor([r])}))

        def push(item: tuple[str, dict]) -> int:
            a, params = item
            version = describe(self.stubs[a], timeout=self.cfg.timeout).versions["joint"]
            return push_parameters(self.stubs[a], "joint", params, version, timeout=self.cfg.timeout)

        # in parallel: a MeVa agent may wait for its model inside its push
        with ThreadPoolExecutor(max_workers=max(len(pushes), 1)) as pool:
            list(pool.map(push, pushes))
        with torch.no_grad():
            values = self.game.values(torch.stack([torch.cat([x[a] for a in m]) for m in matches]))
        self.iteration += 1
        stats = {"objective": float(values.mean()), "matches": float(len(matches)),
                 "seconds": time.perf_counter() - t0}
        self._record(stats)
        return stats

    def result(self) -> dict[str, Any]:
        return {"rounds": self.iteration, "x": {a: fetch_parameters(self.stubs[a], "x", timeout=self.cfg.timeout)
                                                .params["x"].tolist() for a in self.ids}}

    def state_dict(self) -> dict[str, Any]:
        return {"iteration": self.iteration}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.iteration = state["iteration"]


class MevaMode(_DiffLeagueMode):
    """Trains MeVa's model on the league's trajectories and serves it to the MeVa agents."""

    name = "meva"
    methods = ("meva",)

    def __init__(self, experiment: DiffLeagueConfig, method: str, seed: int, cfg: Any) -> None:
        super().__init__(experiment, method, seed, cfg)
        self.learner = MetaValueLearner(self.game, experiment)
        self.followers = [a.id for a in experiment.agents if a.rule == "meva"]
        self.losses: list[float] = []
        self.served = Gauge("league_meva_model_version", "Version of the meta-value model this coordinator serves "
                            "(1 + the rounds it is trained on)", registry=self.metrics.registry)
        self.served.set(self.learner.version)

    def wait_for_members(self, timeout: float = 120.0) -> None:
        """Every agent answers, and every MeVa agent's model version 1 is this model's
        initialisation (the same ``[meva]`` config and seed)."""
        super().wait_for_members(timeout)
        mine = model_params(self.learner.model)
        for a in self.followers:
            got = fetch_parameters(self.stubs[a], MODEL_KIND, timeout=self.cfg.timeout)
            if got.version == 1 and any(not torch.equal(got.params[k], v) for k, v in mine.items()):
                raise ValueError(f"{a}'s initial meta-value model differs from this coordinator's: "
                                 "do both read the same [meva] config?")

    def _played(self, agent: str, through: int) -> int:
        """Rounds ``0..through`` in which ``agent`` had a seat."""
        return sum(agent in m for r in range(through + 1) for m in self.matches(r))

    def _trajectory_row(self, agent: str, round_: int) -> dict[str, torch.Tensor]:
        """``agent``'s trajectory row of round ``round_``, waiting for it (long poll)."""
        want = 1 + self._played(agent, round_)
        deadline = time.monotonic() + 10 * self.cfg.timeout
        while True:
            got = fetch_parameters(self.stubs[agent], "trajectory", min_version=want, timeout=self.cfg.timeout + 5.0,
                                   wait_seconds=min(self.cfg.timeout, 30.0))
            if got.params is not None:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{agent} did not publish round {round_} within {10 * self.cfg.timeout:g}s")
        rows = (got.params["round"] == round_).nonzero().flatten()
        if len(rows) != 1:
            raise ValueError(f"{agent}'s trajectory holds round {round_} {len(rows)} times")
        return {k: v[rows[0]] for k, v in got.params.items()}

    def iterate(self) -> dict[str, float]:
        """After round ``self.iteration``: collect its transitions, train, push the next version."""
        t0 = time.perf_counter()
        r = self.iteration
        before, after = [], []
        for m in self.matches(r):
            rows = [self._trajectory_row(a, r) for a in m]
            for seat, row in enumerate(rows):
                if int(row["seat"]) != seat or not torch.equal(row["before"], rows[0]["before"]):
                    raise ValueError(f"round {r}: the seats of match {m} report different joint points")
            before.append(rows[0]["before"])
            after.append(torch.stack([row["after"] for row in rows]))
        self.learner.observe(torch.stack(before), torch.stack(after))
        loss = self.learner.train()
        params = model_params(self.learner.model)
        for a in self.followers:
            push_parameters(self.stubs[a], MODEL_KIND, params, self.learner.version - 1, timeout=self.cfg.timeout)
        self.served.set(self.learner.version)
        self.losses.append(loss)
        self.iteration += 1
        stats = {"objective": loss, "model_version": float(self.learner.version), "seconds": time.perf_counter() - t0}
        self._record(stats)
        return stats

    def result(self) -> dict[str, Any]:
        return {"model_version": self.learner.version, "losses": self.losses}

    def state_dict(self) -> dict[str, Any]:
        return {"iteration": self.iteration, "losses": self.losses, "learner": self.learner.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.iteration, self.losses = state["iteration"], list(state["losses"])
        self.learner.load_state_dict(state["learner"])
        self.served.set(self.learner.version)
