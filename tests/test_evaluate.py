"""helpers.evaluate: hand-computed small cases for every function."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from helpers import evaluate as E
from helpers.evaluate import Predictions
from helpers.loader import normalize
from helpers.models import Net, SimpleCNN


# --- a fixed 5-sample example: labels vs predictions, 3 classes -----------------------------------
LABELS = [0, 0, 1, 2, 2]
PRED = [0, 1, 1, 2, 0]


def test_confusion_hand_example():
    cm = E.confusion(PRED, LABELS, 3)
    # rows = true class, columns = predicted class
    np.testing.assert_array_equal(cm, [[1, 1, 0],
                                       [0, 1, 0],
                                       [1, 0, 1]])
    assert cm.dtype == np.int64
    assert cm.sum(axis=1).tolist() == [2, 1, 2]  # rows sum to the class counts
    with pytest.raises(ValueError):
        E.confusion([0, 3], [0, 1], 3)  # a prediction outside the classes


def test_per_class_accuracy_hand_example():
    np.testing.assert_allclose(E.per_class_accuracy(PRED, LABELS, 3), [0.5, 1.0, 0.5])
    four = E.per_class_accuracy(PRED, LABELS, 4)  # class 3 has no samples
    np.testing.assert_allclose(four[:3], [0.5, 1.0, 0.5])
    assert math.isnan(four[3])


def test_confusion_difference_is_b_minus_a():
    cm_a = E.confusion(PRED, LABELS, 3)
    cm_b = E.confusion(LABELS, LABELS, 3)  # B is always right
    diff = E.confusion_difference(cm_a, cm_b)
    np.testing.assert_array_equal(diff, [[1, -1, 0],
                                         [0, 0, 0],
                                         [-1, 0, 1]])
    # unsigned inputs must not wrap around
    d = E.confusion_difference(np.array([[3]], np.uint8), np.array([[1]], np.uint8))
    assert d.tolist() == [[-2]]
    with pytest.raises(ValueError):
        E.confusion_difference(np.zeros((2, 2)), np.zeros((3, 3)))


# --- Predictions built by hand --------------------------------------------------------------------

def preds_from(pred, conf, labels, num_classes=3) -> Predictions:
    """Predictions with the given argmax and confidence; the rest of each row shares 1 - conf."""
    pred, conf = np.asarray(pred), np.asarray(conf, np.float32)
    probs = np.repeat(((1 - conf) / (num_classes - 1))[:, None], num_classes, axis=1).astype(np.float32)
    probs[np.arange(len(pred)), pred] = conf
    return Predictions(probs=probs, pred=pred.astype(np.int64), conf=conf,
                       labels=None if labels is None else np.asarray(labels, np.int64))


CLASSES = ["cat", "dog", "frog"]


def test_correct_needs_labels():
    p = preds_from([0, 1], [0.9, 0.8], [0, 0])
    assert p.correct.tolist() == [True, False]
    with pytest.raises(ValueError):
        preds_from([0, 1], [0.9, 0.8], None).correct


def test_failures_ranked_by_confidence():
    p = preds_from(pred=[1, 1, 0, 2, 0, 2], conf=[0.6, 0.9, 0.8, 0.95, 0.6, 0.5], labels=[0, 1, 2, 0, 1, 2])
    df = E.failures(p, CLASSES)
    assert list(df.columns) == ["index", "true", "pred", "confidence", "true_name", "pred_name"]
    assert df["index"].tolist() == [3, 2, 0, 4]  # 0.95, 0.8, then the 0.6 tie in index order
    assert df["true"].tolist() == [0, 2, 0, 1]
    assert df["pred"].tolist() == [2, 0, 1, 0]
    np.testing.assert_allclose(df["confidence"], [0.95, 0.8, 0.6, 0.6])
    assert df["true_name"].tolist() == ["cat", "frog", "cat", "dog"]
    assert df["pred_name"].tolist() == ["frog", "cat", "dog", "cat"]
    assert df.index.tolist() == [0, 1, 2, 3]
    assert len(E.failures(preds_from([0, 1], [0.9, 0.9], [0, 1]), CLASSES)) == 0  # no mistakes


def diverse_df():
    # (true, pred, confidence): a and b share a pair; c a true class with a new pair; d, e another pair
    return pd.DataFrame({
        "index": [10, 11, 12, 13, 14, 15],
        "true": [0, 0, 0, 1, 1, 2],
        "pred": [1, 1, 2, 0, 0, 1],
        "confidence": [0.99, 0.98, 0.97, 0.90, 0.85, 0.50],
    })


def test_pick_diverse_prefers_new_true_classes():
    picked = E.pick_diverse(diverse_df(), k=3)
    # b (0.98) repeats a's pair and c (0.97) a's true class: the less confident d and f win
    assert picked["index"].tolist() == [10, 13, 15]
    assert len(set(zip(picked["true"], picked["pred"]))) == 3
    assert picked["true"].nunique() == 3


def test_pick_diverse_falls_back_to_new_pairs_then_repeats():
    assert E.pick_diverse(diverse_df(), k=4)["index"].tolist() == [10, 12, 13, 15]  # c: new pair (0, 2)
    assert E.pick_diverse(diverse_df(), k=5)["index"].tolist() == [10, 11, 12, 13, 15]  # repeat b (0.98 > e)
    assert sorted(E.pick_diverse(diverse_df(), k=10)["index"]) == [10, 11, 12, 13, 14, 15]
    assert len(E.pick_diverse(diverse_df(), k=0)) == 0
    # the input order does not matter: it ranks by confidence itself
    shuffled = diverse_df().iloc[[5, 3, 1, 0, 4, 2]]
    assert E.pick_diverse(shuffled, k=3)["index"].tolist() == [10, 13, 15]


def test_pick_diverse_on_failures_output():
    p = preds_from(pred=[1, 1, 2, 0, 1], conf=[0.9, 0.8, 0.7, 0.6, 0.5], labels=[0, 0, 0, 1, 2])
    picked = E.pick_diverse(E.failures(p, CLASSES), k=3)
    assert picked["index"].tolist() == [0, 3, 4]
    assert picked["true_name"].tolist() == ["cat", "dog", "frog"]


# --- A vs B ----------------------------------------------------------------------------------------

AB_LABELS = [0, 1, 2, 0, 1]
A = preds_from(pred=[0, 0, 2, 1, 1], conf=[0.9, 0.9, 0.9, 0.9, 0.9], labels=AB_LABELS)  # right: T F T F T
B = preds_from(pred=[1, 1, 2, 0, 0], conf=[0.7, 0.6, 0.9, 0.8, 0.95], labels=AB_LABELS)  # right: F T T T F


def test_rescued_and_broken():
    assert E.rescued(A, B).tolist() == [3, 1]  # B right, A wrong; B's confidence 0.8 then 0.6
    assert E.broken(A, B).tolist() == [4, 0]  # A right, B wrong; B's confidence 0.95 then 0.7
    assert set(E.broken(A, B)) == set(E.rescued(B, A))
    assert E.rescued(A, A).tolist() == [] and E.broken(B, B).tolist() == []


def test_a_and_b_must_share_labels():
    other = preds_from(pred=[0, 0, 2, 1, 1], conf=[0.9] * 5, labels=[0, 1, 2, 0, 2])
    with pytest.raises(ValueError):
        E.rescued(A, other)
    with pytest.raises(ValueError):
        E.compare_cases([0], A, preds_from([0], [0.9], [0]), CLASSES)


def test_compare_cases_every_category():
    labels = [0, 0, 0, 0, 0, 0, 0]
    a = preds_from(pred=[0, 1, 0, 1, 1, 1, 1], conf=[0.9, 0.6, 0.8, 0.5, 0.5, 0.7, 0.6], labels=labels)
    b = preds_from(pred=[2, 0, 0, 2, 1, 1, 1], conf=[0.6, 0.7, 0.9, 0.6, 0.7, 0.5, 0.6], labels=labels)
    df = E.compare_cases([5, 0, 1, 2, 3, 4, 6], a, b, CLASSES)
    assert list(df.columns) == ["index", "true", "true_name", "pred_a", "pred_a_name", "conf_a",
                                "pred_b", "pred_b_name", "conf_b", "change"]
    assert df["index"].tolist() == [5, 0, 1, 2, 3, 4, 6]  # the given order
    assert df["change"].tolist() == [
        "still wrong, less confident",  # 5: both say 1, 0.7 -> 0.5
        "broken",  # 0: A right, B wrong
        "rescued",  # 1: A wrong, B right
        "unchanged (right)",  # 2
        "still wrong, now another class",  # 3: 1 -> 2
        "still wrong, more confident",  # 4: both say 1, 0.5 -> 0.7
        "still wrong, less confident",  # 6: an exact tie is "not more confident"
    ]
    assert set(df["change"]) == set(E.CHANGES)
    row = df.iloc[4]
    assert (row["pred_a_name"], row["pred_b_name"], row["true_name"]) == ("dog", "frog", "cat")
    assert row["conf_a"] == pytest.approx(0.5) and row["conf_b"] == pytest.approx(0.6)
    with pytest.raises(IndexError):
        E.compare_cases([7], a, b, CLASSES)


def test_epochs_to_reach():
    h = pd.DataFrame({"epoch": [1, 2, 3, 4], "val_acc": [0.2, 0.5, 0.49, 0.7], "train_acc": [0.3, 0.6, 0.8, 0.9]})
    assert E.epochs_to_reach(h, 0.5) == 2  # reaching means >=
    assert E.epochs_to_reach(h, 0.6) == 4  # the dip at epoch 3 does not count
    assert E.epochs_to_reach(h, 0.8) is None
    assert E.epochs_to_reach(h, 0.75, column="train_acc") == 3
    assert E.epochs_to_reach(h.drop(columns="epoch"), 0.6) == 4  # rows counted from 1
    with pytest.raises(KeyError):
        E.epochs_to_reach(h, 0.5, column="nope")


# --- predict ---------------------------------------------------------------------------------------

class ChannelMeans(nn.Module):
    """Logits = per-channel mean of the normalised input: hand-computable from the images."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))  # so the model has a device

    def forward(self, x):
        return x.mean(dim=(2, 3)) + self.dummy


