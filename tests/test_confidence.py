"""helpers.confidence's confidence analysis, helpers.evaluate's test-time augmentation and prediction files (02, 03)."""

import numpy as np
import pytest
import torch
from torch import nn

from helpers import confidence as C
from helpers import evaluate as E
from helpers.data import load_unlabelled
from helpers.evaluate import Predictions
from helpers.studies import cutmix_study
from helpers.models import Net


def preds_from(conf, pred, labels, num_classes=3):
    """Predictions whose predicted class has confidence ``conf``; the rest spread evenly."""
    conf, pred = np.asarray(conf, np.float32), np.asarray(pred)
    probs = np.repeat(((1 - conf) / (num_classes - 1))[:, None], num_classes, axis=1).astype(np.float32)
    probs[np.arange(len(pred)), pred] = conf
    return Predictions(probs=probs, pred=pred.astype(np.int64), conf=conf, labels=np.asarray(labels, np.int64))


# right, right, wrong (0.95), wrong (0.6), wrong (0.995), right
A = preds_from([0.9, 0.8, 0.95, 0.6, 0.995, 0.5], [0, 1, 2, 0, 1, 2], [0, 1, 0, 2, 0, 2])
# B corrects sample 2, breaks sample 5, keeps 3 and 4 wrong (4 with less confidence, 3 with more)
B = preds_from([0.9, 0.8, 0.7, 0.65, 0.6, 0.55], [0, 1, 0, 0, 1, 0], [0, 1, 0, 2, 0, 2])


def test_wrong_by_confidence_counts():
    counts = C.wrong_by_confidence(A)
    assert counts.to_dict() == {0.5: 3, 0.7: 2, 0.9: 2, 0.99: 1}


def test_confidence_summary():
    s = C.confidence_summary(A)
    assert s["accuracy"] == pytest.approx(0.5) and s["wrong"] == 3
    assert s["mean_conf_wrong"] == pytest.approx((0.95 + 0.6 + 0.995) / 3, rel=1e-6)
    assert s["mean_conf_right"] == pytest.approx((0.9 + 0.8 + 0.5) / 3, rel=1e-6)
    assert s["wrong >= 0.99"] == 1 and s["wrong >= 0.9"] == 2


def test_migration():
    m = E.migration(A, B)
    assert m == dict(rescued=1, broken=1, net=0, still_wrong=2, still_wrong_less_confident=1,
                     share_less_confident=0.5)
    with pytest.raises(ValueError):
        E.migration(A, preds_from([0.9], [0], [0]))


def test_calibration_table_and_ece_by_hand():
    table, ece = C.calibration(A, bins=2)
    # bin (0, 0.5]: conf 0.5 right; bin (0.5, 1]: the other five, 2 right of 5
    assert table["count"].tolist() == [1, 5]
    assert table.loc[0, "accuracy"] == 1.0 and table.loc[0, "confidence"] == pytest.approx(0.5)
    high = (0.9 + 0.8 + 0.95 + 0.6 + 0.995) / 5
    assert table.loc[1, "accuracy"] == pytest.approx(0.4)
    assert ece == pytest.approx((1 * 0.5 + 5 * abs(0.4 - high)) / 6, rel=1e-5)


def test_perfectly_calibrated_predictions_have_small_ece():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.34, 1.0, 20_000).astype(np.float32)
    right = rng.uniform(size=conf.size) < conf          # right with probability = confidence
    labels = np.where(right, 0, 1)
    p = preds_from(conf, np.zeros(conf.size, int), labels)
    assert C.calibration(p)[1] < 0.02
    over = preds_from(np.full(1000, 0.99), np.zeros(1000, int), np.r_[np.zeros(500), np.ones(500)])
    assert C.calibration(over)[1] == pytest.approx(0.49, abs=1e-5)


def test_risk_coverage():
    rc = C.risk_coverage(A)
    assert rc["coverage"].tolist() == pytest.approx([1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6, 1.0])
    # by confidence: 0.995 wrong, 0.95 wrong, 0.9 right, 0.8 right, 0.6 wrong, 0.5 right
    assert rc["accuracy"].tolist() == pytest.approx([0, 0, 1 / 3, 2 / 4, 2 / 5, 3 / 6])
    assert (rc["risk"] == 1 - rc["accuracy"]).all()
    assert C.accuracy_at_threshold(A, 0.8) == pytest.approx((4 / 6, 0.5))
    tied = C.risk_coverage(preds_from([0.9, 0.9, 0.5], [0, 1, 0], [0, 0, 0]))
    assert tied["coverage"].tolist() == pytest.approx([2 / 3, 1.0])  # ties are kept or dropped together


