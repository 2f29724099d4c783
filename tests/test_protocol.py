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
    assert set(card["mark"]) <= {"same", "chosen"} and card.loc["dataset", "mark"] == "same"
    spec = studies.get(study)
    for name, row in card.iterrows():
        assert row["report"] == spec.stated.get(name, NOT_STATED)
        if row["report"] == NOT_STATED or "not given" in row["report"]:
            assert row["mark"] == "chosen", f"{name}: the report gives no value, so ours must be marked"
        if row["mark"] == "chosen":
            assert row["why"] == spec.chosen[name]
    assert set(spec.chosen) <= set(card.index)   # no reason kept for a row the card does not have


@pytest.mark.parametrize("study,row,expected", [
    ("worksheet_analysis", "parameters", "11,173,962"),                      # report 003's table
    ("resnet_budget", "parameters", "4,754,218"),                            # report 002's summary
    ("bn_ablation", "parameters", "baseline: 620,362; batchnorm: 621,322"),  # report 004: 620,362 vs 621,322
    ("worksheet_analysis", "batches per epoch", "exp1: 781; exp2: 390 (last partial batch dropped)"),  # 781 vs 390
    ("worksheet_analysis", "normalisation",
     "mean (0.4914, 0.4822, 0.4465), std (0.2023, 0.1994, 0.201) (CIFAR-10 constants)"),
    ("resnet_budget", "crop", "random 32x32 crop, zero padding 2"),          # 32x32 patches from 36x36
    ("stress_test", "momentum", "0.9 (constant: One-Cycle does not cycle it)"),
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
        assert card.loc[row, "why"].startswith("smaller in the quick profile; full profile: ")
    for row in ("optimiser", "momentum", "weight decay", "normalisation", "precision", "seeds", "dataset"):
        assert card.loc[row, "mark"] in ("same", "chosen"), row
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


def test_report_002_note_names_the_numbers_only_the_other_reading_explains():
    note = studies.get("resnet_budget").note
    assert all(fact in note for fact in ("0.009998", "89.47%", "94.65%", "cosine", "0.1", "100 epochs"))
    assert studies.get("bn_ablation").note is None


def test_paths_in_the_card_are_shortened_to_what_wraps():
    assert brief("CIFAR-10 (folder:/data/sets/cifar10-jpg.tar.gz)") == "CIFAR-10 (cifar10-jpg.tar.gz)"
    assert brief("found in /a/b/cifar10/, offline") == "found in cifar10/, offline"
    assert brief("you set dataset='synthetic'") == "you set dataset='synthetic'"