def test_predict_hand_computed():
    mean, std = (0.5, 0.4, 0.3), (0.25, 0.5, 0.1)
    values = np.array([[255, 0, 51], [102, 204, 153]])  # one colour per image
    images = torch.tensor(values, dtype=torch.uint8)[:, :, None, None].expand(2, 3, 4, 4).contiguous()
    p = E.predict(Net(ChannelMeans(), mean, std), images, labels=[0, 1])
    logits = (values / 255 - np.array(mean)) / np.array(std)  # [[2, -0.8, -1], [-0.4, 0.8, 3]]
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(p.probs, expected, rtol=1e-5)
    assert p.pred.tolist() == [0, 2]
    np.testing.assert_allclose(p.conf, expected.max(axis=1), rtol=1e-5)
    assert p.correct.tolist() == [True, False]
    assert p.probs.dtype == np.float32 and p.pred.dtype == np.int64 and len(p) == 2


@pytest.fixture(scope="module")
def cnn_and_images():
    torch.manual_seed(0)
    model = SimpleCNN(num_classes=10, batch_norm=True, width=0.25)
    # a few SGD steps so BatchNorm's running statistics differ from the batch statistics
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (23, 3, 32, 32), dtype=torch.uint8, generator=g)
    for _ in range(3):
        loss = nn.functional.cross_entropy(model(normalize(images, (0.5,) * 3, (0.25,) * 3)), torch.arange(23) % 10)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model, images


