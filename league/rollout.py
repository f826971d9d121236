"""Batched episodes under a joint policy: ``B`` chains x ``K`` episodes x ``H`` steps, one
Python step per time step and every agent a tensor op.

:func:`play` runs any :class:`~league.envs.Environment` (each seat samples from its policy's
distribution); :func:`sample_episodes` is the iterated-matrix-game case the Meta-MAPG chain,
the referee and the agents use. Sampling and scoring are separate so that every consumer of
trajectories (the embedded chain, an agent process learning from a referee's broadcast, the
coordinator's replica) computes log-probabilities with the same function, :func:`score`,
from the same data.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import torch

from league.envs.base import Environment, flat_obs
from league.envs.matrix import MatrixGameEnv
from league.games.iterated import IteratedMatrixGame
from league.policies.base import Params, Policy, categorical_cdf, policy_sequence
from league.policies.distributions import Categorical


@dataclass
class Episodes:
    """What was played: the data a referee broadcasts and every learner scores.

    In an iterated matrix game every seat sees one shared state and picks a discrete action,
    so ``obs`` is that state ``[B, K, H, S]`` and ``actions`` the joint actions
    ``long [B, K, H, n]``. Any other environment (per-seat observations, ``Box`` actions, real
    termination) also fills ``seat_obs``/``seat_actions`` (seat ``k``'s flat observations
    ``[B, K, H, D_k]`` and actions ``long [B, K, H]`` or ``float [B, K, H, *shape]``) and
    ``dones``; read a seat through :meth:`obs_of` and :meth:`actions_of`. With ``dones``,
    every step after an episode's end is padding: it earns nothing and is masked out of every
    log-probability (:meth:`alive`), so whatever action a padding step holds never moves a
    gradient."""

    obs: torch.Tensor  # [B, K, H, S] the shared state (seat 0's observation when seats differ)
    actions: torch.Tensor | None  # [B, K, H, n] long joint actions; None when seats' actions differ in kind
    rewards: torch.Tensor  # [B, K, H, n]
    dones: torch.Tensor | None = None  # [B, K, H] bool: the episode was over after step t
    seat_obs: list[torch.Tensor] | None = None
    seat_actions: list[torch.Tensor] | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.rewards.shape[:3])  # type: ignore[return-value]

    @property
    def n_agents(self) -> int:
        return self.rewards.shape[-1]

    def obs_of(self, k: int) -> torch.Tensor:
        """What seat ``k`` read before acting, ``[B, K, H, D_k]``."""
        return self.obs if self.seat_obs is None else self.seat_obs[k]

    def actions_of(self, k: int) -> torch.Tensor:
        """What seat ``k`` did: ``long [B, K, H]`` or ``float [B, K, H, *shape]``."""
        return self.actions[..., k] if self.seat_actions is None else self.seat_actions[k]  # type: ignore[index]

    def alive(self) -> torch.Tensor | None:
        """``[B, K, H]`` 1.0 at the steps an episode really took (through the one that ended
        it), 0.0 at padding; None when no episode ended before the last step (nothing to mask)."""
        if self.dones is None or not bool(self.dones[..., :-1].any()):
            return None
        ended_before = (self.dones.long().cumsum(-1) - self.dones.long()) > 0
        return (~ended_before).to(self.rewards.dtype)

    @classmethod
    def cat(cls, parts: Sequence["Episodes"]) -> "Episodes":
        """Episodes of several chains as one batch (concatenated on the chain dimension)."""
        def join(values):
            if values[0] is None:
                return None
            if isinstance(values[0], list):
                return [torch.cat(seat) for seat in zip(*values)]
            return torch.cat(values)
        return cls(*(join([getattr(e, f.name) for e in parts]) for f in dataclasses.fields(Episodes)))

    @classmethod
    def of(cls, traj: "Trajectories") -> "Episodes":
        """The episodes of a :func:`play`: shared state and joint actions where the seats
        share them (a matrix game gives exactly :func:`sample_episodes`' tensors), per seat
        otherwise; ``dones`` are kept."""
        shared_obs = all(o is traj.obs[0] for o in traj.obs)
        discrete = all(a.dtype == torch.long and a.dim() == 3 for a in traj.actions)
        return cls(obs=traj.obs[0], actions=torch.stack(traj.actions, dim=-1) if discrete else None,
                   rewards=traj.rewards, dones=traj.dones,
                   seat_obs=None if shared_obs else list(traj.obs),
                   seat_actions=None if discrete else list(traj.actions))


@dataclass(kw_only=True)
class Batch(Episodes):
    """Episodes scored under the parameters that played them.

    ``logp[k]`` and ``entropy[k]`` carry the autograd graph back to seat ``k``'s parameters
    (when scored with gradients enabled); ``probs[k]`` is detached.
    """

    logp: list[torch.Tensor]  # n x [B, K, H]
    entropy: list[torch.Tensor]  # n x [B, K, H]
    probs: list[torch.Tensor]  # n x [B, K, H, A]


@dataclass
class Trajectories:
    """Episodes of any :class:`~league.envs.Environment`, seat by seat.

    ``obs[k]`` is what seat ``k``'s policy read before acting (flattened, ``[B, K, H, D_k]``),
    ``actions[k]`` what it sampled (long ``[B, K, H]`` or float ``[B, K, H, *shape]``; a ``Box``
    action is clipped to its bounds only when handed to the environment), ``dones[..., t]``
    whether the episode was over after step ``t`` (a step after that is padding: zero reward).
    ``H`` is the step at which every episode of the batch was over (at most ``env.max_steps``).
    """

    obs: list[torch.Tensor]
    actions: list[torch.Tensor]
    rewards: torch.Tensor  # [B, K, H, n]
    dones: torch.Tensor  # [B, K, H] bool


def _check_seats(n: int, name: str, policies: Sequence[Policy], params: Sequence[Params]) -> None:
    if len(policies) != n or len(params) != n:
        raise ValueError(f"{name} has {n} seats; got {len(policies)} policies and {len(params)} params")


def _to_env(space, action: torch.Tensor) -> torch.Tensor:
    import gymnasium

    if isinstance(space, gymnasium.spaces.Box):
        low = torch.as_tensor(space.low, dtype=action.dtype, device=action.device)
        high = torch.as_tensor(space.high, dtype=action.dtype, device=action.device)
        return torch.minimum(torch.maximum(action, low), high)
    return action


def _state_tables(env: Environment, policies: Sequence[Policy], params: Sequence[Params]) -> list[torch.Tensor] | None:
    """Every seat's per-state logits ``[B or 1, S, A]`` when ``env`` is an iterated matrix game
    and every policy is a table of its shared state (``policy.state_logits``); else None."""
    if not isinstance(env, MatrixGameEnv) or not all(hasattr(policy, "state_logits") for policy in policies):
        return None
    return [policy.state_logits(p) for policy, p in zip(policies, params)]  # type: ignore[attr-defined]


def _play_tables(env: MatrixGameEnv, logits: Sequence[torch.Tensor], n_chains: int, n_episodes: int,
                 generator: torch.Generator, dtype: torch.dtype) -> Trajectories:
    """:func:`play` of an iterated matrix game whose seats are tables of the state.

    One draw of uniforms ``u[H, B, K, n]`` (float64) serves the whole batch. Each step takes
    every seat's action by inverse CDF (:func:`~league.policies.base.sample_inverse_cdf`: the
    number of its cumulative probabilities in the current state that are ``<= u``) and the
    next state, the joint action + 1, in integer arithmetic. The count and the ravel index
    are one weighted sum, so a step is 4 ops for all seats (row lookup, compare, weight, sum)
    plus the next row. States, one-hot observations and rewards are made from the joint
    actions after the loop. The episodes have the law that stepping the policies gives;
    the random numbers are used differently (inverse CDF, not Gumbel-max per step)."""
    game = env.game
    B, K, H, n, A, S = n_chains, n_episodes, env.max_steps, game.n_agents, game.n_actions, game.n_states
    device = logits[0].device
    cdf = torch.stack([categorical_cdf(table).expand(B, S, A) for table in logits], dim=2)  # [B, S, n, A]
    rows = cdf.reshape(B * S, n * A)  # chain b's state s is row b * S + s
    strides = A ** torch.arange(n - 1, -1, -1, device=device)  # [n] ravel weights, seat 0 most significant
    weights = strides.repeat_interleave(A)  # [n * A]: entry (k, i) counts stride_k when cdf_k[i] <= u_k
    first_row = torch.arange(B, device=device).mul_(S).repeat_interleave(K)  # [B * K] each episode's row of s0
    next_row = first_row + 1  # after joint action j the state is j + 1
    u = torch.rand((H, B, K, n, 1), generator=generator, dtype=torch.float64, device=device)
    u_rows = u.expand(H, B, K, n, A).reshape(H, B * K, n * A).unbind(0)
    row = first_row
    joints = []
    for u_t in u_rows:
        joint = (rows.index_select(0, row) <= u_t).mul(weights).sum(-1)  # [B * K] ravel index
        joints.append(joint)
        row = joint + next_row
    joint = torch.stack(joints, dim=-1).reshape(B, K, H)
    actions = joint.unsqueeze(-1).div(strides, rounding_mode="floor").remainder_(A)  # [B, K, H, n]
    states = torch.cat([joint.new_zeros(B, K, 1), joint[..., :-1] + 1], dim=-1)
    obs = flat_obs(env.observation_spaces[0], states, dtype)
    dones = torch.zeros(B, K, H, dtype=torch.bool, device=device)
    dones[..., -1] = True  # truncated after the last round
    return Trajectories(obs=[obs] * n, actions=[a.contiguous() for a in actions.unbind(-1)],
                        rewards=game.joint_payoff[joint].to(env.dtype).to(dtype), dones=dones)  # as env.step, then play


@torch.no_grad()
def play(env: Environment, policies: Sequence[Policy], params: Sequence[Params], n_chains: int,
         n_episodes: int, generator: torch.Generator, seed: int | None = None,
         dtype: torch.dtype = torch.float32) -> Trajectories:
    """Play ``n_episodes`` episodes in each of ``n_chains`` chains of ``env`` until every one is
    over: every step, each seat in order samples from ``policy.distribution`` through
    ``generator``, then the environment steps the whole ``[B, K]`` batch. An iterated matrix
    game whose seats are all tables of the state (``Tabular``) is sampled by
    :func:`_play_tables` instead: the same law, fewer ops, another use of the random stream.

    The policies act on ``generator.device``; an environment that keeps its tensors elsewhere
    (``env.device``, the CPU when it has none: numpy simulators such as MuJoCo) gets the
    actions moved there and its observations, rewards and ends moved back, once per step."""
    _check_seats(env.n_agents, env.name, policies, params)
    B, K = n_chains, n_episodes
    tables = _state_tables(env, policies, params)
    if tables is not None:
        return _play_tables(env, tables, B, K, generator, dtype)  # type: ignore[arg-type]
    device, env_device = generator.device, getattr(env, "device", torch.device("cpu"))
    ts = env.reset((B, K), seed)
    rec = [policy.initial_state(p, (B, K)) for policy, p in zip(policies, params)]
    obs_t: list[list[torch.Tensor]] = [[] for _ in policies]
    act_t: list[list[torch.Tensor]] = [[] for _ in policies]
    rew_t, done_t = [], []
    for _ in range(env.max_steps):
        actions = []
        for k, (policy, p) in enumerate(zip(policies, params)):
            # a seat reading the same state as the seat before reuses its encoding (made and moved once)
            if not (k and ts.obs[k] is ts.obs[k - 1] and env.observation_spaces[k] == env.observation_spaces[k - 1]):
                obs = flat_obs(env.observation_spaces[k], ts.obs[k], dtype).to(device)
            out, rec[k] = policy.step(p, obs, rec[k])
            out = out.expand(B, K, *out.shape[2:])
            actions.append(policy.distribution(p, out).sample(generator))
            obs_t[k].append(obs)
            act_t[k].append(actions[k])
        ts = env.step([_to_env(space, a.to(env_device)) for space, a in zip(env.action_spaces, actions)])
        rew_t.append(ts.rewards.to(device=device, dtype=dtype))
        done_t.append(ts.dones.to(device))
        if bool(ts.dones.all()):
            break
    obs: list[torch.Tensor] = []
    for k, o in enumerate(obs_t):  # seats that read one shared state share one tensor
        shared = k > 0 and all(x is y for x, y in zip(o, obs_t[k - 1]))
        obs.append(obs[-1] if shared else torch.stack(o, dim=2))
    return Trajectories(obs=obs, actions=[torch.stack(a, dim=2) for a in act_t],
                        rewards=torch.stack(rew_t, dim=2), dones=torch.stack(done_t, dim=2))


def sample_episodes(game: IteratedMatrixGame, policies: Sequence[Policy], params: Sequence[Params],
                    n_chains: int, n_episodes: int, horizon: int, generator: torch.Generator,
                    dtype: torch.dtype = torch.float32) -> Episodes:
    """Play ``n_episodes`` episodes of ``horizon`` steps in each of ``n_chains`` chains: :func:`play`
    on the game's environment, every seat seeing the shared one-hot state."""
    _check_seats(game.n_agents, game.name, policies, params)
    traj = play(MatrixGameEnv(game, horizon, dtype), policies, params, n_chains, n_episodes, generator, dtype=dtype)
    return Episodes(obs=traj.obs[0], actions=torch.stack(traj.actions, dim=-1), rewards=traj.rewards)


