"""The protocol card: each report's values beside this run's, marked same / chosen / scaled / changed."""

import pytest
import torch

from helpers import profiles
from helpers import studies
from helpers.data import auto, make_synthetic
from helpers.profiles import settings
from helpers.protocol import brief, protocol_card
from helpers.studies.base import NOT_STATED

STUDIES = list(studies.STUDIES)


@pytest.fixture
def cifar_here(tmp_path, monkeypatch):
    """A data folder with torchvision's CIFAR-10 and CIFAR-100 folders (the card looks, never loads)."""
    for name in ("cifar-10-batches-py", "cifar-100-python"):
        (tmp_path / name).mkdir()
    monkeypatch.setattr(profiles, "DATA_DIR", tmp_path)
    monkeypatch.setattr(auto, "unreachable", lambda *a, **k: pytest.fail("asked the network"))


@pytest.fixture
def offline(tmp_path, monkeypatch):
    monkeypatch.setattr(profiles, "DATA_DIR", tmp_path)
    monkeypatch.setattr(auto, "unreachable", lambda *a, **k: "www.cs.toronto.edu did not answer within 2 s")


@pytest.mark.parametrize("study", STUDIES)
def test_full_card_has_no_changed_row_and_explains_every_silence(study, cifar_here):
    card = protocol_card(settings(study, "full"))
    assert set(card["mark"]) <= {"same", "chosen", "code"} and card.loc["dataset", "mark"] == "same"
    spec = studies.get(study)
    assert ("code" in card) == bool(spec.code)  # the code column only where the authors' code is public
    for name, row in card.iterrows():
        assert row["report"] == spec.stated.get(name, NOT_STATED)
        if row["report"].startswith(NOT_STATED) or "not given" in row["report"]:
            assert row["mark"] in ("chosen", "code"), f"{name}: the report gives no value, so ours must be marked"
        if row["mark"] == "chosen":
            assert row["why"] == spec.chosen[name]
        if row["mark"] == "code":
            assert name in spec.code and row["code"] == spec.code[name], name
    assert set(spec.chosen) <= set(card.index)   # no reason kept for a row the card does not have
    assert set(spec.text_differs) <= set(spec.code) <= set(card.index)


@pytest.mark.parametrize("study,row,expected", [
    ("worksheet_analysis", "parameters", "11,173,962"),                      # report 003's table
    ("resnet_budget", "parameters", "4,754,218"),                            # report 002's summary
    ("bn_ablation", "parameters", "baseline: 620,362; batchnorm: 621,322"),  # report 004: 620,362 vs 621,322
    ("worksheet_analysis", "batches per epoch", "exp1: 781; exp2: 390 (last partial batch dropped)"),  # 781 vs 390
    ("worksheet_analysis", "normalisation",
     "mean (0.4914, 0.4822, 0.4465), std (0.2023, 0.1994, 0.2010) (CIFAR-10 constants)"),
    ("cutmix_study", "mixing", "baseline: none; cutmix: CutMix alpha 1, p 0.5"),
])
def test_full_card_shows_the_reports_numbers(cifar_here, study, row, expected):
    assert protocol_card(settings(study, "full")).loc[row, "this run"] == expected


def test_overrides_show_as_changed(cifar_here):
    card = protocol_card(settings("bn_ablation", "full", epochs=3, lr=0.02, seeds=2))
    changed = card.index[card["mark"] == "changed"].tolist()
    assert changed == ["epochs", "learning rate", "seeds"]   # a StepLR rule does not name the epoch count
    assert card.loc["learning rate", "why"] == "you set lr=0.02" and card.loc["seeds", "this run"] == "42, 43"
    card = protocol_card(settings("stress_test", "full", dataset="synthetic"))
    assert card.loc["dataset", "mark"] == "changed" and card.loc["dataset", "why"] == "you set dataset='synthetic'"


def test_bf16_shows_as_changed(cifar_here, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)   # settings checks the device; the card does not train
    card = protocol_card(settings("worksheet_analysis", "full", precision="bf16", device="cuda"))
    assert card.loc["precision", ["this run", "mark", "why"]].tolist() == [
        "bf16 autocast + channels_last", "changed", "you set precision='bf16'"]
    assert (card["mark"] == "changed").sum() == 1