def test_predict_equals_manual_loop(cnn_and_images):
    model, images = cnn_and_images
    mean, std = (0.5,) * 3, (0.25,) * 3
    model.train()  # predict must evaluate in eval mode (Dropout off, BN running stats) ...
    p = E.predict(Net(model, mean, std), images, labels=torch.arange(23) % 10, batch_size=500)
    assert model.training  # ... and give the mode back
    model.eval()
    with torch.no_grad():
        manual = torch.cat([model(normalize(images[i : i + 1], mean, std)).softmax(1) for i in range(len(images))])
    np.testing.assert_allclose(p.probs, manual.numpy(), atol=1e-6)
    np.testing.assert_allclose(p.probs.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(p.pred, manual.argmax(1).numpy())
    np.testing.assert_allclose(p.conf, manual.max(1).values.numpy(), atol=1e-6)
    np.testing.assert_array_equal(p.labels, np.arange(23) % 10)
    np.testing.assert_array_equal(p.correct, p.pred == np.arange(23) % 10)


def test_predict_bf16_is_a_cuda_only_choice(cnn_and_images):
    model, images = cnn_and_images
    with pytest.raises(ValueError, match="precision 'bf16' .*runs on CUDA only"):
        E.predict(Net(model, (0.5,) * 3, (0.25,) * 3), images, precision="bf16")
    with pytest.raises(ValueError, match="valid: fp32, bf16"):
        E.predict(Net(model, (0.5,) * 3, (0.25,) * 3), images, precision="fp16")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA: fp32 vs bf16 evaluation needs a GPU")
def test_predict_is_fp32_on_cuda_unless_told(cnn_and_images, monkeypatch):
    model, images = cnn_and_images
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)   # plain fp32 convolutions, to compare
    cpu = E.predict(Net(model, (0.5,) * 3, (0.25,) * 3), images)
    gpu = E.predict(Net(model.cuda(), (0.5,) * 3, (0.25,) * 3), images)
    bf16 = E.predict(Net(model, (0.5,) * 3, (0.25,) * 3), images, precision="bf16")
    model.cpu()
    np.testing.assert_allclose(gpu.probs, cpu.probs, atol=1e-4)      # fp32 on both
    assert np.abs(bf16.probs - cpu.probs).max() > 1e-4                # bf16 keeps ~3 significant digits


