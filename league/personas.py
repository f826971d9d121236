"""Persona populations: the peers' initial policies, split into train/val/test.

Personas are the opponent populations of the Meta-MAPG experiments: IPD (cooperating vs.
defecting) and RPS (rock, paper or scissors dominant), seeded generators of probability
tensors ``[S, A]`` (turn them into logits with ``log(p)``). A split's *pool* is either such a
probability tensor ``[N, S, A]`` (the tabular personas as generated) or a batched parameter
dict ``{name: [N, ...]}`` of any registered peer policy class (e.g. HalfCheetah teammates
loaded from checkpoints, :mod:`league.teammates`); :func:`take` and :func:`pool_size` read
both. Where a population comes from is a *source* (:data:`PERSONA_SOURCES`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Union

import torch

__all__ = ["PersonaSplit", "Pool", "POPULATIONS", "make_personas", "ipd_personas", "rps_personas", "take",
           "pool_size", "map_pools"]

Pool = Union[torch.Tensor, dict[str, torch.Tensor]]
"""Personas stacked on the first dimension: probabilities ``[N, S, A]`` or parameters ``{name: [N, ...]}``."""


@dataclass
class PersonaSplit:
    """A pool of personas per split (probabilities ``[N, S, A]`` or parameters
    ``{name: [N, ...]}``, see :data:`Pool`) and the type name of every persona."""

    train: Pool
    val: Pool
    test: Pool
    train_types: list[str]
    val_types: list[str]
    test_types: list[str]
    type_names: tuple[str, ...]


def take(pool: Pool, index: torch.Tensor) -> Pool:
    """The personas at ``index`` (any shape; it becomes the leading dimensions of every tensor)."""
    if isinstance(pool, dict):
        return {name: value[index] for name, value in pool.items()}
    return pool[index]


def pool_size(pool: Pool) -> int:
    """How many personas a pool holds (its first dimension)."""
    first = next(iter(pool.values())) if isinstance(pool, dict) else pool
    return int(first.shape[0])


def map_pools(split: PersonaSplit, fn: Callable[[Pool], Pool]) -> PersonaSplit:
    """The same split with ``fn`` applied to each of its three pools (types unchanged)."""
    return replace(split, train=fn(split.train), val=fn(split.val), test=fn(split.test))


def _check_sizes(sizes: Sequence[int], n_types: int, n_per_type: int) -> tuple[int, int, int]:
    if len(sizes) != 3:
        raise ValueError(f"sizes must be (train, val, test), got {tuple(sizes)}")
    if any(s < 0 or s % n_types for s in sizes):
        raise ValueError(f"every split size must be a non-negative multiple of {n_types} types, got {tuple(sizes)}")
    if sum(sizes) > n_types * n_per_type:
        raise ValueError(
            f"sizes {tuple(sizes)} need {sum(sizes)} personas but only "
            f"{n_types} types x {n_per_type} = {n_types * n_per_type} are generated"
        )
    return sizes[0], sizes[1], sizes[2]


def _split(
    pools: list[torch.Tensor],
    type_names: tuple[str, ...],
    sizes: Sequence[int],
    gen: torch.Generator,
    test_order: list[torch.Tensor] | None = None,
) -> PersonaSplit:
    """Stratified split of per-type pools ``[n_per_type, S, A]`` into shuffled train/val/test.

    With ``test_order`` (per type, indices sorted most extreme first) the test personas are the
    first ones of that order and the rest go to train/val at random.
    """
    n_types = len(pools)
    n_tr, n_va, n_te = (s // n_types for s in _check_sizes(sizes, n_types, pools[0].shape[0]))
    parts: dict[str, list[tuple[torch.Tensor, list[str]]]] = {"train": [], "val": [], "test": []}
    for t, pool in enumerate(pools):
        if test_order is None:
            perm = torch.randperm(pool.shape[0], generator=gen)
            te, rest = perm[:n_te], perm[n_te:]
        else:
            te, rest = test_order[t][:n_te], test_order[t][n_te:]
            rest = rest[torch.randperm(rest.shape[0], generator=gen)]
        tr, va = rest[:n_tr], rest[n_tr : n_tr + n_va]
        for key, idx in (("train", tr), ("val", va), ("test", te)):
            parts[key].append((pool[idx], [type_names[t]] * idx.shape[0]))
    out: dict[str, object] = {}
    for key, chunks in parts.items():
        x = torch.cat([c[0] for c in chunks])
        names = [name for c in chunks for name in c[1]]
        order = torch.randperm(x.shape[0], generator=gen)
        out[key] = x[order]
        out[f"{key}_types"] = [names[i] for i in order.tolist()]
    return PersonaSplit(type_names=type_names, **out)  # type: ignore[arg-type]


def ipd_personas(
    seed: int,
    n_per_type: int = 240,
    sizes: Sequence[int] = (400, 40, 40),
    out_of_distribution: bool = False,
    dtype: torch.dtype = torch.float32,
) -> PersonaSplit:
    """IPD personas ``[N, 5, 2]`` (column 1 = P(defect)) of types "cooperating" and "defecting".

    Cooperating: P(defect) ~ U(0, 0.5) independently in each of the 5 states; defecting:
    P(defect) ~ U(0.5, 1). Every split holds equally many of each type, shuffled by ``seed``.
    The persona pool depends only on ``seed`` and ``n_per_type``, not on the split mode.

    ``out_of_distribution=True`` (the paper's Figure 3c, less train/test overlap): per type, the
    test personas are those with the most extreme mean over the 5 states of P(defect) (lowest
    for cooperating, highest for defecting); the remaining ones are split into train/val at
    random. So every test persona is more extreme than every train/val persona of its type.
    """
    gen = torch.Generator().manual_seed(seed)
    names = ("cooperating", "defecting")
    pools, orders = [], []
    for t in range(len(names)):
        p_def = (0.5 * t + 0.5 * torch.rand(n_per_type, 5, generator=gen, dtype=torch.float64)).to(dtype)
        pools.append(torch.stack([1.0 - p_def, p_def], dim=-1))
        # most extreme first: ascending mean P(defect) for cooperating, descending for defecting
        orders.append(torch.argsort(p_def.mean(-1), descending=(t == 1), stable=True))
    return _split(pools, names, sizes, gen, orders if out_of_distribution else None)


def rps_personas(
    seed: int,
    n_per_type: int = 240,
    sizes: Sequence[int] = (600, 60, 60),
    dtype: torch.dtype = torch.float32,
    n_players: int = 2,
) -> PersonaSplit:
    """RPS personas ``[N, 1 + 3**n_players, 3]`` of types "rock", "paper" and "scissors".

    A persona is a tabular policy of the ``n_players``-player game, so it has one row per
    state of that game (10, 28, 82 for 2, 3, 4 players). In each state the type's dominant
    action has probability ~ U(1/3, 1) and the other two actions share the remainder
    equally. Splits are stratified and shuffled by ``seed``; the 2-player pool is the
    same as before ``n_players`` existed.
    """
    if n_players < 2:
        raise ValueError(f"rps personas need n_players >= 2, got {n_players}")
    gen = torch.Generator().manual_seed(seed)
    names = ("rock", "paper", "scissors")
    n_actions = 3
    n_states = 1 + n_actions**n_players
    pools = []
    for t in range(n_actions):
        p_dom = 1.0 / 3.0 + (2.0 / 3.0) * torch.rand(n_per_type, n_states, generator=gen, dtype=torch.float64)
        p = ((1.0 - p_dom) / 2.0).unsqueeze(-1).repeat(1, 1, n_actions)
        p[..., t] = p_dom
        pools.append(p.to(dtype))
    return _split(pools, names, sizes, gen)


def _ipd_population(seed: int, n_players: int, out_of_distribution: bool) -> PersonaSplit:
    return ipd_personas(seed, out_of_distribution=out_of_distribution)


def _rps_population(seed: int, n_players: int, out_of_distribution: bool) -> PersonaSplit:
    if out_of_distribution:
        raise ValueError("rps has no out-of-distribution persona split (IPD only, Figure 3c)")
    return rps_personas(seed, n_players=n_players)


#: Persona populations by game name: ``(seed, n_players, out_of_distribution) -> PersonaSplit``.
POPULATIONS: dict[str, Callable[[int, int, bool], PersonaSplit]] = {
    "ipd": _ipd_population,
    "rps": _rps_population,
}


def make_personas(game: str, seed: int, n_players: int = 2, out_of_distribution: bool = False) -> PersonaSplit:
    """The persona population of a registered game, sized for ``n_players`` seats."""
    try:
        factory = POPULATIONS[game]
    except KeyError:
        raise ValueError(f"no persona population for game {game!r}; known: {', '.join(sorted(POPULATIONS))}") from None
    return factory(seed, n_players, out_of_distribution)


# -- checkpoint personas: parameters of a peer policy saved while it was trained ----------------
CHECKPOINT_PATTERN = "iteration_{:04d}.pt"
#: Type names of a checkpoint split: the train/val personas and the (later, after a gap) test ones.
CHECKPOINT_TYPES = ("early", "late")


def save_checkpoint(directory: str | Path, iteration: int, policy_name: str, params: dict[str, torch.Tensor],
                    expertise: float, policy_kwargs: dict[str, Any] | None = None) -> Path:
    """Save one persona: the parameters ``{name: [1, ...]}`` of a ``policy_name`` policy at a
    training ``iteration``, with its ``expertise`` (the return it earned, for plots)."""
    path = Path(directory) / CHECKPOINT_PATTERN.format(iteration)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"policy": policy_name, "policy_kwargs": dict(policy_kwargs or {}), "iteration": iteration,
                "expertise": float(expertise), "params": {k: v.detach().clone() for k, v in params.items()}}, path)
    return path


def load_checkpoints(directory: str | Path, iterations: Sequence[int]) -> list[dict[str, Any]]:
    """The saved checkpoints of ``iterations``, in that order; a missing one is a clear error."""
    out = []
    for i in iterations:
        path = Path(directory) / CHECKPOINT_PATTERN.format(i)
        if not path.exists():
            raise FileNotFoundError(f"persona checkpoint {path} does not exist (was the population pretrained?)")
        out.append(torch.load(path, weights_only=True))
    return out


def check_fits(checkpoint: dict[str, Any], policy_name: str, template: dict[str, torch.Tensor], where: str) -> None:
    """Refuse a checkpoint that is not a ``policy_name`` policy shaped like ``template``
    (``{name: [1, ...]}``), naming the class or the parameter that does not fit."""
    if checkpoint["policy"] != policy_name:
        raise ValueError(f"{where} holds a {checkpoint['policy']!r} policy, but the peer policy class is {policy_name!r}")
    params = checkpoint["params"]
    if set(params) != set(template):
        raise ValueError(f"{where}: parameters {sorted(params)} do not match the {policy_name!r} policy's {sorted(template)}")
    for name, value in template.items():
        if tuple(params[name].shape[1:]) != tuple(value.shape[1:]):
            raise ValueError(f"{where}: parameter {name!r} has shape {tuple(params[name].shape[1:])}, the "
                             f"{policy_name!r} peer policy needs {tuple(value.shape[1:])} (hidden size or spaces differ)")


def checkpoint_personas(directory: str | Path, policy_name: str, template: dict[str, torch.Tensor],
                        train_val: Sequence[int], test: Sequence[int], n_val: int, seed: int,
                        dtype: torch.dtype = torch.float32) -> PersonaSplit:
    """Personas from the checkpoints of a pretrained peer, split with a gap (Meta-MAPG's
    HalfCheetah population, appendix G.3): iterations ``[train_val[0], train_val[1])`` shuffled
    by ``seed`` into ``n_val`` validation personas and the rest for training, and iterations
    ``[test[0], test[1])`` for testing. The test range must start after the train/val range
    ends, so meta-test teammates are more expert than any met in meta-training."""
    (a, b), (c, d) = tuple(train_val), tuple(test)
    if not (0 <= a < b <= c < d):
        raise ValueError(f"checkpoint split needs 0 <= train_val start < end <= test start < end, got "
                         f"train_val={[a, b]}, test={[c, d]}")
    if not 0 < n_val < b - a:
        raise ValueError(f"n_val must leave train and validation personas: 0 < {n_val} < {b - a}")
    pools = {}
    for key, its in (("train_val", range(a, b)), ("test", range(c, d))):
        loaded = load_checkpoints(directory, its)
        for i, ckpt in zip(its, loaded):
            check_fits(ckpt, policy_name, template, f"{Path(directory) / CHECKPOINT_PATTERN.format(i)}")
        pools[key] = {name: torch.cat([ck["params"][name] for ck in loaded]).to(dtype) for name in template}
    order = torch.randperm(b - a, generator=torch.Generator().manual_seed(seed))
    val_idx, train_idx = order[:n_val], order[n_val:]
    return PersonaSplit(train=take(pools["train_val"], train_idx), val=take(pools["train_val"], val_idx),
                        test=pools["test"], train_types=[CHECKPOINT_TYPES[0]] * len(train_idx),
                        val_types=[CHECKPOINT_TYPES[0]] * n_val, test_types=[CHECKPOINT_TYPES[1]] * (d - c),
                        type_names=CHECKPOINT_TYPES)
