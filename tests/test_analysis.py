"""Gate read-outs: checked against numpy on hand-made cases."""

import numpy as np
import pandas as pd
import pytest
import torch

from mindlib import analysis, data, models
from mindlib.afire import AFIREConfig

DIMS = {"a": 5, "b": 3}


def _records(n_runs=2, T=130, dims=DIMS, S=2, V=7, seed=0):
    rng = np.random.default_rng(seed)
    feats = [
        {m: rng.standard_normal((T, F)).astype(np.float32) for m, F in dims.items()} for _ in range(n_runs)
    ]
    return [
        data.RunRecord(
            subject=f"sub-0{s + 1}",
            subject_index=s,
            run=f"s01e0{i + 1}a",
            fmri=rng.standard_normal((T, V)).astype(np.float32),
            features=feats[i],
            valid=np.ones(T, bool),
        )
        for s in range(S)
        for i in range(n_runs)
    ]


def _mind(dims=DIMS, S=2, V=7, E=4, K=2):
    torch.manual_seed(0)
    return models.build_model(
        "mind", AFIREConfig(modalities=dims, d_model=8), S, V, n_experts=E, top_k=K
    ).eval()


def test_gate_runs_cover_every_tr_and_rows_sum_to_one():
    recs = _records()
    gates = analysis.gate_runs(_mind(), recs, window=50)
    assert [g.shape for g in gates] == [(130, 4)] * len(recs)
    np.testing.assert_allclose(np.concatenate(gates).sum(1), 1.0, atol=1e-5)


def test_subject_priors_match_numpy_softmax():
    model = _mind()
    with torch.no_grad():
        model.gate.subject_bias.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 0, 2.0, 0]]))
        model.gate.global_logits.copy_(torch.tensor([0.5, 0, 0, 0]))
    logits = np.array([[1.5, 0, 0, 0], [0.5, 0, 2.0, 0]])
    expected = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(analysis.subject_priors(model), expected, rtol=1e-6)


def test_usage_by_label_hand_case():
    gates = [np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])]
    labels = [np.array([0, 1, 0])]
    usage = analysis.usage_by_label(gates, labels, 3)
    np.testing.assert_allclose(usage[:2], [[0.75, 0.25], [0.0, 1.0]])
    assert np.isnan(usage[2]).all()
    masked = analysis.usage_by_label(gates, labels, 2, valid=[np.array([True, True, False])])
    np.testing.assert_allclose(masked, [[1.0, 0.0], [0.0, 1.0]])


def test_match_experts_recovers_a_permutation():
    rng = np.random.default_rng(1)
    true = rng.random((400, 3))
    learned = np.concatenate([true[:, [2, 0, 1]], np.full((400, 1), 0.25)], axis=1)  # + a constant expert
    corr, recovery = analysis.match_experts(learned + 0.01 * rng.standard_normal(learned.shape), true)
    assert recovery > 0.99
    assert corr.shape == (3, 4)
    np.testing.assert_allclose(corr[0, 1], np.corrcoef(true[:, 0], learned[:, 1] + 0)[0, 1], atol=0.01)
    _, none = analysis.match_experts(rng.random((400, 4)), true)
    assert none < 0.2


def test_speech_labels_follow_the_lagged_window(tmp_path):
    root = tmp_path
    path = root / "stimuli/transcripts/friends/s1/friends_s01e01a.tsv"
    path.parent.mkdir(parents=True)
    rows = [{"text_per_tr": "", "words_per_tr": "[]", "onsets_per_tr": "[]", "durations_per_tr": "[]"}] * 8
    rows[2] = {
        "text_per_tr": "hi",
        "words_per_tr": "['hi']",
        "onsets_per_tr": "[3.2]",
        "durations_per_tr": "[0.3]",
    }
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False)
    rec = data.RunRecord("sub-01", 0, "s01e01a", np.zeros((8, 2), np.float32), {}, np.ones(8, bool))
    # a word at 3.2 s is read by the TR whose lagged window [1.49 t - 4.47, 1.49 (t + 1) - 4.47) holds it: t = 5
    np.testing.assert_array_equal(analysis.speech_labels(root, rec), [0, 0, 0, 0, 0, 1, 0, 0])


