"""Persona generators: sizes, balance, ranges, determinism, out-of-distribution split."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from league.personas import PersonaSplit, ipd_personas, rps_personas

SPLITS = ("train", "val", "test")


def _check_common(ps: PersonaSplit, sizes, n_states, n_actions):
    for split, size in zip(SPLITS, sizes):
        x, types = getattr(ps, split), getattr(ps, f"{split}_types")
        assert x.shape == (size, n_states, n_actions) and x.dtype == torch.float32
        assert len(types) == size
        counts = Counter(types)
        assert set(counts) == set(ps.type_names)
        assert len(set(counts.values())) == 1  # equally many of each type
        assert torch.all(x >= 0) and torch.all(x <= 1)
        assert torch.allclose(x.sum(-1), torch.ones(size, n_states), atol=1e-6)


def test_ipd_personas_shapes_balance_and_ranges():
    ps = ipd_personas(seed=0)
    assert ps.type_names == ("cooperating", "defecting")
    _check_common(ps, (400, 40, 40), 5, 2)
    for split in SPLITS:
        x, types = getattr(ps, split), getattr(ps, f"{split}_types")
        coop = torch.tensor([t == "cooperating" for t in types])
        p_def = x[..., 1]
        assert torch.all(p_def[coop] <= 0.5) and torch.all(p_def[~coop] >= 0.5)
    # the split is shuffled: types are interleaved, not in blocks
    assert ps.train_types[:200] != ["cooperating"] * 200


def test_rps_personas_shapes_balance_and_ranges():
    ps = rps_personas(seed=0)
    assert ps.type_names == ("rock", "paper", "scissors")
    _check_common(ps, (600, 60, 60), 10, 3)
    for split in SPLITS:
        x, types = getattr(ps, split), getattr(ps, f"{split}_types")
        dom = torch.tensor([ps.type_names.index(t) for t in types])
        assert torch.equal(x.argmax(-1), dom[:, None].expand(-1, 10))
        p_dom = x.max(-1).values
        assert torch.all(p_dom >= 1 / 3 - 1e-6) and torch.all(p_dom <= 1)
        others = x.sort(-1).values[..., :2]  # the two smaller entries are equal
        assert torch.allclose(others[..., 0], others[..., 1], atol=1e-6)


@pytest.mark.parametrize("make", [ipd_personas, rps_personas])
def test_same_seed_same_personas_different_seed_different(make):
    a, b, c = make(seed=7), make(seed=7), make(seed=8)
    for split in SPLITS:
        assert torch.equal(getattr(a, split), getattr(b, split))
        assert getattr(a, f"{split}_types") == getattr(b, f"{split}_types")
        assert not torch.equal(getattr(a, split), getattr(c, split))


def test_ipd_out_of_distribution_test_set_is_more_extreme():
    ps = ipd_personas(seed=1, out_of_distribution=True)
    _check_common(ps, (400, 40, 40), 5, 2)
    for name, sign in (("cooperating", 1.0), ("defecting", -1.0)):
        # sign * mean P(defect): smaller is more extreme for both types
        def score(split):
            x, types = getattr(ps, split), getattr(ps, f"{split}_types")
            keep = torch.tensor([t == name for t in types])
            return sign * x[keep][..., 1].mean(-1)

        assert score("test").max() < score("train").min()
        assert score("test").max() < score("val").min()
    # in-distribution test personas are not separated like that; the pool is the same
    iid = ipd_personas(seed=1)
    pool = lambda q: torch.cat([q.train, q.val, q.test]).reshape(480, -1).sort(0).values  # noqa: E731
    assert torch.equal(pool(ps), pool(iid))
    coop = torch.tensor([t == "cooperating" for t in iid.test_types])
    coop_tr = torch.tensor([t == "cooperating" for t in iid.train_types])
    assert iid.test[coop][..., 1].mean(-1).max() > iid.train[coop_tr][..., 1].mean(-1).min()


def test_small_custom_sizes_and_bad_sizes():
    ps = ipd_personas(seed=2, n_per_type=10, sizes=(10, 4, 6))
    _check_common(ps, (10, 4, 6), 5, 2)
    allp = torch.cat([ps.train, ps.val, ps.test])
    assert torch.unique(allp.reshape(20, -1), dim=0).shape[0] == 20  # no persona reused
    with pytest.raises(ValueError, match="multiple of 2"):
        ipd_personas(seed=0, sizes=(401, 40, 39))
    with pytest.raises(ValueError, match="only"):
        rps_personas(seed=0, n_per_type=10, sizes=(30, 3, 3))