# --- test-time augmentation -----------------------------------------------------------------------


class Spy(nn.Module):
    """Predicts class 1 when the top-left pixel is brighter than the bottom-right, else class 0."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))
        self.seen = []

    def forward(self, x):
        self.seen.append(x.clone())
        d = (x[:, 0, 0, 0] - x[:, 0, -1, -1]) * 10
        return torch.stack([-d, d], 1) + self.w


def test_views_flip_blur_and_the_identical_pad_crop():
    x = torch.randn(2, 3, 32, 32)
    v = E.TTA_VIEWS
    assert torch.equal(v["hflip"](x), x.flip(-1)) and torch.equal(v["vflip"](x), x.flip(-2))
    assert torch.equal(v["pad_crop"](x), x)  # report 002's pad-4 + centre-crop-32 changes nothing
    blurred = v["blur"](x)
    assert blurred.shape == x.shape and blurred.std() < x.std()


def test_tta_averages_softmax_over_views_batched():
    images = torch.zeros(3, 3, 32, 32, dtype=torch.uint8)
    images[0, :, 0, 0] = 255   # top-left bright: class 1 as is; flipped, both corners are dark (50/50)
    model = Spy()
    one = E.predict(Net(model, (0, 0, 0), (1, 1, 1)), images, views=("original",))
    both = E.predict(Net(model, (0, 0, 0), (1, 1, 1)), images, views=("original", "hflip"), batch_size=2)
    assert one.pred[0] == 1
    assert both.probs[0] == pytest.approx((one.probs[0] + np.array([0.5, 0.5])) / 2, rel=1e-5)
    assert both.probs[1] == pytest.approx([0.5, 0.5])
    assert [len(s) for s in model.seen[1:]] == [2, 2, 1, 1]  # whole batches per view, not images
    with pytest.raises(ValueError, match="valid views: original, hflip, vflip, pad_crop, blur"):
        E.predict(Net(model, (0, 0, 0), (1, 1, 1)), images, views=("rotate",))


def test_load_unlabelled_folder_and_arrays(tmp_path):
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    for name, value in (("b", 10), ("a", 200)):
        Image.fromarray(np.full((32, 32, 3), value, np.uint8)).save(folder / f"{name}.png")
    ids, images = load_unlabelled(folder)
    assert ids == ["a", "b"] and images.shape == (2, 3, 32, 32) and images[0].float().mean() == 200
    np.save(tmp_path / "x.npy", np.zeros((4, 32, 32, 3), np.uint8))
    ids, images = load_unlabelled(tmp_path / "x.npy")
    assert ids == ["0", "1", "2", "3"] and images.shape == (4, 3, 32, 32)
    torch.save(torch.zeros(2, 3, 32, 32, dtype=torch.uint8), tmp_path / "x.pt")
    assert load_unlabelled(tmp_path / "x.pt")[1].shape == (2, 3, 32, 32)
    (folder / "notes.txt").write_text("hi")
    with pytest.raises(ValueError, match="not image files: notes.txt"):
        load_unlabelled(folder)
    np.save(tmp_path / "bad.npy", np.zeros((4, 32, 32), np.float32))
    with pytest.raises(ValueError, match="bad.npy: expected uint8"):
        load_unlabelled(tmp_path / "bad.npy")
    with pytest.raises(FileNotFoundError, match="missing"):
        load_unlabelled(tmp_path / "missing")


# --- two models on the same test images, with uncertainty (02) --------------------------------------

def test_confident_errors_one_seed_counts_and_mcnemar():
    table, out = C.confident_errors([A], [B], ("base", "mix"), reported=cutmix_study.STUDY.reported["wrong_by_confidence"])
    assert list(table.index) == ["all wrong answers", "wrong, conf. >= 0.5", "wrong, conf. >= 0.7",
                                 "wrong, conf. >= 0.9", "wrong, conf. >= 0.99"]
    # A wrong at 2 (0.95), 3 (0.6), 4 (0.995); B wrong at 3 (0.65), 4 (0.6), 5 (0.55)
    assert table["base"].tolist() == [3, 3, 2, 2, 1] and table["mix"].tolist() == [3, 3, 0, 0, 0]
    assert table["difference (images)"].tolist() == [0, 0, -2, -2, -1]
    # >= 0.9: two discordant images, both favour B: exact two-sided binomial p = 2 * 0.5 ** 2
    assert out["0.9"]["p_value"] == pytest.approx(0.5) and out["0.9"]["only_a"] == 2
    assert table.loc["wrong, conf. >= 0.9", "report (of 10,000)"] == "315 -> 44"
    assert table.loc["wrong, conf. >= 0.5", "report (of 10,000)"] == "—"


def test_confident_errors_over_seeds_uses_a_paired_t_test():
    table, out = C.confident_errors([A, A, B], [B, B, B], thresholds=(0.9,))
    assert "report (of 10,000)" not in table  # no report's counts given
    assert table.loc["wrong, conf. >= 0.9", "test"] == "paired t-test over 3 seeds"
    assert out["0.9"]["diffs"] == [-2, -2, 0] and out["0.9"]["mean"] == pytest.approx(-4 / 3)
    with pytest.raises(ValueError, match="one Predictions per seed"):
        C.confident_errors([A], [])


def test_ece_difference_matches_calibration_and_is_zero_for_the_same_model():
    r = C.ece_difference(A, B, bins=10, n_boot=500)
    assert r.mean_a == pytest.approx(C.calibration(A, bins=10)[1])
    assert r.mean_b == pytest.approx(C.calibration(B, bins=10)[1])
    assert r.diff == pytest.approx(r.mean_b - r.mean_a) and r.ci[0] <= r.ci[1]
    same = C.ece_difference(A, A, n_boot=200)
    assert same.diff == 0 and same.ci == (0.0, 0.0) and same.p_value == 1.0
    assert C.ece_difference(A, B, n_boot=300, seed=3) == C.ece_difference(A, B, n_boot=300, seed=3)


def test_ece_difference_finds_a_clear_calibration_gap():
    rng = np.random.default_rng(0)
    n, labels = 4000, np.zeros(4000, np.int64)
    conf = rng.uniform(0.5, 1.0, n)
    right = rng.random(n) < conf  # calibrated: right with probability conf
    calibrated = preds_from(conf, np.where(right, 0, 1), labels)
    overconfident = preds_from(np.full(n, 0.99), np.where(right, 0, 1), labels)  # same answers, sure of all
    r = C.ece_difference(calibrated, overconfident, n_boot=400)
    assert r.diff > 0.15 and r.ci[0] > 0.1 and r.p_value < 0.01


def test_less_confident_by_hand():
    # both wrong: samples 3 (A 0.6, B 0.65) and 4 (A 0.995, B 0.6): B less confident on one of two
    out = C.less_confident(A, B)
    assert out["both wrong"] == 2 and out["B less confident"] == 1 and out["share"] == 0.5
    assert out["p_value"] == pytest.approx(1.0) and out["ci"][0] < 0.5 < out["ci"][1]
    assert C.less_confident(A, A)["B less confident"] == 0


def test_val_test_table_and_split_shift():
    from types import SimpleNamespace

    val = {"base": preds_from([0.9] * 4, [0, 0, 0, 0], [0, 0, 0, 1]),
           "mix": preds_from([0.9] * 4, [0, 0, 0, 0], [0, 0, 1, 1])}
    test = {"base": A, "mix": B}  # 50% and 50%
    table, out = cutmix_study.val_test_table(val, test)
    assert list(table.index) == ["base", "mix", "mix - base"]
    assert table.loc["base", "validation - test (points)"] == pytest.approx(25.0)
    assert table.loc["mix", "validation - test (points)"] == pytest.approx(0.0)
    assert table.loc["mix - base", "validation - test (points)"] == pytest.approx(-25.0)
    assert out["mix - base"]["diff"] == pytest.approx(-0.25)
    assert "background" in cutmix_study.split_shift(SimpleNamespace(test_masks=np.zeros((1, 32, 32), bool)))
    assert "not a measure of reliance" in cutmix_study.split_shift(SimpleNamespace(test_masks=None))
