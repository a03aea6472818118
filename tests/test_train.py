"""mindlib.train: objective, schedule, resume, whole-run prediction and scores on a tiny planted problem."""

import inspect
import json
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy import stats

from mindlib import analysis, isg, metrics, train
from mindlib.data import RunRecord
from mindlib.train import TrainConfig
from tests.stand_ins import MODALITIES, TinyDecoder, V, planted_records, planted_weights

TRAIN_RUNS = ("s01e01a", "s01e01b", "bourne01")
VAL_RUNS = ("s01e02a",)


def make_records(subjects=("sub-01", "sub-02"), runs=TRAIN_RUNS, n_trs=40, noise=0.5, seed=0):
    """fmri = Σ_m X_m W_m · gain_s + bias_s + noise; the first 3 TRs invalid (lag not covered)."""
    rng = np.random.default_rng(seed)
    return planted_records(subjects, runs, planted_weights(rng), rng, n_trs=n_trs, noise=noise)


FAST = TrainConfig(epochs=6, batch_size=4, window=16, stride=8, lr=5e-2, device="cpu", progress=False)


@pytest.fixture(scope="module")
def data():
    return make_records(runs=TRAIN_RUNS, seed=0), make_records(runs=VAL_RUNS, seed=0)


def test_config_validation():
    for bad in (
        {"epochs": 0},
        {"batch_size": -1},
        {"stride": 20, "window": 10},
        {"warmup_frac": 0.0},
        {"betas": (0.9, 1.0)},
        {"grad_clip": 0.0},
        {"device": "nonsense"},
        {"eval_every": 0},
        {"stop_after_epochs": 0},
    ):
        with pytest.raises(ValueError, match=next(iter(bad))):
            TrainConfig(**bad)
    assert TrainConfig(betas=[0.8, 0.9]).betas == (0.8, 0.9)


def test_masked_mse_ignores_masked_trs():
    torch.manual_seed(0)
    pred, target = torch.randn(2, 5, 3), torch.randn(2, 5, 3)
    mask = torch.tensor([[True, True, False, False, False], [True, False, False, False, False]])
    expected = ((pred - target)[mask] ** 2).mean()
    torch.testing.assert_close(train.masked_mse(pred, target, mask), expected)
    assert train.masked_mse(pred, target, torch.zeros_like(mask)).item() == 0.0


def test_fit_lowers_loss_and_improves_val_r(data):
    train_recs, val_recs = data
    torch.manual_seed(0)
    model = TinyDecoder()
    before = train.evaluate(model, val_recs, window=16)["pearson"]["mean"]
    result = train.fit(model, train_recs, val_recs, FAST)
    losses = [h["train_loss"] for h in result.history]
    assert len(result.history) == FAST.epochs
    assert set(result.history[0]) == {"epoch", "train_loss", "val_r", "lr", "seconds"}
    assert losses[-1] < 0.5 * losses[0]
    assert result.best_val_r > before + 0.2 and result.best_val_r > 0.7
    assert result.best_val_r == max(h["val_r"] for h in result.history)
    assert result.best_epoch == int(np.nanargmax([h["val_r"] for h in result.history]))
    after = train.evaluate(model, val_recs, window=16)["pearson"]["mean"]
    assert after == pytest.approx(result.best_val_r, abs=1e-6)  # best weights are loaded


def test_fit_hands_the_model_back_in_eval_mode(data):
    """A fitted model predicts deterministically: eval mode on every submodule, dropout (p=0.2) off."""
    train_recs, val_recs = data
    torch.manual_seed(0)
    model = TinyDecoder()
    result = train.fit(model, train_recs, val_recs, replace(FAST, epochs=1))
    assert result.model is model
    assert not any(m.training for m in model.modules())
    rec = val_recs[0]
    feats = {m: torch.as_tensor(x)[None] for m, x in rec.features.items()}
    subject = torch.tensor([rec.subject_index])
    torch.testing.assert_close(model(feats, subject).pred, model(feats, subject).pred, rtol=0, atol=0)


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_resume_gives_the_same_weights_as_a_straight_run(data, tmp_path):
    train_recs, val_recs = data
    cfg = replace(FAST, epochs=4)
    torch.manual_seed(0)
    straight = train.fit(TinyDecoder(), train_recs, val_recs, replace(cfg, checkpoint_dir=tmp_path / "a"))
    resumable = replace(cfg, checkpoint_dir=tmp_path / "b")

    torch.manual_seed(0)
    first = train.fit(TinyDecoder(), train_recs, val_recs, replace(resumable, stop_after_epochs=2))
    assert first.stopped_early and len(first.history) == 2
    torch.manual_seed(123)  # a different initialisation: the checkpoint must overwrite it
    second = train.fit(TinyDecoder(), train_recs, val_recs, resumable)
    assert not second.stopped_early and len(second.history) == 4

    for key, value in _weights(straight.model).items():
        assert torch.equal(value, second.model.state_dict()[key]), key
    last_a = torch.load(straight.checkpoint_path, weights_only=True)
    last_b = torch.load(second.checkpoint_path, weights_only=True)
    for key, value in last_a["model"].items():
        assert torch.equal(value, last_b["model"][key]), key
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in straight.history]
    assert strip == [{k: v for k, v in h.items() if k != "seconds"} for h in second.history]
    assert second.best_epoch == straight.best_epoch
    assert [p.name for p in (tmp_path / "b").iterdir()] == [train.CHECKPOINT_NAME]  # no temp file left

    with pytest.raises(ValueError, match="lr"):
        train.fit(TinyDecoder(), train_recs, val_recs, replace(resumable, lr=1e-3))