@pytest.mark.parametrize("batch_size", [1, 7, 23])
def test_predict_batch_size_does_not_matter(cnn_and_images, batch_size):
    model, images = cnn_and_images
    ref = E.predict(Net(model, (0.5,) * 3, (0.25,) * 3), images, batch_size=500)
    p = E.predict(Net(model, (0.5,) * 3, (0.25,) * 3), images, batch_size=batch_size)
    np.testing.assert_allclose(p.probs, ref.probs, atol=1e-6)
    np.testing.assert_array_equal(p.pred, ref.pred)
    assert p.labels is None
    with pytest.raises(ValueError):
        p.correct


# --- measured evidence for studied failures --------------------------------------------------------


def test_embed_is_the_classifier_input_unit_normed():
    from helpers.models import FlexibleCNN

    torch.manual_seed(0)
    model = FlexibleCNN(width=0.125, blocks=2).train()  # 2 blocks: a fresh 5-block net's features are ~1e-13
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    feats = E.embed(Net(model, mean, std), images, batch_size=4)
    assert model.training  # mode restored
    model.eval()
    with torch.no_grad():
        x = normalize(images, mean, std)
        manual = torch.flatten(model.pool(model.stages(model.stem(x))), 1)
    expected = torch.nn.functional.normalize(manual, dim=1).numpy()
    assert feats.shape == (6, model.fc.in_features)
    np.testing.assert_allclose(feats, expected, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)


def test_nearest_train_classes_by_cosine_similarity():
    train = np.array([[1, 0], [0, 1], [0.7, 0.7], [-1, 0]], np.float32)
    train /= np.linalg.norm(train, axis=1, keepdims=True)
    labels = np.array([3, 1, 2, 0])
    query = np.array([[0.9, 0.1], [0, 1]], np.float32)
    got = E.nearest_train_classes(query, train, labels, k=2)
    assert got.tolist() == [[3, 2], [1, 2]]
    with pytest.raises(ValueError, match="1 <= k <= 4"):
        E.nearest_train_classes(query, train, labels, k=5)


def test_case_table_counts_neighbours_of_each_class():
    cases = pd.DataFrame({"index": [7, 9], "true": [0, 1], "pred": [1, 2], "confidence": [0.99, 0.8],
                          "true_name": ["a", "b"], "pred_name": ["b", "c"]})
    neighbours = np.array([[1, 1, 0, 1, 2], [2, 0, 0, 0, 1]])
    table = E.case_table(cases, neighbours, ["a", "b", "c"], on_object=[0.1, 0.6])
    assert table.loc[7, "neighbours of predicted class (of 5)"] == 3
    assert table.loc[7, "neighbours of true class (of 5)"] == 1
    assert table.loc[9, "neighbours of predicted class (of 5)"] == 1
    assert table.loc[9, "most common neighbour"] == "a"
    assert table["Grad-CAM share on object"].tolist() == [0.1, 0.6]


def test_tta_as_report_002s_code_made_it():
    """Its code averaged logits, blurred over height, width and colour (scipy's gaussian_filter on the
    HWC array) and normalised its TTA with other statistics than its test."""
    from scipy import ndimage

    torch.manual_seed(0)
    model = SimpleCNN(width=0.25).eval()
    images = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    net = Net(model, (0.5,) * 3, (0.25,) * 3)
    views = ("original", "hflip")
    p = E.predict(net, images, views=views, average="logits")
    x = images.float().div(255)
    logits = [model(normalize(v, net.mean, net.std)) for v in (x, x.flip(-1))]
    np.testing.assert_allclose(p.probs, ((logits[0] + logits[1]) / 2).softmax(1).detach().numpy(), atol=1e-6)
    hwc = x.permute(0, 2, 3, 1).numpy()
    blurred = torch.from_numpy(ndimage.gaussian_filter(hwc, sigma=(0, 1, 1, 1))).permute(0, 3, 1, 2)
    torch.testing.assert_close(E.TTA_VIEWS["blur_hwc"](x), blurred)
    assert not torch.allclose(E.TTA_VIEWS["blur_hwc"](x), E.TTA_VIEWS["blur"](x))  # the colours mix too
    other = E.predict(net, images, stats=((0.4,) * 3, (0.2,) * 3))
    assert not np.allclose(other.probs, E.predict(net, images).probs)
    with pytest.raises(ValueError, match="average must be 'probs' or 'logits'"):
        E.predict(net, images, average="median")
