"""Deep MATRL (the paper's Algorithm 2) on any :class:`~league.envs.Environment`: PPO trust-region
steps, the meta-game by importance weighting from the same episodes, verified Nash weights, and
the best response against the peers' policy mixtures with truncated importance weights.

One iteration from ``K`` episodes of the current policies (nothing else is played):

1. every seat's PPO step (:func:`league.matrl.ppo.ppo_step`): predicted parameters, GAE
   advantages from its critic (fitted afterwards);
2. the ``2**n`` meta-game of expected advantage gains and its verified Nash weights ``w``
   (the probability of each seat's predicted policy): ``round_metagame`` and ``nash_weights``
   of :mod:`league.matrl.sampled`, generic in ``n``;
3. the variant's next parameters (:data:`VARIANTS`):

   - ``il``: the predicted parameters (independent PPO learners);
   - ``il_pp``: the best response against the peers' *predicted* policies (``w = 1``, no
     meta-game);
   - ``matrl_no_br``: the parameters interpolated by the Nash weights,
     ``(1 - w) theta + w theta_hat``;
   - ``matrl``: the best response against the peers' mixtures ``pi_bar_j = (1 - w_j) pi_j + w_j
     pi_hat_j``.

**Mixture or parameter interpolation.** The meta-game and the best response use the *policy
mixture* the paper writes: its per-step likelihood ratio ``pi_bar_j / pi_j`` is computable for
any network (``peer_log_ratios``), so nothing is approximated. A network cannot *be* a mixture,
though, so ``matrl_no_br``, whose output is the aggregated policy itself, interpolates the
parameters as the authors' deep code does (near ``theta`` the two agree to first order).

**Best response** (Algorithm 2, line 15): ``br_steps`` Adam steps from the *predicted*
parameters on the PPO-clipped surrogate whose advantages are reweighted by the peers'
truncated importance weight ``c = clip(prod_{j != i} pi_bar_j / pi_j, 1 - br_clip, 1 + br_clip)``.

**Per-seat functions, one code path.** A seat's part of an iteration is :func:`ppo_step` (with
its own critic and its own generator, :func:`seat_generator`) and :func:`best_response`; the
embedded :func:`deep_round` and an agent process of the league (rule ``ppo-matrl``,
``agents/matrl.py``) call the same two functions, and the meta-game, Nash weights and peers'
log-ratios are :mod:`league.matrl.sampled`'s, which the coordinator calls. A seat's own
randomness (its critic's initial weights, then its PPO minibatch order) comes from a generator
derived from ``(seed, seat)`` alone, so a process that knows only its seat draws what the
embedded run draws for it; the episodes come from the run's generator (the coordinator's).
"""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from league.config import build
from league.envs import make_env
from league.envs.base import Environment, flat_dim
from league.matrl.ppo import Critic, PPOConfig, PPOStep, alive_mask, masked_mean, ppo_step
from league.matrl.sampled import RoundScores, nash_weights, peer_log_ratios, round_metagame, score_round
from league.policies import make_policy
from league.policies.base import Params, Policy
from league.rollout import Episodes, play_episodes, score

__all__ = ["DeepMATRLConfig", "TASK_KEYS", "merge_tables", "task_config", "interpolate", "DeepRound", "VARIANTS", "PPOTrustRegion", "best_response", "best_response_loss",
           "deep_round", "run_deep_matrl", "seat_generator"]