def test_input_validation_errors(data):
    train_recs, val_recs = data
    model = TinyDecoder()
    rec = train_recs[0]
    with pytest.raises(ValueError, match="train_records is empty"):
        train.fit(model, [], val_recs, FAST)
    with pytest.raises(ValueError, match="val_records is empty"):
        train.fit(model, train_recs, [], FAST)
    missing = RunRecord(rec.subject, 0, rec.run, rec.fmri, {"video": rec.features["video"]}, rec.valid)
    with pytest.raises(ValueError, match=r"s01e01a lacks modality 'text'"):
        train.fit(model, [missing], val_recs, FAST)
    wrong_dim = RunRecord(
        rec.subject, 0, rec.run, rec.fmri, {**rec.features, "text": np.zeros((len(rec.fmri), 7))}, rec.valid
    )
    with pytest.raises(ValueError, match=r"'text': expected features of shape \(T, 4\), got \(40, 7\)"):
        train.fit(model, [wrong_dim], val_recs, FAST)
    bad_subject = RunRecord("sub-09", 2, rec.run, rec.fmri, rec.features, rec.valid)
    with pytest.raises(ValueError, match="subject_index 2 but the model has 2"):
        train.fit(model, [bad_subject], val_recs, FAST)
    no_valid = RunRecord(rec.subject, 0, rec.run, rec.fmri, rec.features, np.zeros_like(rec.valid))
    with pytest.raises(ValueError, match="no valid TR"):
        train.fit(model, train_recs, [no_valid], FAST)


def test_predict_runs_covers_every_tr(data):
    train_recs, _ = data
    torch.manual_seed(0)
    model = TinyDecoder().eval()
    short = RunRecord(
        "sub-01",
        0,
        "s02e01a",
        train_recs[0].fmri[:7],
        {m: x[:7] for m, x in train_recs[0].features.items()},
        train_recs[0].valid[:7],
    )
    recs = [train_recs[0], train_recs[3], short]
    preds = train.predict_runs(model, recs, window=16, stride=5, batch_size=3)
    for rec, pred in zip(recs, preds):
        # the stand-in has no temporal context: windowed prediction = one pass over the whole run
        with torch.no_grad():
            full = model(
                {m: torch.from_numpy(x)[None] for m, x in rec.features.items()},
                torch.tensor([rec.subject_index]),
            ).pred[0]
        assert pred.shape == rec.fmri.shape
        np.testing.assert_allclose(pred, full.numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="stride"):
        train.predict_runs(model, recs, window=16, stride=17)


def test_evaluate_model_and_predict_fn_share_one_path(data):
    _, val_recs = data
    perfect = train.evaluate(lambda rec: rec.fmri, val_recs)
    assert perfect["pearson"]["mean"] == pytest.approx(1.0)
    assert perfect["r2"]["mean"] == pytest.approx(1.0)
    torch.manual_seed(0)
    model = TinyDecoder()
    by_model = train.evaluate(model, val_recs, window=16)
    by_fn = train.evaluate(lambda rec: train.predict_runs(model, [rec], window=16)[0], val_recs)
    for name in ("pearson", "spearman", "r2", "algonauts"):
        assert by_model[name]["mean"] == pytest.approx(by_fn[name]["mean"])
    rec = val_recs[0]
    pred = train.predict_runs(model, [rec], window=16)[0]
    expected = np.mean(
        [stats.pearsonr(rec.fmri[rec.valid, v], pred[rec.valid, v]).statistic for v in range(V)]
    )
    assert by_model["pearson"]["per_run"][(rec.subject, rec.run)] == pytest.approx(expected, rel=1e-5)
    assert set(by_model["per_parcel"]["pearson"]) == {(r.subject, r.run) for r in val_recs}
    assert list(by_model["table"].columns) == ["subject", "run", "movie", "pearson", "spearman", "r2"]
    ridge_like = SimpleNamespace(predict=lambda rec: rec.fmri)  # e.g. baselines.RidgeEncoder
    assert train.evaluate(ridge_like, val_recs)["pearson"]["mean"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="prediction of shape"):
        train.evaluate(lambda rec: rec.fmri[:, :2], val_recs)


def test_eval_every_validates_every_nth_and_the_last_epoch(data):
    train_recs, val_recs = data
    result = train.fit(TinyDecoder(), train_recs, val_recs, replace(FAST, epochs=3, eval_every=2))
    validated = [not np.isnan(h["val_r"]) for h in result.history]
    assert validated == [False, True, True]
    assert result.best_epoch in (1, 2)


