"""Tests for mindlib.models: the decoder registry, and that every decoder learns a tiny batch."""

import pytest
import torch
import torch.nn.functional as F

from mindlib.afire import AFIREConfig
from mindlib.baselines import BaselineDecoder, MLPDecoder, MMoEDecoder
from mindlib.mind import MIND
from mindlib.models import DECODERS, build_model, decoder_options

MODS = {"video": 10, "text": 6}
B, T, D, V, S = 4, 10, 8, 6, 3


def afire_cfg(**kw):
    kw.setdefault("d_model", D)
    return AFIREConfig(MODS, max_len=16, dropout=0.0, **kw)


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = {m: torch.randn(B, T, f, generator=g) for m, f in MODS.items()}
    return feats, torch.tensor([0, 1, 2, 0]), torch.randn(B, T, V, generator=g)


def test_registry_classes():
    assert DECODERS == ("mind", "baseline", "mlp", "mmoe")
    classes = dict(mind=MIND, baseline=BaselineDecoder, mlp=MLPDecoder, mmoe=MMoEDecoder)
    for name in DECODERS:
        model = build_model(name, afire_cfg(), S, V)
        assert type(model) is classes[name]
        assert model.n_subjects == S and model.config.n_parcels == V


def test_options_forwarded_and_dict_afire():
    model = build_model("mind", {"modalities": MODS, "d_model": 4}, S, V, top_k=1, n_experts=3, expert="mlp")
    assert model.config.top_k == 1 and model.config.n_experts == 3 and model.config.expert == "mlp"
    assert model.config.afire.d_model == 4
    assert build_model("mlp", afire_cfg(), S, V, hidden=7).config.hidden == 7
    assert "hidden" in decoder_options("mmoe") and "afire" not in decoder_options("mind")


def test_unknown_decoder_lists_names():
    with pytest.raises(ValueError, match="mind.*baseline.*mlp.*mmoe"):
        build_model("transformer", afire_cfg(), S, V)


def test_unknown_option_is_named():
    with pytest.raises(TypeError, match="n_experts"):
        build_model("baseline", afire_cfg(), S, V, n_experts=4)
    with pytest.raises(TypeError, match="topk"):
        build_model("mind", afire_cfg(), S, V, topk=2)


@pytest.mark.parametrize("decoder", DECODERS)
def test_adam_steps_lower_the_loss(decoder):
    torch.manual_seed(0)
    model = build_model(decoder, afire_cfg(), S, V)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    feats, subj, y = batch()
    losses = []
    for _ in range(25):
        out = model(feats, subj)
        loss = F.mse_loss(out.pred, y) + out.aux_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("fusion", ["concat", "sum", "gated"])
def test_missing_modality_every_decoder(decoder, fusion):
    torch.manual_seed(0)
    model = build_model(decoder, afire_cfg(fusion=fusion), S, V).eval()
    feats, subj, _ = batch()
    mask = torch.tensor([[True, False], [False, True], [True, True], [False, True]])
    with torch.no_grad():
        out = model(feats, subj, mask)
        only_text = model({"text": feats["text"]}, subj)
    assert out.pred.shape == (B, T, V) and torch.isfinite(out.pred).all()
    assert torch.isfinite(only_text.pred).all()
