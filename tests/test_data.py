"""Tests of helpers.data: every source, the split, the synthetic generator, the cache, bad inputs.

Everything here builds its own tiny inputs (PNG trees, tar archives, fake CIFAR pickles) under
pytest's tmp_path; only the real-data test reads /work/shared/data and is skipped without it.
"""

from __future__ import annotations

import os
import pickle
import tarfile
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from helpers import data
from helpers.data import Dataset, load_dataset, make_synthetic, split_indices

REAL_CIFAR_JPG = Path("/work/shared/data/cifar10-jpg.tar.gz")


# ---------------------------------------------------------------------------------------------------
# fixtures: small inputs written by the tests
# ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small():
    return make_synthetic(n_train=1000, n_test=200, seed=0)


def write_png(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def make_tree(root: Path, classes=("cat", "dog", "emu"), n_train=4, n_test=2, seed=0) -> dict:
    """An ImageFolder tree of random 32x32 PNGs; returns the pixels written, by split, in load order."""
    rng = np.random.default_rng(seed)
    written = {"train": [], "test": []}
    for split, n in (("train", n_train), ("test", n_test)):
        for label, cls in enumerate(sorted(classes)):
            for i in range(n):
                pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                write_png(root / split / cls / f"{i:03d}.png", pixels)
                written[split].append((label, pixels))
    return written


def make_tar(tree: Path, archive: Path, wrap: str | None = None) -> Path:
    mode = "w:gz" if archive.name.endswith(".gz") else "w"
    with tarfile.open(archive, mode) as tar:
        for split in ("train", "test"):
            tar.add(tree / split, arcname=f"{wrap}/{split}" if wrap else split)
    return archive


def expected_arrays(written: dict, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.from_numpy(np.stack([p for _, p in written[split]])).permute(0, 3, 1, 2)
    labels = torch.tensor([label for label, _ in written[split]])
    return images, labels


def no_decoding(monkeypatch) -> None:
    """Make any decoding fail loudly: proves a cache hit, or that an error came before decoding."""
    def fail(*args, **kwargs):
        raise AssertionError("images were decoded")
    monkeypatch.setattr(data.folder, "decode_images", fail)


# ---------------------------------------------------------------------------------------------------
# synthetic
# ---------------------------------------------------------------------------------------------------


def test_synthetic_arrays_and_class_balance(small):
    assert small.name == "synthetic" and small.classes == list(data.SHAPES) and small.num_classes == 10
    for split, n in (("train", 1000), ("test", 200)):
        images, labels, masks = (getattr(small, f"{split}_{k}") for k in ("images", "labels", "masks"))
        assert images.shape == (n, 3, 32, 32) and images.dtype == torch.uint8 and images.is_contiguous()
        assert labels.shape == (n,) and labels.dtype == torch.int64
        assert masks.shape == (n, 32, 32) and masks.dtype == torch.bool
        assert torch.bincount(labels, minlength=10).tolist() == [n // 10] * 10
        assert not torch.equal(labels[: n // 2].sort().values, labels[: n // 2])  # shuffled, not grouped
        assert images.float().std() > 40  # real images, not a constant


def test_synthetic_remainder_goes_to_first_classes():
    ds = make_synthetic(n_train=23, n_test=7, seed=1)
    assert torch.bincount(ds.train_labels, minlength=10).tolist() == [3, 3, 3] + [2] * 7
    assert torch.bincount(ds.test_labels, minlength=10).tolist() == [1] * 7 + [0] * 3


def test_synthetic_is_deterministic_per_seed(small):
    again = make_synthetic(n_train=1000, n_test=200, seed=0)
    for key in ("train_images", "train_labels", "train_masks", "test_images", "test_labels", "test_masks"):
        assert torch.equal(getattr(small, key), getattr(again, key)), key
    other = make_synthetic(n_train=1000, n_test=200, seed=1)
    assert not torch.equal(small.train_images, other.train_images)
    assert not torch.equal(small.test_images, other.test_images)
    # The test split has its own stream: it does not move when n_train changes.
    assert torch.equal(make_synthetic(n_train=50, n_test=200, seed=0).test_images, small.test_images)


def test_synthetic_default_size_and_fingerprint():
    ds = load_dataset("synthetic")
    assert len(ds.train_labels) == 50_000 and len(ds.test_labels) == 10_000
    assert torch.bincount(ds.train_labels).tolist() == [5000] * 10
    assert torch.bincount(ds.test_labels).tolist() == [1000] * 10
    fp = ds.fingerprint()  # speed (~0.15 s for 60k images) is for the benchmarks, not a test
    assert len(fp) == 40 and int(fp, 16) >= 0
    assert ds.fingerprint() == fp


def test_synthetic_masks_cover_the_objects():
    ds = make_synthetic(n_train=2000, n_test=10, seed=5)
    m, y = ds.train_masks, ds.train_labels
    x = ds.train_images.float() / 255
    area = m.sum((1, 2))
    assert area.min() >= 20 and area.max() < 0.6 * 32 * 32  # every mask non-empty, none the whole image
    # The mask's centroid lies on the object for solid shapes and in the hole for rings.
    rows = torch.arange(32.0)
    cy = (m * rows[None, :, None]).sum((1, 2)) / area
    cx = (m * rows[None, None, :]).sum((1, 2)) / area
    at_centroid = m[torch.arange(len(m)), cy.round().long().clamp(0, 31), cx.round().long().clamp(0, 31)]
    ring = data.SHAPES.index("ring")
    assert at_centroid[y == ring].float().mean() < 0.05
    assert at_centroid[(y != ring) & (y != data.SHAPES.index("crescent"))].float().mean() > 0.9
    # Inside the mask the colour is the object's: far from the colour in a 2-px band just outside.
    band = (F.max_pool2d(m[:, None].float(), 5, 1, 2)[:, 0] > 0) & ~m
    inside = (x * m[:, None]).sum((2, 3)) / area[:, None]
    outside = (x * band[:, None]).sum((2, 3)) / band.sum((1, 2))[:, None]
    assert (inside - outside).norm(dim=1).median() > 0.3
    spread = (((x - inside[:, :, None, None]) ** 2) * m[:, None]).sum((2, 3)) / area[:, None]
    assert spread.sqrt().mean(1).median() < 0.12  # a flat colour plus shading and noise


def background_features(ds: Dataset, split: str) -> torch.Tensor:
    """Texture statistics of the background only: mean |difference| between background pixels at
    lags 1-4 in 4 directions (normalised), and their log total. The object's pixels are left out."""
    x = getattr(ds, f"{split}_images").float().mean(1) / 255
    bg = (~getattr(ds, f"{split}_masks")).float()
    feats = []
    for lag in (1, 2, 3, 4):
        for dy, dx in ((0, lag), (lag, 0), (lag, lag), (lag, -lag)):
            both = (bg * torch.roll(bg, (dy, dx), (1, 2)))[:, 4:-4, 4:-4]
            diff = (x - torch.roll(x, (dy, dx), (1, 2))).abs()[:, 4:-4, 4:-4]
            feats.append((diff * both).sum((1, 2)) / both.sum((1, 2)).clamp_min(1))
    f = torch.stack(feats, 1)
    return torch.cat([f / f.sum(1, keepdim=True), f.sum(1, keepdim=True).log()], 1)


def knn_accuracy(f_fit, y_fit, f_eval, y_eval, k=7) -> float:
    mu, sd = f_fit.mean(0), f_fit.std(0) + 1e-6
    nearest = torch.cdist((f_eval - mu) / sd, (f_fit - mu) / sd).topk(k, largest=False).indices
    votes = F.one_hot(y_fit[nearest], 10).sum(1)
    return (votes.argmax(1) == y_eval).float().mean().item()


def test_shortcut_background_predicts_train_labels_not_test_labels():
    ds = make_synthetic(n_train=2000, n_test=1000, seed=3, shortcut=0.8)
    f_train, f_test = background_features(ds, "train"), background_features(ds, "test")
    fit, y_fit = f_train[:1000], ds.train_labels[:1000]
    on_train = knn_accuracy(fit, y_fit, f_train[1000:], ds.train_labels[1000:])
    on_test = knn_accuracy(fit, y_fit, f_test, ds.test_labels)
    assert on_train > 0.25 and on_test < 0.17 and on_train - on_test > 0.15, (on_train, on_test)
    # Without the shortcut the background says nothing about the class, in train too.
    ds0 = make_synthetic(n_train=2000, n_test=10, seed=3, shortcut=0.0)
    f0 = background_features(ds0, "train")
    assert knn_accuracy(f0[:1000], ds0.train_labels[:1000], f0[1000:], ds0.train_labels[1000:]) < 0.17


def test_synthetic_rejects_bad_arguments():
    with pytest.raises(ValueError, match="shortcut"):
        make_synthetic(10, 10, shortcut=1.5)
    with pytest.raises(ValueError, match="n_train"):
        make_synthetic(n_train=-1)
    with pytest.raises(TypeError):
        load_dataset("synthetic", n_images=10)  # a typo must not be swallowed


# ---------------------------------------------------------------------------------------------------
# split, subset, fingerprint, mean_std, Dataset checks
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n, fraction, n_val", [(100, 0.1, 10), (50_000, 0.1, 5_000), (1000, 0.25, 250), (7, 0.5, 4)])
def test_split_sizes_disjoint_and_complete(n, fraction, n_val):
    train_idx, val_idx = split_indices(n, fraction, seed=42)
    assert len(val_idx) == n_val and len(train_idx) == n - n_val
    assert train_idx.dtype == torch.int64 and val_idx.dtype == torch.int64
    assert torch.equal(torch.cat([train_idx, val_idx]).sort().values, torch.arange(n))  # disjoint, complete


def test_split_is_deterministic_per_seed():
    a, b = split_indices(1000, 0.1, seed=7), split_indices(1000, 0.1, seed=7)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], split_indices(1000, 0.1, seed=8)[1])
    assert not torch.equal(a[1], torch.arange(900, 1000))  # a random draw, not the tail


@pytest.mark.parametrize("fraction", [0.0, 1.0, 1.5, -0.1])
def test_split_rejects_bad_fraction(fraction):
    with pytest.raises(ValueError, match="val_fraction"):
        split_indices(100, fraction, seed=0)


def test_split_is_random_split_of_the_reports_code():
    """Reports 000's and 004's code: the first 45,000 of a seeded permutation train, the rest validate
    (torch.utils.data.random_split); on torchvision's CIFAR-10 this is their split exactly."""
    from torch.utils.data import random_split

    train_idx, val_idx = split_indices(50_000, 0.1, seed=42)
    a, b = random_split(range(50_000), [45_000, 5_000], generator=torch.Generator().manual_seed(42))
    assert sorted(a.indices) == train_idx.tolist() and sorted(b.indices) == val_idx.tolist()
    perm = torch.randperm(50_000, generator=torch.Generator().manual_seed(2026))  # report 000's permutation
    assert split_indices(50_000, 0.1, seed=2026)[1].tolist() == sorted(perm[45_000:].tolist())


def test_split_rejects_an_empty_part():
    with pytest.raises(ValueError, match="empty"):
        split_indices(4, 0.05, seed=0)


def test_subset_is_stratified_and_masks_follow(small):
    sub = small.subset(n_train=500, n_test=100, seed=0)
    assert sub.name == "synthetic[n_train=500,n_test=100]"
    assert torch.bincount(sub.train_labels, minlength=10).tolist() == [50] * 10
    assert torch.bincount(sub.test_labels, minlength=10).tolist() == [10] * 10
    # Each kept image is an original image with its own label and mask.
    where = {small.train_images[i].numpy().tobytes(): i for i in range(len(small.train_labels))}
    for j in range(len(sub.train_labels)):
        i = where[sub.train_images[j].numpy().tobytes()]
        assert sub.train_labels[j] == small.train_labels[i]
        assert torch.equal(sub.train_masks[j], small.train_masks[i])
    again = small.subset(n_train=500, n_test=100, seed=0)
    assert torch.equal(again.train_images, sub.train_images)
    assert not torch.equal(small.subset(n_train=500, seed=1).train_images, sub.train_images)
    only_train = small.subset(n_train=100)
    assert only_train.name == "synthetic[n_train=100]" and torch.equal(only_train.test_images, small.test_images)


def test_subset_of_imbalanced_labels_is_proportional():
    labels = torch.tensor([0] * 60 + [1] * 30 + [2] * 10)
    images = torch.zeros(100, 3, 32, 32, dtype=torch.uint8)
    ds = Dataset("toy", ["a", "b", "c"], images, labels, images[:3], labels[[0, 60, 90]])
    sub = ds.subset(n_train=11)
    assert torch.bincount(sub.train_labels, minlength=3).tolist() == [7, 3, 1]  # 6.6, 3.3, 1.1
    with pytest.raises(ValueError, match="n_train"):
        ds.subset(n_train=101)


def test_fingerprint_follows_content_and_name(small):
    same = make_synthetic(n_train=1000, n_test=200, seed=0)
    assert small.fingerprint() == same.fingerprint()
    images = small.train_images.clone()
    images[0, 0, 0, 0] ^= 1
    changed = Dataset("synthetic", small.classes, images, small.train_labels, small.test_images,
                      small.test_labels, small.train_masks, small.test_masks)
    assert changed.fingerprint() != small.fingerprint()
    renamed = Dataset("other", small.classes, small.train_images, small.train_labels, small.test_images,
                      small.test_labels, small.train_masks, small.test_masks)
    assert renamed.fingerprint() != small.fingerprint()
    assert small.subset(n_train=500).fingerprint() != small.fingerprint()


def test_mean_std_matches_a_direct_computation(small):
    x = small.train_images.double() / 255
    mean, std = small.mean_std()
    assert np.allclose(mean, x.mean(dim=(0, 2, 3)).numpy(), atol=1e-5)
    assert np.allclose(std, x.permute(1, 0, 2, 3).reshape(3, -1).std(dim=1, unbiased=False).numpy(), atol=1e-5)
    assert data.CIFAR10_MEAN == (0.4914, 0.4822, 0.4465) and data.CIFAR10_STD == (0.2023, 0.1994, 0.2010)


def test_dataset_rejects_wrong_arrays():
    images = torch.zeros(4, 3, 32, 32, dtype=torch.uint8)
    labels = torch.zeros(4, dtype=torch.int64)
    with pytest.raises(ValueError, match="uint8"):
        Dataset("x", ["a"], images.float(), labels, images, labels)
    with pytest.raises(ValueError, match="labels"):
        Dataset("x", ["a"], images, labels + 1, images, labels)  # label 1 with one class


# ---------------------------------------------------------------------------------------------------
# folder:PATH
# ---------------------------------------------------------------------------------------------------


def test_folder_tree_loads_exact_pixels(tmp_path):
    written = make_tree(tmp_path / "tree")
    ds = load_dataset(f"folder:{tmp_path / 'tree'}", root=tmp_path / "data")
    assert ds.name == f"folder:{tmp_path / 'tree'}" and ds.classes == ["cat", "dog", "emu"]
    for split in ("train", "test"):
        images, labels = expected_arrays(written, split)
        assert torch.equal(getattr(ds, f"{split}_images"), images)  # PNG is lossless: exact pixels
        assert torch.equal(getattr(ds, f"{split}_labels"), labels)
    assert ds.train_masks is None and ds.train_images.is_contiguous()


@pytest.mark.parametrize("archive, wrap", [("pack.tar.gz", "pack"), ("pack.tgz", None), ("pack.tar", None)])
def test_folder_archives_match_the_tree(tmp_path, archive, wrap):
    written = make_tree(tmp_path / "tree")
    path = make_tar(tmp_path / "tree", tmp_path / archive, wrap=wrap)
    ds = load_dataset(f"folder:{path}", root=tmp_path / "data")
    assert ds.classes == ["cat", "dog", "emu"]
    for split in ("train", "test"):
        images, labels = expected_arrays(written, split)
        assert torch.equal(getattr(ds, f"{split}_images"), images)
        assert torch.equal(getattr(ds, f"{split}_labels"), labels)


def test_folder_resizes_other_sizes_and_greyscale(tmp_path):
    make_tree(tmp_path / "tree", n_train=1, n_test=1)
    tall = np.zeros((64, 32, 3), dtype=np.uint8)  # 32 wide: no resize, the centre 32 rows are kept
    tall[:16] = (255, 0, 0)
    tall[16:48] = 200
    tall[48:] = (0, 0, 255)
    write_png(tmp_path / "tree" / "train" / "cat" / "tall.png", tall)
    write_png(tmp_path / "tree" / "train" / "dog" / "wide.png", np.full((50, 70, 3), 90, dtype=np.uint8))
    Image.fromarray(np.full((32, 32), 77, dtype=np.uint8)).save(tmp_path / "tree" / "test" / "dog" / "grey.png")
    ds = load_dataset(f"folder:{tmp_path / 'tree'}", root=tmp_path / "data", cache=False)
    assert ds.train_images.shape == (5, 3, 32, 32)  # cat/000 cat/tall dog/000 dog/wide emu/000
    assert (ds.train_images[1] == 200).all()
    assert (ds.train_images[3] == 90).all()
    assert (ds.test_images[2] == 77).all()  # cat/000 dog/000 dog/grey emu/000: grey -> RGB
    assert not (tmp_path / "data" / "cache").exists()  # cache=False writes nothing


def test_folder_second_load_hits_the_cache(tmp_path, monkeypatch):
    make_tree(tmp_path / "tree")
    source, root = f"folder:{tmp_path / 'tree'}", tmp_path / "data"
    first = load_dataset(source, root=root)
    files = list((root / "cache").iterdir())
    assert len(files) == 1 and files[0].name.startswith("tree-") and files[0].suffix == ".pt"
    with monkeypatch.context() as m:
        no_decoding(m)
        second = load_dataset(source, root=root)
    assert second.fingerprint() == first.fingerprint()
    # A changed tree is a different key: decoded again, a second cache file.
    write_png(tmp_path / "tree" / "train" / "cat" / "new.png", np.zeros((32, 32, 3), dtype=np.uint8))
    third = load_dataset(source, root=root)
    assert len(third.train_labels) == len(first.train_labels) + 1
    assert len(list((root / "cache").iterdir())) == 2


def test_folder_corrupt_cache_is_reported_and_rebuilt(tmp_path):
    make_tree(tmp_path / "tree")
    source, root = f"folder:{tmp_path / 'tree'}", tmp_path / "data"
    first = load_dataset(source, root=root)
    (cache_file,) = (root / "cache").iterdir()
    cache_file.write_bytes(b"not a torch file")
    with pytest.warns(UserWarning, match=cache_file.name) as caught:
        rebuilt = load_dataset(source, root=root)
    assert len(caught) == 1 and "\n" not in str(caught[0].message)
    assert rebuilt.fingerprint() == first.fingerprint()
    assert data.folder.read_cache(cache_file) is not None  # the rebuilt file is whole again
    assert not [p for p in (root / "cache").iterdir() if p.name.endswith(".tmp")]  # no temp files left


def test_folder_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="no-such-dir"):
        load_dataset(f"folder:{tmp_path / 'no-such-dir'}", root=tmp_path)


def test_unknown_source_lists_the_choices():
    with pytest.raises(ValueError) as err:
        load_dataset("imagenet")
    for choice in data.SOURCES:
        assert choice in str(err.value)


@pytest.mark.parametrize("bad_name, payload", [("notes.txt", b"hello"), ("broken.png", b"not a png")])
def test_folder_names_the_bad_file(tmp_path, monkeypatch, bad_name, payload):
    make_tree(tmp_path / "tree")
    (tmp_path / "tree" / "train" / "dog" / bad_name).write_bytes(payload)
    if bad_name.endswith(".txt"):
        no_decoding(monkeypatch)  # a wrong extension is caught from the listing alone
    with pytest.raises(ValueError, match=f"dog/{bad_name}"):
        load_dataset(f"folder:{tmp_path / 'tree'}", root=tmp_path / "data")


def test_folder_names_the_empty_class_folder(tmp_path, monkeypatch):
    make_tree(tmp_path / "tree")
    (tmp_path / "tree" / "train" / "yak").mkdir()
    (tmp_path / "tree" / "test" / "yak").mkdir()
    cat = (tmp_path / "tree" / "test" / "cat" / "000.png").read_bytes()
    (tmp_path / "tree" / "test" / "yak" / "0.png").write_bytes(cat)  # test/yak has an image, train/yak none
    no_decoding(monkeypatch)
    with pytest.raises(ValueError, match="train/yak"):
        load_dataset(f"folder:{tmp_path / 'tree'}", root=tmp_path / "data")


def test_folder_mismatched_classes_are_listed(tmp_path, monkeypatch):
    make_tree(tmp_path / "tree")
    os.rename(tmp_path / "tree" / "test" / "emu", tmp_path / "tree" / "test" / "owl")
    no_decoding(monkeypatch)
    with pytest.raises(ValueError, match=r"only in train: \['emu'\]; only in test: \['owl'\]"):
        load_dataset(f"folder:{tmp_path / 'tree'}", root=tmp_path / "data")


def test_folder_needs_train_and_test(tmp_path):
    make_tree(tmp_path / "tree")
    for p in (tmp_path / "tree" / "test").rglob("*.png"):
        p.unlink()
    for d in (tmp_path / "tree" / "test").iterdir():
        d.rmdir()
    (tmp_path / "tree" / "test").rmdir()
    with pytest.raises(ValueError, match="test/"):
        load_dataset(f"folder:{tmp_path / 'tree'}", root=tmp_path / "data")


def test_folder_rejects_a_file_that_is_not_a_tar(tmp_path):
    (tmp_path / "images.zip").write_bytes(b"PK")
    (tmp_path / "fake.tar.gz").write_bytes(b"not gzip")
    with pytest.raises(ValueError, match="images.zip"):
        load_dataset(f"folder:{tmp_path / 'images.zip'}", root=tmp_path)
    with pytest.raises(ValueError, match="fake.tar.gz"):
        load_dataset(f"folder:{tmp_path / 'fake.tar.gz'}", root=tmp_path)


@pytest.mark.skipif(not REAL_CIFAR_JPG.exists(), reason=f"{REAL_CIFAR_JPG} not present (real CIFAR-10 JPEGs)")
def test_real_cifar10_jpegs_load_and_cache(tmp_path, monkeypatch):
    source = f"folder:{REAL_CIFAR_JPG}"
    ds = load_dataset(source, root=tmp_path)
    assert ds.classes == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    assert ds.train_images.shape == (50_000, 3, 32, 32) and ds.test_images.shape == (10_000, 3, 32, 32)
    assert torch.bincount(ds.train_labels).tolist() == [5000] * 10
    assert torch.bincount(ds.test_labels).tolist() == [1000] * 10
    mean, _ = ds.mean_std()
    assert np.allclose(mean, data.CIFAR10_MEAN, atol=0.01)  # it really is CIFAR-10
    no_decoding(monkeypatch)  # the second load must come from the cache: decoding now fails
    cached = load_dataset(source, root=tmp_path)
    assert torch.equal(cached.train_images, ds.train_images) and torch.equal(cached.test_labels, ds.test_labels)


# ---------------------------------------------------------------------------------------------------
# cifar10 / cifar100 through torchvision, on tiny archives in torchvision's on-disk format
# ---------------------------------------------------------------------------------------------------


def fake_cifar(root: Path, kind: str, per_file: int = 6, num_classes: int = 10) -> dict:
    """Pickled batches as in the real archives: rows of 3072 bytes (R plane, G plane, B plane)."""
    rng = np.random.default_rng(0)
    if kind == "cifar10":
        folder, files, label_key = root / "cifar-10-batches-py", ["data_batch_1", "data_batch_2", "data_batch_3",
                                                               "data_batch_4", "data_batch_5", "test_batch"], "labels"
        meta_file, names_key = "batches.meta", "label_names"
    else:
        folder, files, label_key = root / "cifar-100-python", ["train", "test"], "fine_labels"
        meta_file, names_key = "meta", "fine_label_names"
    folder.mkdir(parents=True)
    rows = {}
    for name in files:
        batch = {"data": rng.integers(0, 256, (per_file, 3072), dtype=np.uint8),
                 label_key: rng.integers(0, num_classes, per_file).tolist()}
        (folder / name).write_bytes(pickle.dumps(batch))
        rows[name] = batch
    names = [f"class{i}" for i in range(num_classes)]
    (folder / meta_file).write_bytes(pickle.dumps({names_key: names}))
    test_name = files[-1]
    train = [rows[n] for n in files[:-1]]
    return {
        "classes": names,
        "train_images": torch.from_numpy(np.concatenate([b["data"] for b in train]).reshape(-1, 3, 32, 32)),
        "train_labels": torch.tensor(sum((b[label_key] for b in train), [])),
        "test_images": torch.from_numpy(rows[test_name]["data"].reshape(-1, 3, 32, 32)),
        "test_labels": torch.tensor(rows[test_name][label_key]),
    }


@pytest.fixture
def skip_md5(monkeypatch):
    """Our fake files cannot have the real md5s: accept any existing file, in this test only."""
    import torchvision.datasets.cifar as cifar
    monkeypatch.setattr(cifar, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))


@pytest.mark.parametrize("kind, num_classes", [("cifar10", 10), ("cifar100", 100)])
def test_cifar_sources_read_torchvision_archives(tmp_path, skip_md5, kind, num_classes):
    expected = fake_cifar(tmp_path, kind, num_classes=num_classes)
    ds = load_dataset(kind, root=tmp_path, download=False)
    assert ds.name == kind and ds.classes == expected["classes"] and ds.num_classes == num_classes
    for key in ("train_images", "train_labels", "test_images", "test_labels"):
        assert torch.equal(getattr(ds, key), expected[key]), key
    assert ds.train_images.is_contiguous() and ds.train_labels.dtype == torch.int64


def test_cifar_keeps_torchvision_integrity_checks(tmp_path):
    fake_cifar(tmp_path, "cifar10")  # wrong md5s, no skip_md5: must be refused
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py"):
        load_dataset("cifar10", root=tmp_path, download=False)


@pytest.mark.parametrize("kind, archive", [("cifar10", "cifar-10-python.tar.gz"),
                                           ("cifar100", "cifar-100-python.tar.gz")])
def test_cifar_offline_says_how_to_get_it(tmp_path, monkeypatch, kind, archive):
    import torchvision.datasets.cifar as cifar

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")
    monkeypatch.setattr(cifar, "download_and_extract_archive", offline)
    with pytest.raises(FileNotFoundError) as err:
        load_dataset(kind, root=tmp_path / "data")
    message = str(err.value)
    assert archive in message and "https://www.cs.toronto.edu/~kriz/" + archive in message
    assert str(tmp_path / "data") in message and "no network" in message
