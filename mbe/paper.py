"""Every number the paper publishes, in one place, each with its table and row.

Wang, Deng et al., *Training-Free ANN-to-SNN Conversion for High-Performance Spiking Transformers*
(arXiv 2508.07710, AAAI-26). Notebooks, ``results/REPORT.md``, the energy module, the registry's default
domains and the tests read these constants from here; nothing else in the package types in a number from
the paper. Accuracies are top-1 %, perplexities are perplexities, MSEs are fitting MSEs at the stated T.
"""

from __future__ import annotations

# --- Appendix G.1: the fitted functions' domains and basis counts -----------------------------------------
#: function -> ((low, high), N) as the paper states them (GELU (-120, 10), N=4; the three softmax/norm
#: functions and the identity encoder N=8). Functions the paper does not name are ours (``mbe.functions``).
APPENDIX_G1 = {
    "gelu": ((-120.0, 10.0), 4),
    "exp2": ((0.0, 1.0), 8),
    "reciprocal": ((0.5, 1.0), 8),
    "rsqrt": ((0.5, 2.0), 8),
    "identity": ((-1.0, 1.0), 8),
}
#: appendix G.1 fitting settings: M uniform samples, Adam lr, epochs, exponential lr decay
FIT_SAMPLES, FIT_LR, FIT_EPOCHS, FIT_LR_DECAY = 10_000, 0.01, 200, 0.99

# --- Table 1 (vision, T=16 unless stated): (ANN, SNN) top-1 % ---------------------------------------------
TABLE1 = {
    "ViT-B/16 ImageNet": (83.44, 83.00),
    "ViT-M/16 ImageNet": (85.95, 85.31),
    "VGG16 ImageNet (T=10)": (73.37, 72.61),
    "ResNet-34 ImageNet (T=10)": (76.31, 75.57),
}

# --- Table 2 (NLU, T=16): task -> (ANN, SNN) accuracy % ---------------------------------------------------
TABLE2_ROBERTA_BASE = {"SST-2": (94.49, 93.46), "SST-5": (55.46, 55.11), "MR": (89.39, 89.00), "Subj": (96.45, 96.30)}
TABLE2_ROBERTA_LARGE = {"SST-2": (96.22, 95.98), "SST-5": (59.37, 58.31), "MR": (91.36, 90.96), "Subj": (97.50, 97.45)}

# --- Table 3 (NLG, T=16): GPT-2 (346M) perplexity, data set -> (ANN, SNN) ---------------------------------
TABLE3_GPT2 = {"WikiText-2": (22.34, 22.69), "WikiText-103": (22.65, 23.41)}

# --- Table 4 (timestep sweep): "ann" and T -> metric --------------------------------------------------------
#: ViT-B/16 ImageNet top-1 %
TABLE4_VIT_B16 = {"ann": 83.44, 16: 83.00, 12: 82.79, 10: 79.96, 8: 0.12}
#: ViT-M/16 ImageNet top-1 %
TABLE4_VIT_M16 = {"ann": 85.95, 16: 85.31, 12: 84.43, 10: 21.99, 8: 1.17}
#: RoBERTa-base MR accuracy %
TABLE4_ROBERTA_BASE_MR = {"ann": 89.39, 16: 89.00, 12: 88.55, 10: 71.30, 8: 50.17}
#: RoBERTa-large MR accuracy %
TABLE4_ROBERTA_LARGE_MR = {"ann": 91.36, 16: 90.96, 12: 90.52, 10: 68.62, 8: 49.66}
#: GPT-2 (346M) WikiText-103 perplexity
TABLE4_GPT2_WIKI103 = {"ann": 22.65, 16: 23.41, 12: 33.56, 10: 11992.0, 8: 41072.0}

# --- Table VII (appendix): SiLU MBE fitting MSE per interval (N not stated) -------------------------------
TABLE_VII = {(-8.0, -2.0): 7.0e-5, (-2.0, 5.0): 6.0e-4, (2.0, 12.0): 4.8e-3}

# --- Table X (appendix): fitting MSE at T=16 by N, and N=8 without decay ----------------------------------
TABLE_X = {
    "gelu": {1: 7.1e-3, 2: 4.1e-3, 4: 2.3e-4, 6: 1.7e-4, 8: 1.0e-4, "nodecay": 2.8e-1},
    "rsqrt": {1: 1.4e-3, 2: 1.2e-3, 4: 3.1e-4, 6: 1.0e-4, 8: 4.9e-5, "nodecay": 2.8e-3},
    "reciprocal": {1: 8.6e-3, 2: 2.1e-4, 4: 1.1e-3, 6: 2.2e-3, 8: 4.4e-5, "nodecay": 4.5e-3},
    "exp2": {1: 8.9e-4, 2: 4.5e-4, 4: 4.0e-4, 6: 2.4e-4, 8: 5.3e-5, "nodecay": 9.5e-3},
}

# --- Table XI (appendix): firing rates (%) in ViT-M/16 at T=16, by neuron role ----------------------------
TABLE_XI = {
    "2^x (softmax)": 46.94,
    "LayerNorm 1/x identity": 38.46,
    "GELU": 38.22,
    "LayerNorm input identity": 27.61,
    "1/sqrt (LayerNorm)": 25.27,
    "attention score": 8.31,
    "1/x (softmax)": 3.74,
}

# --- Eq. 14 (energy) and its worked examples --------------------------------------------------------------
#: energy per accumulate and per multiply-accumulate, pJ (45 nm)
E_AC_PJ = 0.9
E_MAC_PJ = 4.6
#: the GELU example: 70 FLOPs per element in the ANN; N=4, T=16, firing rate 38.22 %; printed ratio 13.7 %
GELU_EXAMPLE = {"flops": 70, "n_basis": 4, "timesteps": 16, "firing_rate": 0.3822, "ratio_pct": 13.7}
#: the whole ViT-M/16's energy ratio (appendix), %
VIT_M16_ENERGY_RATIO_PCT = 17.29

# --- Fig. 6 (ablation) ------------------------------------------------------------------------------------
#: MBE beats FS by this many points when GELU is replaced (Fig. 6a)
FIG6A_MBE_OVER_FS_POINTS = 13.20