def test_grid_search_selects_on_validation(data):
    train_recs, val_recs = data
    cfg = replace(FAST, epochs=3)
    grid = train.grid_search(
        TinyDecoder, train_recs, val_recs, lrs=[1e-4, 5e-2], weight_decays=[0.0], config=cfg
    )
    assert list(grid.table.columns) == ["lr", "weight_decay", "best_val_r", "best_epoch"]
    assert len(grid.table) == 2
    best_row = grid.table.loc[grid.table["best_val_r"].idxmax()]
    assert grid.best_config.lr == best_row["lr"] == 5e-2
    assert grid.best_result.best_val_r == pytest.approx(best_row["best_val_r"])


def test_save_history_roundtrip(tmp_path):
    history = [{"epoch": 0, "train_loss": 1.5, "val_r": float("nan"), "lr": 1e-3, "seconds": 0.1}]
    path = train.save_history(history, tmp_path / "sub" / "history.json")
    assert json.loads(path.read_text())[0]["val_r"] is None  # strict JSON
    back = train.load_history(path)
    assert np.isnan(back[0]["val_r"]) and back[0]["train_loss"] == 1.5


def test_metrics_reconstruct_agrees_with_window_starts():
    from mindlib.data import window_starts

    starts = window_starts(37, 16, 8)
    pieces = [(s, np.full((16, 1), float(s))) for s in starts]
    out = metrics.reconstruct_run(pieces, 37)
    assert out.shape == (37, 1) and np.isfinite(out).all()


def test_fit_trains_mind_end_to_end(data):
    models = pytest.importorskip("mindlib.models")
    from mindlib.afire import AFIREConfig

    train_recs, val_recs = data
    afire = AFIREConfig(modalities=MODALITIES, d_model=16, dropout=0.0)
    torch.manual_seed(0)
    model = models.build_model("mind", afire, n_subjects=2, n_parcels=V, n_experts=4, top_k=2)
    cfg = replace(FAST, epochs=4, lr=1e-2)
    result = train.fit(model, train_recs, val_recs, cfg)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    scores = train.evaluate(model, val_recs, window=16)
    assert np.isfinite(scores["pearson"]["mean"]) and scores["pearson"]["mean"] > 0.3


def test_mixed_precision_path_runs_end_to_end_under_cpu_autocast(data, monkeypatch):
    """The CUDA path trains and predicts under bf16 autocast; run that same path with CPU autocast.

    Parameters must stay float32, losses finite, predictions come back as float32 arrays, and the scores
    stay close to a float32 run of the same seed."""
    models = pytest.importorskip("mindlib.models")
    from mindlib.afire import AFIREConfig

    entered = []

    def cpu_autocast(device, amp):
        entered.append(amp)
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp)

    train_recs, val_recs = data
    afire = AFIREConfig(modalities=MODALITIES, d_model=16, dropout=0.0)
    cfg = replace(FAST, epochs=4, lr=1e-2)
    scores = {}
    for amp in (False, True):
        torch.manual_seed(0)
        model = models.build_model("mind", afire, n_subjects=2, n_parcels=V, n_experts=4, top_k=2)
        with monkeypatch.context() as m:
            m.setattr(train, "_autocast", cpu_autocast)
            result = train.fit(model, train_recs, val_recs, replace(cfg, amp=amp))
            preds = train.predict_runs(model, val_recs, window=16, amp=amp)
            scores[amp] = train.evaluate(model, val_recs, window=16, amp=amp)["pearson"]["mean"]
        assert all(np.isfinite(h["train_loss"]) for h in result.history)
        assert all(p.dtype == torch.float32 for p in model.parameters())
        assert all(isinstance(p, np.ndarray) and p.dtype == np.float32 for p in preds)
    assert True in entered  # the autocast branch was taken
    assert scores[True] > 0.3 and abs(scores[True] - scores[False]) < 0.05


def test_whole_run_prediction_settings_are_one_bundle(data):
    """(window, stride, batch_size, device, amp) is declared once, in train.Prediction: every whole-run scorer
    takes one, its fields as keywords, and a fit's own comes from its TrainConfig."""
    for fn in (train.predict_runs, train.evaluate, isg.cross_subject_swap, analysis.gate_runs):
        params = inspect.signature(fn).parameters
        assert params["prediction"].default == train.Prediction(), fn.__name__
        assert not {"window", "stride", "batch_size", "device", "amp"} & set(params), fn.__name__
    _, val_recs = data
    torch.manual_seed(0)
    model = TinyDecoder()
    by_keywords = train.predict_runs(model, val_recs, window=16, stride=5)
    by_bundle = train.predict_runs(model, val_recs, train.Prediction(window=16, stride=5))
    for a, b in zip(by_keywords, by_bundle):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError, match=r"'windw' \(did you mean 'window'\?\)"):
        train.evaluate(model, val_recs, windw=16)
    cfg = TrainConfig(window=20, stride=10, batch_size=4, amp=False)
    assert cfg.prediction == train.Prediction(window=20, stride=10, batch_size=4, device=None, amp=False)
    assert train.Prediction(window=9).step == 4  # stride None: half a window
