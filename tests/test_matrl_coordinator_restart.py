"""A MATRL coordinator killed in a round's commit phase restarts in step: the decision is on
disk (``--state``, written by ``MatrlMode._decide`` through ``CoordinatorMode.persist`` before
the first commit push), so the restarted coordinator settles the owed commits and resumes at the
iteration's next group.

In-process but over the real wire: the real referee and four agents (rule ``matrl``, 2-player
RPS, two groups) are gRPC servers in this process, each agent learning from the broadcast in
its own threads, and the coordinator is ``run_coordinator`` itself, with ``--state``. The first
coordinator is abandoned (an exception out of ``_commit``: nothing it held in memory is used
again) in a group-0 round after the decision, either before any commit push (in the last
iteration, which has no later round of group 0 to settle the commits) or after the first agent's
(in iteration 2); a second ``run_coordinator`` on the same state file finishes the run.
"""

from __future__ import annotations

import copy
import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from agents.matrl import COMMIT, round_message
from agents.runtime import AgentProcess, AgentRuntimeConfig
from services import coordinator as coordinator_module
from services.coordinator import CoordinatorConfig, run_coordinator
from services.coordinator_matrl import MatrlMode, load_matrl_config
from services.league_config import load_league_config
from tests.inprocess_league import InProcessLeague
from tests.league_procs import agent_toml
from tests.test_matrl_league import EXPERIMENT, LEAGUE, _embedded
from tests.test_matrl_league_state import _same

torch.set_num_threads(1)
IDS = ["a0", "a1", "b0", "b1"]  # groups (a0, a1) and (b0, b1)
ITERATIONS = 3


class Abandoned(Exception):
    """The coordinator's end: raised out of ``run_coordinator``, whose object is never used again."""


class League:
    """The referee and the agents of ``IDS``, real gRPC servers in this process."""

    def __init__(self, tmp: Path) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        (tmp / "league.toml").write_text(LEAGUE.format(n=2) + "".join(
            agent_toml(a, role="persona", rule="matrl", init=f"random:{i}", lr=[0.5]) for i, a in enumerate(IDS)))
        (tmp / "matrl.toml").write_text(EXPERIMENT.format(n=2, lrs=[0.5, 0.5], kl_coef=0.5, trust_steps=2))
        self.tmp, config = tmp, load_league_config(tmp / "league.toml")
        self.referee = InProcessLeague(config.referee)
        r = config.referee
        self.agents = [AgentProcess(spec, AgentRuntimeConfig(
            referee=self.referee.address, env=r.env, n_players=r.n_players, horizon=r.horizon, gamma=r.gamma,
            chain_length=3, checkpoint_dir=str(tmp / "ckpt"))) for spec in config.agents]
        for agent in self.agents:
            agent.start()
            threading.Thread(target=agent.run, daemon=True).start()

    def coordinate(self, state: Path) -> dict:
        """``run_coordinator`` (mode matrl, seed 0, ``ITERATIONS``) on ``state``; its results file."""
        cfg = CoordinatorConfig(referee=self.referee.address, meta_agent="", personas=[], timeout=20.0,
                                agents={a: "" for a in IDS})
        results = self.tmp / "coord.json"
        run_coordinator(load_matrl_config(str(self.tmp / "matrl.toml")), "matrl", 0, cfg, ITERATIONS, "127.0.0.1", 0,
                        0, str(results), None, mode="matrl", state_file=str(state))
        return json.loads(results.read_text())

    def state(self) -> dict[str, tuple]:
        """Every agent's policy version and parameters and its committed learner state (copies)."""
        return {a.spec.id: copy.deepcopy((a.store.snapshot("policy"), a.coordinated.state_dict()))
                for a in self.agents}

    def close(self) -> None:
        for agent in self.agents:
            agent.stop()
            agent.server.stop(grace=None)
            agent._http.shutdown()
        self.referee.close()


def abandoning(round_: int, pushes: int) -> type[MatrlMode]:
    """A ``MatrlMode`` that dies in round ``round_``'s commit phase, after the decision and after
    pushing the commit to the group's first ``pushes`` agents."""

    class AbandonedInTheCommitPhase(MatrlMode):
        def _commit(self, g, r, seats, stubs, versions):
            if r == round_:
                for stub in stubs[:pushes]:
                    self._push(stub, COMMIT, round_message(r))
                raise Abandoned(f"coordinator abandoned in round {r}'s commit phase after {pushes} push(es)")
            return super()._commit(g, r, seats, stubs, versions)

    return AbandonedInTheCommitPhase