@dataclass(frozen=True)
class DeepMATRLConfig:
    """One deep MATRL (or ablation) run on a grid world or any registered environment."""

    env: str = "checkers"
    """A registered environment (``league.envs.make_env``): ``checkers``, ``switch``, ..."""
    n_players: int = 2
    """Seats (switch: 2 or 4; checkers: 2; hopper-3x1: 3; ant-4x2: 4)."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """More keyword arguments of the environment's factory (e.g. ``max_steps``, ``observe``)."""
    variant: str = "matrl"
    """``il``, ``il_pp``, ``matrl_no_br`` or ``matrl`` (:data:`VARIANTS`)."""
    policy: str = "mlp_categorical"
    """A registered policy class (``league.policies.POLICIES``): ``mlp_categorical`` for
    Discrete actions, ``mlp_gaussian`` for Box actions."""
    policy_kwargs: dict[str, Any] = field(default_factory=dict)
    """More keyword arguments of the policy class (``hidden`` is ``ppo.hidden``), e.g.
    ``activation``, ``init_log_std``."""
    episodes: int = 24
    """K: episodes per iteration (the trust-region step's batch, reused by the meta-game and the
    best response)."""
    iterations: int = 40
    """Learning iterations."""
    ppo: PPOConfig = field(default_factory=PPOConfig)
    """The trust-region step (Table 3's coefficients)."""
    br_lr: float = 0.002
    """Adam step size of the best response (Table 3: 0.002)."""
    br_steps: int = 5
    """Gradient steps of the best response (Table 3: 5)."""
    br_clip: float = 0.1
    """``c_bar``: the peers' importance weight is clipped to ``[1 - c_bar, 1 + c_bar]`` (Table 3: 0.1)."""
    solvers: list[str] = field(default_factory=lambda: ["pure", "support-enumeration", "lyapunov"])
    """Meta-game Nash solvers tried in order (2-player-only ones are skipped for more seats)."""
    nash_eps: float = 1e-6
    """A meta-game profile is used only if no pure deviation gains more than this."""

    def solvers_for(self, n: int) -> list[str]:
        two_only = {"closed-form-2x2", "support-enumeration", "nashpy"}
        return [s for s in self.solvers if n == 2 or s not in two_only]


TASK_KEYS = {"variants", "value_coef", "name", "metric", "metric_label"}
"""Keys of an experiment config's ``[[task]]`` table that are not DeepMATRLConfig fields."""