@pytest.mark.parametrize("study", STUDIES)
def test_quick_card_marks_what_it_scaled(cifar_here, study):
    card = protocol_card(settings(study, "quick"))
    for row in ("images", "model", "parameters", "epochs", "batches per epoch"):
        assert card.loc[row, "mark"] == "scaled", row
        assert card.loc[row, "why"].startswith("quick profile; full: ")
    for row in ("optimiser", "momentum", "weight decay", "normalisation", "precision", "seeds", "dataset"):
        assert card.loc[row, "mark"] in ("same", "chosen", "code"), row
    assert "changed" not in set(card["mark"])


def test_smoke_and_fallback_data_are_marked(offline):
    assert protocol_card(settings("bn_ablation", "smoke")).loc["dataset", "mark"] == "scaled"
    row = protocol_card(settings("bn_ablation", "full")).loc["dataset"]
    assert row["mark"] == "changed" and row["this run"] == "the synthetic stand-in"
    assert row["why"].endswith("cannot be downloaded (offline: www.cs.toronto.edu did not answer within 2 s)")


def test_card_uses_the_loaded_data_sizes(cifar_here):
    s = settings("bn_ablation", "quick", dataset="synthetic", n_train=100, n_test=20)
    card = protocol_card(s, make_synthetic(n_train=100, n_test=20))
    assert card.loc["images", "this run"] == "90 / 10 / 20" and card.loc["images", "mark"] == "changed"
    assert card.loc["batches per epoch", "this run"] == "1 (last partial batch kept)"


def test_report_002_note_says_what_its_code_ran():
    note = studies.get("resnet_budget").note
    assert all(fact in note for fact in ("two phases", "94.65%", "never applied", "Kaggle file", "reading text"))
    assert studies.get("bn_ablation").note is None


def test_paths_in_the_card_are_shortened_to_what_wraps():
    assert brief("CIFAR-10 (folder:/data/sets/cifar10-jpg.tar.gz)") == "CIFAR-10 (cifar10-jpg.tar.gz)"
    assert brief("found in /a/b/cifar10/, offline") == "found in cifar10/, offline"
    assert brief("you set dataset='synthetic'") == "you set dataset='synthetic'"


# --- the authors' code (authors-code/README.md), setting by setting ----------------------------------