def test_without_modalities_equals_an_explicit_mask():
    model = _mind()
    recs = _records(n_runs=1, S=1)
    feats = {m: torch.as_tensor(x[None, :50]) for m, x in recs[0].features.items()}
    subject = torch.zeros(1, dtype=torch.long)
    masked = model(feats, subject, modality_mask=torch.tensor([[True, False]])).pred
    wrapped = analysis.WithoutModalities(model, ["b"])(feats, subject).pred
    torch.testing.assert_close(wrapped, masked)
    with pytest.raises(ValueError, match="unknown modalities"):
        analysis.WithoutModalities(model, ["c"])
    with pytest.raises(ValueError, match="at least one modality"):
        analysis.WithoutModalities(model, ["a", "b"])


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("mode", ["both", "token", "prior"])
def test_subject_logits_are_the_offset_that_routes(mode):
    """Renorm(TopK(softmax(W_r(x + e_s) + b_r) ⊙ softmax(g + B_s))) = Renorm(TopK(softmax(W_r x + o_s))) in numpy."""
    from mindlib.sadgate import SADGate, SADGateConfig

    torch.manual_seed(1)
    gate = SADGate(SADGateConfig(d_model=6, n_subjects=3, n_experts=5, top_k=2, mode=mode, prior_top_k=True))
    with torch.no_grad():
        gate.global_logits.normal_()
        gate.subject_bias.normal_()
        gate.subject_embedding.weight.normal_()
    o = analysis.subject_logits(SimpleModel(gate))  # (S, E)
    x = torch.randn(3, 4, 6)
    subject = torch.tensor([0, 1, 2])
    out = gate(x, subject)
    W = gate.router.weight.detach().numpy()
    token = np.zeros((3, 4, 5)) if mode == "prior" else x.numpy() @ W.T  # (B, T, E): the router's own part
    scores = _softmax(token + o[subject.numpy()][:, None, :])
    keep = np.argsort(-scores, -1)[..., :2]
    w = np.zeros_like(scores)
    np.put_along_axis(w, keep, np.take_along_axis(scores, keep, -1), -1)
    np.testing.assert_allclose(
        out.weights.detach().numpy(), w / w.sum(-1, keepdims=True), rtol=1e-5, atol=1e-6
    )


class SimpleModel(torch.nn.Module):
    def __init__(self, gate):
        super().__init__()
        self.gate = gate


def test_router_subject_false_routes_without_the_embedding():
    from mindlib.sadgate import SADGate, SADGateConfig

    gate = SADGate(SADGateConfig(d_model=6, n_subjects=2, n_experts=4, router_subject=False))
    x, s = torch.randn(2, 3, 6), torch.tensor([0, 1])
    before = gate(x, s).weights
    with torch.no_grad():
        gate.subject_embedding.weight.normal_(std=5.0)
    torch.testing.assert_close(gate(x, s).weights, before)
    assert gate.subject_parameters() == [gate.subject_bias]
    np.testing.assert_allclose(
        analysis.subject_logits(SimpleModel(gate)),
        (gate.global_logits + gate.subject_bias + gate.router.bias).detach().numpy(),
    )


def test_match_modes_is_the_best_one_to_one_assignment():
    import itertools

    rng = np.random.default_rng(0)
    corr = rng.uniform(-1, 1, (3, 5))
    corr[1, 2] = np.nan
    best = max(
        itertools.permutations(range(5), 3),
        key=lambda p: sum(np.nan_to_num(corr, nan=-1)[m, e] for m, e in enumerate(p)),
    )
    assert analysis.match_modes(corr).tolist() == list(best)
    with pytest.raises(ValueError, match="one expert per mode"):
        analysis.match_modes(corr.T)