def merge_tables(base: dict, over: dict) -> dict:
    """``over`` on top of ``base``, tables merged key by key."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merge_tables(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def task_config(base: dict, task: dict) -> DeepMATRLConfig:
    """A ``[[task]]`` table's DeepMATRLConfig in an experiment config (``configs/matrl/*.toml``):
    its fields over ``[base]``; ``value_coef`` sets ``ppo.value_coef`` (variant still the base's)."""
    table = merge_tables(base, {k: v for k, v in task.items() if k not in TASK_KEYS})
    if "value_coef" in task:
        table = merge_tables(table, {"ppo": {"value_coef": task["value_coef"]}})
    return build(DeepMATRLConfig, table, f"task {task.get('name', task.get('env'))}")


def best_response_loss(logp: torch.Tensor, logp_behaviour: torch.Tensor, peer_log_ratio: torch.Tensor,
                       advantages: torch.Tensor, mask: torch.Tensor, ratio_clip: float, peer_clip: float
                       ) -> torch.Tensor:
    """The best-response loss (to minimise), inputs ``[B, K, H]``: the PPO-clipped surrogate of
    the seat's own ratio ``pi_theta / pi`` with advantages times the peers' truncated weight
    ``c = clip(exp(peer_log_ratio), 1 - peer_clip, 1 + peer_clip)`` (the paper's ``c_{-i}``)."""
    c = torch.exp(peer_log_ratio).clamp(1 - peer_clip, 1 + peer_clip).detach()
    adv = advantages.detach() * c
    ratio = torch.exp(logp - logp_behaviour.detach())
    surrogate = torch.minimum(ratio * adv, ratio.clamp(1 - ratio_clip, 1 + ratio_clip) * adv)
    return -masked_mean(surrogate, mask)


def best_response(policy: Policy, start: Params, episodes: Episodes, seat: int, logp_behaviour: torch.Tensor,
                  advantages: torch.Tensor, peer_log_ratio: torch.Tensor, lr: float, steps: int, ratio_clip: float,
                  peer_clip: float) -> Params:
    """Seat ``seat``'s best response to its peers' mixtures (Algorithm 2, line 15): ``steps``
    Adam steps of size ``lr`` from ``start`` (its predicted parameters) on
    :func:`best_response_loss`, with the behaviour log-probabilities and GAE advantages of its
    own PPO step (``PPOStep.logp_old``, ``PPOStep.advantages``) and the peers' per-step log
    importance weight ``peer_log_ratio [B, K, H]`` (``league.matrl.sampled.peer_log_ratios``)."""
    mask = alive_mask(episodes)
    live = {k: v.detach().clone().requires_grad_(True) for k, v in start.items()}
    optimizer = torch.optim.Adam(list(live.values()), lr=lr)
    policies: list[Policy | None] = [None] * episodes.n_agents
    policies[seat] = policy
    for _ in range(steps):
        seats: list[Params | None] = [None] * episodes.n_agents
        seats[seat] = live
        logp = score(policies, seats, episodes).logp[seat]
        loss = best_response_loss(logp, logp_behaviour, peer_log_ratio, advantages, mask, ratio_clip, peer_clip)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return {k: v.detach() for k, v in live.items()}


def seat_generator(seed: int, seat: int) -> torch.Generator:
    """The generator of seat ``seat``'s own randomness in a run seeded ``seed``: first its
    critic's initial weights, then its PPO minibatch order, round after round. Derived from
    ``(seed, seat)`` alone (numpy's ``SeedSequence`` mixes the pair into a 64-bit seed), so an
    agent process seated at ``seat`` draws what the embedded run draws for that seat."""
    if seed < 0 or seat < 0:
        raise ValueError(f"seed and seat must be >= 0, got {seed} and {seat}")
    words = np.random.SeedSequence([seed, seat]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(((int(words[1]) << 32) | int(words[0])) & (2**63 - 1))


@dataclass
class PPOTrustRegion:
    """The ``ppo-matrl`` update rule (``league.updates.UPDATE_RULES``): a seat's PPO trust-region
    step (:func:`ppo_step`) with its learner-local state, the critic and the seat's generator.
    An agent process with this rule publishes the predicted parameters as kind ``predicted``
    and, on the coordinator's mixture, takes :func:`best_response` from the step's own
    advantages and behaviour log-probabilities (``agents/matrl.py``)."""

    learns = True
    needs_rollouts = False
    policy: Any = None
    """The seat's policy (``league.policies``); required by ``step``."""
    ppo: PPOConfig = field(default_factory=PPOConfig)
    """The PPO step's coefficients."""
    critic: Critic | None = None
    """The seat's value network (learner-local, fitted in place by every step)."""
    generator: torch.Generator | None = None
    """The seat's generator (:func:`seat_generator`): its PPO minibatch order."""

    @classmethod
    def for_seat(cls, policy: Policy, observation_space: Any, ppo: PPOConfig, seed: int, seat: int
                 ) -> "PPOTrustRegion":
        """Seat ``seat``'s rule in a run seeded ``seed``: its generator, and its critic drawn from it."""
        generator = seat_generator(seed, seat)
        return cls(policy, ppo, Critic(flat_dim(observation_space), ppo, generator), generator)

    def step(self, params: Params, episodes: Episodes, seat: int) -> PPOStep:
        """The seat's PPO step on the episodes its ``params`` played (the critic is fitted)."""
        if self.policy is None or self.critic is None:
            raise ValueError("the ppo-matrl rule needs the seat's policy and critic (PPOTrustRegion.for_seat)")
        return ppo_step(self.policy, params, self.critic, episodes, seat, self.ppo, self.generator)

    def update(self, evaluator: Any, params: Sequence[Params], data: Any, k: int, lrs: Sequence[torch.Tensor],
               step: int, create_graph: bool) -> Params:
        return self.step(params[k], data, k).params

    def state_dict(self) -> dict[str, Any]:
        """The learner-local state as plain tensors sharing nothing with the rule: ``critic``
        (the weights, in order), ``critic_optimizer`` (Adam's moments and step counts),
        ``generator`` (``Generator.get_state()``, None without one). An agent process checkpoints
        it after every completed round, so a restarted seat continues as the embedded run would."""
        if self.critic is None:
            raise ValueError("the rule has no critic (PPOTrustRegion.for_seat builds one)")
        return {"critic": [w.detach().clone() for w in self.critic.weights],
                "critic_optimizer": copy.deepcopy(self.critic.optimizer.state_dict()),
                "generator": None if self.generator is None else self.generator.get_state().clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Put :meth:`state_dict`'s ``state`` into this rule (built for the same seat and critic
        shape): the critic's weights in place, Adam's state, the generator's state. ValueError if
        the critic's shapes differ or only one side has a generator."""
        if self.critic is None:
            raise ValueError("the rule has no critic (PPOTrustRegion.for_seat builds one)")
        weights, saved = self.critic.weights, state["critic"]
        if [tuple(w.shape) for w in weights] != [tuple(x.shape) for x in saved]:
            raise ValueError(f"saved critic shapes {[tuple(x.shape) for x in saved]} do not fit the critic's "
                             f"{[tuple(w.shape) for w in weights]}")
        if (state["generator"] is None) != (self.generator is None):
            raise ValueError("the saved state and the rule disagree on having a generator")
        with torch.no_grad():
            for w, x in zip(weights, saved):
                w.copy_(x)
        # Adam keeps the loaded moment tensors and updates them in place: give it copies
        self.critic.optimizer.load_state_dict(copy.deepcopy(state["critic_optimizer"]))
        if self.generator is not None:
            self.generator.set_state(state["generator"])

    def working_copy(self, **changes: Any) -> "PPOTrustRegion":
        """A copy sharing no mutable state with this rule (critic weights, Adam state, generator),
        with dataclass fields replaced by ``changes`` (e.g. a round's ``ppo``): a league round's
        step runs on it, and it replaces the seat's rule only when the round completes, so a
        voided round leaves the committed state untouched."""
        critic = copy.deepcopy(self.critic)  # the copied optimizer refers to the copied weights (deepcopy's memo)
        generator = None
        if self.generator is not None:
            generator = torch.Generator()
            generator.set_state(self.generator.get_state())
        return dataclasses.replace(self, critic=critic, generator=generator, **changes)


@dataclass
class DeepRound:
    """What one iteration computed (one group, ``B = 1``)."""

    params: list[Params]
    """Each seat's next parameters."""
    predicted: list[Params]
    """Each seat's PPO-predicted parameters."""
    weights: torch.Tensor | None
    """``[n]`` Nash probability of each seat's predicted policy (None: no meta-game)."""
    metagame: torch.Tensor | None
    """``[n, 2, ..., 2]`` the importance-weighted meta-game (None: not built)."""
    stderr: torch.Tensor | None
    """Its standard error, same shape."""
    solver: str = ""
    """The solver whose profile verified (``""``: none, so ``w = 0``)."""
    stats: list[dict[str, float]] = field(default_factory=list)
    """Each seat's PPO statistics."""


@dataclass
class _Context:
    policies: Sequence[Policy]
    params: Sequence[Params]
    predicted: list[Params]
    advantages: list[torch.Tensor]
    logp_old: list[torch.Tensor]
    episodes: Episodes
    cfg: DeepMATRLConfig

    stderr: torch.Tensor | None = None
    _scores: RoundScores | None = None

    @property
    def scores(self) -> RoundScores:
        """The round's log-probabilities, scored once: the current ones are the PPO steps' own
        ``logp_old``, so only the predicted parameters are scored again."""
        if self._scores is None:
            self._scores = score_round(self.policies, self.params, self.predicted, self.episodes, self.logp_old)
        return self._scores

    def metagame(self) -> tuple[torch.Tensor, torch.Tensor, str]:
        meta, se = round_metagame(self.scores, self.episodes, self.cfg.ppo.gamma)
        self.stderr = se[0]
        w, _, names = nash_weights(meta, self.cfg.solvers_for(len(self.policies)), self.cfg.nash_eps)
        return meta[0], w, names[0]

    def best_responses(self, w: torch.Tensor) -> list[Params]:
        ratios = peer_log_ratios(self.scores, w)
        c = self.cfg
        return [best_response(self.policies[k], self.predicted[k], self.episodes, k, self.logp_old[k],
                              self.advantages[k], ratios[k], c.br_lr, c.br_steps, c.ppo.clip, c.br_clip)
                for k in range(len(self.policies))]


def _il(ctx: _Context) -> tuple[list[Params], torch.Tensor | None, torch.Tensor | None, str]:
    return ctx.predicted, None, None, ""


def _il_pp(ctx: _Context) -> tuple[list[Params], torch.Tensor | None, torch.Tensor | None, str]:
    w = torch.ones(1, len(ctx.policies), dtype=ctx.episodes.rewards.dtype)
    return ctx.best_responses(w), w[0], None, ""


def interpolate(params: Params, predicted: Params, weight: torch.Tensor | float) -> Params:
    """``(1 - w) theta + w theta_hat`` per tensor: ``matrl_no_br``'s aggregated policy (the
    authors' parameter interpolation), and at ``w = 1`` the prediction itself, bit for bit
    (``0 * theta + theta_hat``): what a league agent answers for ``il`` and ``matrl_no_br``."""
    return {name: (1 - weight) * params[name] + weight * predicted[name] for name in params}


def _matrl_no_br(ctx: _Context) -> tuple[list[Params], torch.Tensor | None, torch.Tensor | None, str]:
    meta, w, solver = ctx.metagame()
    out = [interpolate(ctx.params[k], ctx.predicted[k], w[0, k]) for k in range(len(ctx.policies))]
    return out, w[0], meta, solver


def _matrl(ctx: _Context) -> tuple[list[Params], torch.Tensor | None, torch.Tensor | None, str]:
    meta, w, solver = ctx.metagame()
    return ctx.best_responses(w), w[0], meta, solver


#: The next parameters of each variant, from one iteration's PPO steps (see the module docstring).
VARIANTS: dict[str, Callable[[_Context], tuple[list[Params], torch.Tensor | None, torch.Tensor | None, str]]] = {
    "il": _il,
    "il_pp": _il_pp,
    "matrl_no_br": _matrl_no_br,
    "matrl": _matrl,
}


def deep_round(policies: Sequence[Policy], params: Sequence[Params], critics: Sequence[Critic], episodes: Episodes,
               cfg: DeepMATRLConfig, generators: Sequence[torch.Generator | None] | None = None) -> DeepRound:
    """One iteration of ``cfg.variant`` from ``episodes`` (``B = 1``) the current ``params``
    played; ``generators[k]`` is seat ``k``'s (:func:`seat_generator`; None: unshuffled
    minibatches only)."""
    if cfg.variant not in VARIANTS:
        raise ValueError(f"unknown variant {cfg.variant!r}; known: {', '.join(VARIANTS)}")
    n = len(policies)
    generators = list(generators) if generators is not None else [None] * n
    if len(generators) != n:
        raise ValueError(f"{len(generators)} generators for {n} seats")
    steps = [PPOTrustRegion(policies[k], cfg.ppo, critics[k], generators[k]).step(params[k], episodes, k)
             for k in range(n)]
    ctx = _Context(policies, params, [s.params for s in steps], [s.advantages for s in steps],
                   [s.logp_old for s in steps], episodes, cfg)
    new, w, meta, solver = VARIANTS[cfg.variant](ctx)
    return DeepRound(new, ctx.predicted, w, meta, ctx.stderr, solver, [s.stats for s in steps])


def run_deep_matrl(cfg: DeepMATRLConfig, seed: int, env: Environment | None = None,
                   log: Callable[[dict[str, Any]], None] | None = None,
                   checkpoint: Callable[[int, list[Params]], None] | None = None,
                   params: Sequence[Params] | None = None, iterations: int | None = None) -> list[dict[str, Any]]:
    """``iterations`` (default ``cfg.iterations``) iterations from seed ``seed``; one record per
    iteration: the mean undiscounted return per seat of the iteration's episodes (played by the
    policies before the update), their sum (the team return), the Nash weights, the meta-game,
    the solver, wall time. ``checkpoint(iteration, params)``, if given, receives every seat's
    parameters after each iteration's update (to keep the ones a cross-play evaluation needs).

    Random streams: the policies' initial parameters (unless ``params`` gives them) and then
    every iteration's episodes come from one generator seeded ``seed`` (in the league, the
    coordinator's); seat ``k``'s critic and minibatch order from ``seat_generator(seed, k)``.
    Results committed before the per-seat generators were produced with the earlier single
    stream (docs/matrl.md says which commit reproduces them)."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    env = env or make_env(cfg.env, n_players=cfg.n_players, **cfg.env_kwargs)
    n = env.n_agents
    policies = [make_policy(cfg.policy, env.observation_spaces[k], env.action_spaces[k],
                            **{"hidden": cfg.ppo.hidden, **cfg.policy_kwargs}) for k in range(n)]
    params = list(params) if params is not None else [p.init_params(g) for p in policies]
    rules = [PPOTrustRegion.for_seat(policies[k], env.observation_spaces[k], cfg.ppo, seed, k) for k in range(n)]
    critics, generators = [r.critic for r in rules], [r.generator for r in rules]
    records = []
    for it in range(cfg.iterations if iterations is None else iterations):
        t0 = time.perf_counter()
        episodes = play_episodes(env, policies, params, 1, cfg.episodes, g)
        out = deep_round(policies, params, critics, episodes, cfg, generators)
        params = out.params
        returns = episodes.rewards.sum(2).mean(dim=(0, 1))  # [n]
        rec = {"iteration": it, "seed": seed, "method": cfg.variant, "team_return": float(returns.sum()),
               **{f"return_{k}": float(returns[k]) for k in range(n)},
               "steps": int(alive_mask(episodes).sum()), "seconds": time.perf_counter() - t0,
               "weights": None if out.weights is None else out.weights.tolist(), "solver": out.solver,
               "metagame": None if out.metagame is None else out.metagame.flatten().tolist()}
        records.append(rec)
        if log is not None:
            log(rec)
        if checkpoint is not None:
            checkpoint(it, params)
    return records