def reset_seed(env: Environment, generator: torch.Generator) -> int | None:
    """The reset seed of one batch of ``env``'s episodes, drawn from ``generator``: every process
    that plays a step from the same random stream (the embedded chain's evaluator, the referee)
    starts its episodes in the same states. ``None``, and no draw, for an environment whose
    episodes all start alike (``random_reset = False``: the matrix games, the grid worlds), so
    their streams are what they were before seeds were drawn."""
    if not getattr(env, "random_reset", True):
        return None
    return int(torch.randint(2**31 - 1, (), generator=generator, device=generator.device))


def play_episodes(env: Environment, policies: Sequence[Policy], params: Sequence[Params], n_chains: int,
                  n_episodes: int, generator: torch.Generator, dtype: torch.dtype = torch.float32,
                  seed: int | None = None) -> Episodes:
    """:func:`play` any environment and return its :class:`Episodes` (with ``dones``); ``seed``
    seeds the environment's reset (its initial states), None leaves them to the environment."""
    return Episodes.of(play(env, policies, params, n_chains, n_episodes, generator, seed=seed, dtype=dtype))


def score(policies: Sequence[Policy | None], params: Sequence[Params | None], episodes: Episodes) -> Batch:
    """Log-probabilities, entropies and probabilities of the played actions under
    ``params``: differentiable functions of the parameters (the actions are data). The
    policies are stepped exactly as during sampling, so the numbers are the ones that
    produced the actions. A seat whose policy is ``None`` is not scored (an agent process
    knows only its own parameters); its entries are ``None``."""
    logp: list[torch.Tensor] = []
    entropy: list[torch.Tensor] = []
    probs: list[torch.Tensor] = []
    alive = episodes.alive()
    for k, (policy, p) in enumerate(zip(policies, params)):
        if policy is None or p is None:
            logp.append(None)  # type: ignore[arg-type]
            entropy.append(None)  # type: ignore[arg-type]
            probs.append(None)  # type: ignore[arg-type]
            continue
        dist = policy.distribution(p, policy_sequence(policy, p, episodes.obs_of(k)))  # over [B, K, H]
        lp, ent = dist.log_prob(episodes.actions_of(k)), dist.entropy()
        if alive is not None:  # padding after an episode's end: no log-probability, no entropy
            lp, ent = lp * alive, ent * alive
        logp.append(lp)
        entropy.append(ent)
        probs.append(dist.log_probs.exp().detach() if isinstance(dist, Categorical) else None)  # type: ignore[arg-type]
    return Batch(obs=episodes.obs, actions=episodes.actions, rewards=episodes.rewards, dones=episodes.dones,
                 seat_obs=episodes.seat_obs, seat_actions=episodes.seat_actions,
                 logp=logp, entropy=entropy, probs=probs)


def seat_logp(policy: Policy, params: Params, episodes: Episodes, seat: int) -> torch.Tensor:
    """Seat ``seat``'s log-probabilities of its own actions ``[B, K, H]`` under ``params``
    (differentiable; padding masked): what a learner that knows only its own parameters scores."""
    n = episodes.n_agents
    return score([policy if m == seat else None for m in range(n)],
                 [params if m == seat else None for m in range(n)], episodes).logp[seat]


def rollout(game: IteratedMatrixGame, policies: Sequence[Policy], params: Sequence[Params],
            n_chains: int, n_episodes: int, horizon: int, generator: torch.Generator,
            dtype: torch.dtype = torch.float32) -> Batch:
    """Sample, then score: what a chain step observes."""
    episodes = sample_episodes(game, policies, params, n_chains, n_episodes, horizon, generator, dtype)
    return score(policies, params, episodes)