def _without_times(iterations: list[dict]) -> list[dict]:
    return [{k: v for k, v in it.items() if k not in ("seconds", "started_s")} for it in iterations]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The run nobody killed: its results and its agents' final state."""
    league = League(tmp_path_factory.mktemp("uninterrupted"))
    try:
        return league.coordinate(league.tmp / "coord.state.pt"), league.state()
    finally:
        league.close()


@pytest.mark.parametrize("round_, pushes", [(5, 0), (3, 1)],
                         ids=["last-iteration-before-any-commit-push", "iteration-2-after-one-commit-push"])
def test_a_coordinator_killed_in_the_commit_phase_restarts_in_step(tmp_path, monkeypatch, uninterrupted, round_,
                                                                   pushes):
    """The coordinator dies after round ``round_`` (group 0's round of iteration ``(round_ + 1) /
    2``) was decided, before any commit push or after a0's; restarted on its state file it re-sends
    the owed commits at once, plays group 1's round of that iteration (group 0's is not replayed)
    and the iterations left. Every agent's policy version, parameters and learner state equal
    (0.0) the uninterrupted run's, as do the rounds' records and the iterations' statistics; the
    parameters equal the embedded run's (1e-6)."""
    want, want_agents = uninterrupted
    league = League(tmp_path)
    state = tmp_path / "coord.state.pt"
    try:
        monkeypatch.setitem(coordinator_module.MODES, "matrl", abandoning(round_, pushes))
        with pytest.raises(Abandoned):
            league.coordinate(state)
        saved = torch.load(state, weights_only=True)["mode_state"]
        on_disk = {"iteration": saved["iteration"], "round": saved["round"], "owed": saved["owed"],
                   "progress": saved["progress"], "rounds": [r["round"] for r in saved["history"]]}
        monkeypatch.setitem(coordinator_module.MODES, "matrl", MatrlMode)
        got = league.coordinate(state)
        agents = league.state()
    finally:
        league.close()
    print(f"saved at the abandon: {on_disk}")
    print(f"rounds (round, group): restarted {[(r['round'], r['group']) for r in got['rounds']]}, "
          f"uninterrupted {[(r['round'], r['group']) for r in want['rounds']]}; still owed {got['owed_commits']}")
    gaps = {a: max(float((agents[a][0][1][n] - want_agents[a][0][1][n]).abs().max()) for n in agents[a][0][1])
            for a in IDS}
    print(f"policy versions {[agents[a][0][0] for a in IDS]} (uninterrupted {[want_agents[a][0][0] for a in IDS]}); "
          f"max |restarted - uninterrupted| parameters per agent {gaps}; learner state equal "
          f"{ {a: _same(agents[a][1], want_agents[a][1]) for a in IDS} }")
    assert all(_same(agents[a], want_agents[a]) for a in IDS)  # versions, parameters, learner state
    assert all(agents[a][0][0] == ITERATIONS + 1 for a in IDS)
    assert got["params"] == want["params"] and not got["owed_commits"]
    assert [(r["round"], r["group"]) for r in got["rounds"]] == [(1, 0), (2, 1), (3, 0), (4, 1), (5, 0), (6, 1)]
    assert got["rounds"] == want["rounds"]
    assert _without_times(got["iterations"]) == _without_times(want["iterations"])
    version = (round_ + 1) // 2  # group 0's policy version in round round_
    assert on_disk == {"iteration": version - 1, "round": round_, "owed": {a: [round_, version] for a in ("a0", "a1")},
                       "progress": [1, 1, 0], "rounds": list(range(1, round_ + 1))}  # the decision, group 0 done
    embedded, _ = _embedded(tmp_path, IDS, 2, ITERATIONS)
    for a in IDS:
        np.testing.assert_allclose(np.array(got["params"][a]["logits"]), embedded[a]["logits"].numpy(), atol=1e-6,
                                   rtol=0, err_msg=a)
