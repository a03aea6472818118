"""The notebook story: each notebook's name, what it teaches, its parameters per study size, its key results.

One registry, in the order the notebooks run (docs and the README's notebook map follow it); the papermill
runner (:mod:`mindlib.notebooks`) executes it and the report (:mod:`mindlib.report`) describes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["NotebookSpec", "NOTEBOOKS"]


@dataclass(frozen=True)
class NotebookSpec:
    """One notebook of the story and its parameters per size (defaults in the notebook are demo size)."""

    name: str  # file stem, e.g. "06_train_mind"
    title: str
    learn: str  # what a reader learns
    sizes: dict = field(default_factory=dict)  # size -> parameter overrides
    keys: tuple[str, ...] = ()  # keys its results file must hold (checked by the smoke tests)


_SMOKE = {"size": "smoke"}
_FULL = {"size": "full"}
# Full size: several times the demo's TRs per epoch, so fewer epochs reach the plateau (measured, MIND on tribe
# features at lr 3e-3: validation r 0.4138 at epoch 8 of 10, 0.4144 at epoch 10).
_FULL_TRAIN = {**_FULL, "epochs": 10}
_ALL_SUBJECTS = ["sub-01", "sub-02", "sub-03", "sub-05"]

NOTEBOOKS: tuple[NotebookSpec, ...] = (
    NotebookSpec(
        "00_overview",
        "Overview",
        "the problem, the architecture, the dimension legend, a tour of the study",
        {"smoke": _SMOKE, "demo": {}, "full": _FULL},
        ("n_subjects", "n_runs", "n_parcels"),
    ),
    NotebookSpec(
        "01_temporal_alignment",
        "Temporal alignment",
        "2 Hz frames to TRs, the HRF lag, FIR delays, the drift pitfall",
        {"smoke": _SMOKE, "demo": {}, "full": _FULL},
        ("drift_s_at_tr500", "impulse_tr_exact", "impulse_tr_naive"),
    ),
    NotebookSpec(
        "02_data_and_splits",
        "Data and splits",
        "runs, subjects, windows, the leakage-free split, a batch",
        {"smoke": _SMOKE, "demo": {}, "full": _FULL},
        ("n_train_runs", "n_val_runs", "n_test_runs", "n_windows"),
    ),
    NotebookSpec(
        "03_afire",
        "AFIRE",
        "any backbone to tokens; the three fusion operators and the missing-modality mask, by hand",
        {"smoke": {**_SMOKE, "d_model": 32}, "demo": {}, "full": _FULL},
        ("n_parameters_by_fusion", "max_abs_fusion_by_hand", "max_abs_missing_by_hand"),
    ),
    NotebookSpec(
        "04_sadgate",
        "SADGate",
        "token router, subject prior, Top-K, the balance loss, and the one subject offset, by hand",
        {"smoke": {**_SMOKE, "d_model": 32}, "demo": {}, "full": _FULL},
        (
            "max_abs_gate_minus_numpy",
            "balance_loss_uniform",
            "balance_loss_collapsed",
            "max_abs_offset_identity",
        ),
    ),
    NotebookSpec(
        "05_experts",
        "MIND by hand",
        "the E experts, their dense outputs, the Top-K mix of Eq. 4, sparse = dense, the auxiliary loss",
        {"smoke": _SMOKE, "demo": {}, "full": _FULL},
        ("max_abs_sparse_minus_dense", "max_abs_mix_minus_forward", "aux_loss"),
    ),
    NotebookSpec(
        "06_train_mind",
        "Train MIND",
        "the main parameterised run: backbone, decoder, router mode, sizes, device",
        {"smoke": {**_SMOKE, "epochs": 2, "d_model": 32}, "demo": {}, "full": _FULL_TRAIN},
        ("val_r", "test_r", "best_epoch"),
    ),
    NotebookSpec(
        "07_baselines",
        "Baselines",
        "ridge (and the penalty each parcel chose) and the subject-linear baseline per backbone: the numbers to beat",
        {"smoke": {**_SMOKE, "epochs": 2, "d_model": 32}, "demo": {"lrs": [3e-3]}, "full": _FULL_TRAIN},
        ("ridge_val_r", "baseline_val_r"),
    ),
    NotebookSpec(
        "08_tables",
        "Tables and ablations",
        "every decoder on every backbone; the router, AFIRE (fusion, missing modalities) and SADGate "
        "(parametrisation) ablations, from results files",
        {
            "smoke": {
                **_SMOKE,
                "epochs": 1,
                "d_model": 32,
                "backbones": ["tribe"],
                "decoders": ["baseline", "mind", "ridge"],
                "modes": ["token", "both"],
                "isg_subjects": [],
                "afire_ablations": ["concat", "gated"],
                "parametrisations": ["default", "no_router_subject", "switch_balance"],
            },
            "demo": {"epochs": 10},
            "full": {**_FULL_TRAIN, "seeds": [0, 1, 2], "lrs": [1e-3, 3e-3], "isg_subjects": _ALL_SUBJECTS},
        },
        ("table1", "table2", "table3", "table4"),
    ),
    NotebookSpec(
        "09_isg",
        "Inter-subject generalisation",
        "leave-one-subject-out and few-shot calibration curves",
        {
            "smoke": {
                **_SMOKE,
                "epochs": 2,
                "d_model": 32,
                "decoders": ["mind", "baseline"],
                "n_draws": 2,
                "calibration_epochs": [0, 1, 2],
            },
            "demo": {},
            "full": {**_FULL_TRAIN, "held_out": _ALL_SUBJECTS},
        },
        ("loso_r", "few_shot"),
    ),
    NotebookSpec(
        "10_visualisations",
        "Visualisations",
        "parcel-wise r maps on the cortex, expert usage vs content, priors",
        {"smoke": {**_SMOKE, "backbones": ["tribe"]}, "demo": {}, "full": _FULL},
        ("gate_recovery",),
    ),
    NotebookSpec(
        "11_new_backbone",
        "Bring your own backbone",
        "transcript to text features to AFIRE to MIND, offline",
        {"smoke": {**_SMOKE, "epochs": 2, "d_model": 32}, "demo": {}, "full": _FULL_TRAIN},
        ("val_r", "n_frames"),
    ),
    NotebookSpec(
        "12_submission",
        "Submission",
        "predict the held-out stimuli, write and check the official file, score it",
        {"smoke": {**_SMOKE, "ensemble_seeds": [1]}, "demo": {}, "full": _FULL},
        ("single_score", "ensemble_score", "n_episodes"),
    ),
)