def test_subject_structure_and_within_run_matching_ignore_offsets():
    rng = np.random.default_rng(0)
    true = rng.normal(size=(4, 3))  # (S, M) true subject biases
    expert = np.array([4, 0, 2])
    learned = rng.normal(size=(4, 5))
    learned[:, expert] = 2.0 * true + 7.0  # same structure, another scale and a population offset
    learned[0] += 3.0  # a constant over experts (softmax ignores it)
    np.testing.assert_allclose(analysis.subject_structure(learned, true, expert), 1.0)
    assert np.all(analysis.subject_structure(learned, true, np.array([1, 3, 0])) < 0.999)
    # matching over time: a per-run constant added to the learned weights changes nothing
    gates = [rng.uniform(size=(50, 3)) for _ in range(2)]
    learned_t = [np.concatenate([g, rng.uniform(size=(50, 2))], 1)[:, [3, 0, 4, 1, 2]] for g in gates]
    valid = [np.ones(50, bool)] * 2
    shifted = [lt + c for lt, c in zip(learned_t, (0.0, 5.0))]
    corr = analysis.within_run_correlation(shifted, gates, valid)
    np.testing.assert_allclose(corr, analysis.within_run_correlation(learned_t, gates, valid))
    assert analysis.match_modes(corr).tolist() == [1, 3, 4]


def test_ceiling_fraction_by_network_is_a_ratio_of_network_means():
    r = np.array([0.1, 0.3, 0.2, 0.4, 0.0])
    ceiling = np.array([0.4, 0.4, 0.5, 0.3, 0.0])
    nets = np.array(["Vis", "Vis", "Limbic", "Limbic", "Cont"])
    out = analysis.ceiling_fraction_by_network(r, ceiling, nets)
    assert list(out) == ["Vis", "Limbic", "Cont"]
    assert out["Vis"] == pytest.approx(0.2 / 0.4) and out["Limbic"] == pytest.approx(0.3 / 0.4)
    assert np.isnan(out["Cont"])
    with pytest.raises(ValueError, match="shapes"):
        analysis.ceiling_fraction_by_network(r[:4], ceiling, nets)


def test_repeat_ceilings_correlate_the_two_repeats_of_a_clip():
    rng = np.random.default_rng(0)
    T, V = 60, 3
    clean = rng.standard_normal((T, V))
    recs = []
    for s in range(2):
        for run in ("life01_run-1", "life01_run-2", "s01e01a"):
            fmri = (clean + rng.standard_normal((T, V))).astype(np.float32)
            valid = np.ones(T, bool)
            valid[:3] = False
            recs.append(
                data.RunRecord(f"sub-0{s + 1}", s, run, fmri, {"a": np.zeros((T, 1), np.float32)}, valid)
            )
    out = analysis.repeat_ceilings(recs)
    assert sorted(out) == ["sub-01", "sub-02"]
    a, b = recs[0], recs[1]
    ref = [np.corrcoef(a.fmri[3:, v], b.fmri[3:, v])[0, 1] for v in range(V)]
    np.testing.assert_allclose(out["sub-01"], ref, rtol=1e-6)


def test_balance_over_runs_equals_the_loss_of_one_covering_window():
    """A run shorter than the window is one window: the read-out equals balance_loss on the gate directly."""
    from mindlib import sadgate

    model = _mind()
    recs = _records(n_runs=1, T=40, S=1)
    out = analysis.balance_over_runs(model, recs, window=100)
    with torch.no_grad():
        gate = model(
            {m: torch.as_tensor(x)[None] for m, x in recs[0].features.items()}, torch.tensor([0])
        ).gate
    for kind in sadgate.BALANCES:
        assert out[kind] == pytest.approx(float(sadgate.balance_loss(gate, kind=kind)), rel=1e-5)