# (study, card row, what this run's value must say): every setting the README in
# ../shared/reference-reports/authors-code records for reports 000, 002 and 004.
CODE = [
    ("stress_test", "model", "blocks=5"),
    ("stress_test", "parameters", "7,427,914 (its forward pass uses 7,386,186)"),
    ("stress_test", "epochs", "40"), ("stress_test", "batch size", "64"),
    ("stress_test", "learning rate", "0.01"),
    ("stress_test", "schedule", "One-Cycle over 40 epochs, max 0.01 (30% warm-up from max/25, cosine down), stepped "
                                "per batch"),
    ("stress_test", "momentum", "cycles 0.95 -> 0.85 -> 0.95"), ("stress_test", "weight decay", "0.0005"),
    ("stress_test", "crop", "zero padding 4"), ("stress_test", "flips", "horizontal p 0.5"),
    ("stress_test", "colour jitter", "brightness, contrast, saturation +-0.2"),
    ("stress_test", "normalisation", "mean (0.4914, 0.4822, 0.4465), std (0.2023, 0.1994, 0.2010)"),
    ("stress_test", "split", "seed 2026): its first 90% train"), ("stress_test", "images", "45,000 / 5,000 / 10,000"),
    ("stress_test", "seeds", "2026"), ("stress_test", "determinism", "deterministic cuDNN, no autotuning"),
    ("stress_test", "checkpoint tested", "best validation"),
    ("stress_test", "Grad-CAM layer", "the last block's second convolution, before its BatchNorm"),
    ("stress_test", "failure cases", "the 12 most confident per model; the code's canonical three (6070, 4528, 9227)"),
    ("resnet_budget", "parameters", "4,754,218"), ("resnet_budget", "phases", "2: each from the last weights"),
    ("resnet_budget", "epochs", "100"), ("resnet_budget", "batch size", "128"),
    ("resnet_budget", "learning rate", "phase 1: 0.1; phase 2: 0.01"),
    ("resnet_budget", "schedule", "phase 1: x0.1 at epochs 50, 75, stepped per epoch; phase 2: cosine annealing to 0 "
                                  "over 100 epochs, stepped per epoch"),
    ("resnet_budget", "momentum", "0.9"), ("resnet_budget", "weight decay", "0.0005"),
    ("resnet_budget", "loss", "cross-entropy"), ("resnet_budget", "crop", "zero padding 4"),
    ("resnet_budget", "flips", "phase 1: horizontal p 0.5; phase 2: horizontal p 0.5, vertical p 0.05"),
    ("resnet_budget", "blur", "phase 2: Gaussian 9x9, sigma 0.1-1.5, p 0.3"),
    ("resnet_budget", "erasing", "phase 2: random erasing p 0.5, 0.02-0.2 of the image, after normalisation"),
    ("resnet_budget", "mixing", "none"),
    ("resnet_budget", "normalisation", "phase 1: mean (0.4914, 0.4822, 0.4465), std (0.2023, 0.1994, 0.2010)"),
    ("resnet_budget", "normalisation", "phase 2: training: mean (0.4914, 0.4822, 0.4465), std (0.2470, 0.2435, "
                                       "0.2616); testing: mean (0.4914, 0.4822, 0.4465), std (0.2023, 0.1994, 0.2010)"),
    ("resnet_budget", "images", "50,000 / none / 10,000"), ("resnet_budget", "checkpoint tested", "last epoch"),
    ("resnet_budget", "test-time augmentation", "5 views (original, hflip, pad_crop, blur_hwc, vflip), logits "
                                                "averaged, normalised with the training statistics"),
    ("resnet_budget", "prediction file", "header ID,Labels"),
    ("bn_ablation", "split", "seed 42): its first 90% train"), ("bn_ablation", "images", "45,000 / 5,000 / 10,000"),
    ("bn_ablation", "normalisation", "mean (0.4914, 0.4822, 0.4465), std (0.2470, 0.2435, 0.2616)"),
    ("bn_ablation", "flips", "horizontal p 0.5 (before the crop)"), ("bn_ablation", "crop", "zero padding 4"),
    ("bn_ablation", "batch size", "128"), ("bn_ablation", "batches per epoch", "352 (last partial batch kept)"),
    ("bn_ablation", "parameters", "baseline: 620,362; batchnorm: 621,322"), ("bn_ablation", "learning rate", "0.01"),
    ("bn_ablation", "momentum", "0.9"), ("bn_ablation", "weight decay", "0.0005"),
    ("bn_ablation", "schedule", "x0.1 every 10 epochs, stepped per epoch"), ("bn_ablation", "epochs", "30"),
    ("bn_ablation", "seeds", "42"), ("bn_ablation", "checkpoint tested", "the last epoch's weights"),
]


@pytest.mark.parametrize("study,row,expected", CODE, ids=[f"{c[0]}-{c[1]}" for c in CODE])
def test_full_cards_of_01_03_05_match_the_authors_code(cifar_here, study, row, expected):
    card = protocol_card(settings(study, "full"))
    assert expected in card.loc[row, "this run"], card.loc[row, "this run"]
    assert card.loc[row, "mark"] in ("same", "code"), card.loc[row, ["mark", "why"]].tolist()


def test_where_text_and_code_disagree_the_card_says_which_the_run_follows(cifar_here):
    code = protocol_card(settings("stress_test", "full"))
    assert code.loc["momentum", "mark"] == "code" and "0.9" in code.loc["momentum", "report"]
    assert code.loc["momentum", "why"] == "the text differs; the code's, which produced the numbers"
    text = protocol_card(settings("resnet_budget", "full", reading="text"))
    assert text.loc["learning rate", ["this run", "mark"]].tolist() == ["0.1", "text"]
    assert text.loc["mixing", "this run"] == "CutMix alpha 1, p 0.5" and "phases" not in text.index
    assert "changed" not in set(text["mark"])  # the reading is a protocol, not an override
    with pytest.raises(ValueError, match="unknown reading 'both' for resnet_budget; valid: code, text"):
        settings("resnet_budget", "full", reading="both")


def test_the_text_studies_have_no_code_column(cifar_here):
    for study in ("cutmix_study", "worksheet_analysis"):
        assert "code" not in protocol_card(settings(study, "full"))
