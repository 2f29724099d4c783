"""Dataset "auto": the report's CIFAR from the data folder or a download, else the synthetic stand-in."""

import time
import urllib.error

import pytest

from helpers import profiles
from helpers.data import auto
from helpers.profiles import settings
from test_data import fake_cifar, make_tar, make_tree, skip_md5  # noqa: F401 (skip_md5 is a fixture)

TEN = [f"c{i}" for i in range(10)]


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """An empty project data folder; asking the network fails the test unless the test allows it."""
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setattr(profiles, "DATA_DIR", root)
    monkeypatch.delenv(auto.OFFLINE_ENV, raising=False)
    monkeypatch.setattr(auto, "unreachable", lambda url, timeout=auto.TIMEOUT: pytest.fail(f"asked the network: {url}"))
    return root


def network_says(monkeypatch, answer):
    """Replace the download check: ``answer`` None = reachable, else the reason it is not. Returns the URLs asked."""
    asked = []

    def probe(url, timeout=auto.TIMEOUT):
        asked.append(url)
        return answer
    monkeypatch.setattr(auto, "unreachable", probe)
    return asked


@pytest.mark.parametrize("study,kind,classes", [("bn_ablation", "cifar10", 10), ("cutmix_study", "cifar100", 100)])
def test_torchvision_files_in_the_data_folder_are_used(data_dir, skip_md5, study, kind, classes):
    fake_cifar(data_dir, kind, per_file=12, num_classes=classes)
    s = settings(study, "quick", n_train=10, n_test=10)   # the quick profile cuts real data to its sizes
    data = s.load_data()
    assert s.data_choice.source == kind and not s.data_choice.fell_back
    assert data.name.startswith(f"{kind}[") and len(data.train_labels) == 10 and len(data.test_labels) == 10
    assert data.num_classes == classes
    assert s.data_choice.banner().startswith(f"Using {kind}: {auto.LABELS[kind]} found in {data_dir}/")


def test_torchvisions_archive_counts_as_present(data_dir):
    (data_dir / "cifar-10-python.tar.gz").write_bytes(b"")
    choice = auto.choose_source("cifar10", data_dir)
    assert choice.source == "cifar10" and "cifar-10-python.tar.gz" in choice.reason


@pytest.mark.parametrize("name", ["cifar10-jpg.tar.gz", "cifar10.tar.gz", "cifar10.tgz", "cifar10.tar", "cifar10"])
def test_an_imagefolder_copy_under_a_documented_name(data_dir, tmp_path, name):
    make_tree(tmp_path / "tree", classes=TEN, n_train=2, n_test=1)
    path = data_dir / name
    if name == "cifar10":
        (tmp_path / "tree").rename(path)
    else:
        make_tar(tmp_path / "tree", path)
    s = settings("worksheet_analysis", "quick", n_train=10, n_test=10)
    data = s.load_data()
    assert s.data_choice.source == f"folder:{path.resolve()}" and not s.data_choice.fell_back
    assert data.name.startswith(f"folder:{path.resolve()}") and data.classes == TEN and len(data.train_labels) == 10


def test_offline_without_the_data_falls_back_fast_and_says_why(data_dir, monkeypatch):
    asked = network_says(monkeypatch, "www.cs.toronto.edu: Name or service not known")
    s = settings("stress_test", "quick", n_train=100, n_test=20)
    start = time.perf_counter()
    data = s.load_data()
    assert time.perf_counter() - start < 2.0 and asked == [auto.URLS["cifar10"]]
    assert data.name == "synthetic" and len(data.train_labels) == 100
    choice = s.data_choice
    assert choice.fell_back and choice.source == "synthetic"
    banner = choice.banner()
    assert banner.startswith(f"Using the synthetic stand-in: CIFAR-10 is not in {data_dir}/ and cannot be "
                             "downloaded (offline: www.cs.toronto.edu: Name or service not known).")
    assert "cifar-10-python.tar.gz" in banner and "cifar10-jpg.tar.gz" in banner and "--dataset" in banner


def test_helpers_offline_skips_the_network(data_dir, monkeypatch):
    monkeypatch.setenv(auto.OFFLINE_ENV, "1")     # data_dir's probe fails the test if it is asked
    choice = settings("cutmix_study", "full").data_choice
    assert choice.fell_back and "HELPERS_OFFLINE=1" in choice.reason and "CIFAR-100" in choice.banner()


def test_a_reachable_download_is_used_and_a_failed_one_falls_back(data_dir, monkeypatch):
    import torchvision.datasets.cifar as cifar

    network_says(monkeypatch, None)
    s = settings("bn_ablation", "quick", n_train=50, n_test=20)
    assert s.data_choice.source == "cifar10" and s.data_choice.download and not s.data_choice.fell_back
    assert "torchvision fetches it" in s.data_choice.banner()

    def cut_off(*args, **kwargs):
        raise urllib.error.URLError("connection reset")
    monkeypatch.setattr(cifar, "download_and_extract_archive", cut_off)
    data = s.load_data()
    assert data.name == "synthetic" and s.data_choice.fell_back
    assert "download failed" in s.data_choice.reason and "connection reset" in s.data_choice.reason


def test_an_explicit_dataset_always_wins(data_dir, skip_md5):
    fake_cifar(data_dir, "cifar10")
    s = settings("bn_ablation", "full", dataset="synthetic", n_train=100, n_test=20)
    assert s.data_choice.source == "synthetic" and not s.data_choice.fell_back
    assert "given explicitly" in s.data_choice.reason
    assert s.load_data().name == "synthetic"
    # and an explicit CIFAR that is not there is an error, not a silent stand-in
    s = settings("cutmix_study", "quick", dataset="cifar100")
    with pytest.raises(FileNotFoundError, match="CIFAR100 not found"):
        s.load_data()


def test_smoke_stays_synthetic_without_asking(data_dir):
    s = settings("bn_ablation", "smoke")
    assert s.data_choice.source == "synthetic" and s.dataset == "synthetic"


def test_the_check_gives_up_after_its_timeout(monkeypatch):
    def hangs(*args, **kwargs):  # a name lookup that never answers, then fails long after we gave up
        time.sleep(3)
        raise OSError("timed out")
    monkeypatch.setattr(auto.urllib.request, "urlopen", hangs)
    start = time.perf_counter()
    why = auto.unreachable("https://host.invalid/x.tar.gz", timeout=0.2)
    assert time.perf_counter() - start < 1.0 and why == "host.invalid did not answer within 0.2 s"


def test_the_check_reports_errors_and_success(monkeypatch):
    def refused(*args, **kwargs):
        raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))
    monkeypatch.setattr(auto.urllib.request, "urlopen", refused)
    assert "Connection refused" in auto.unreachable("https://host.invalid/x", timeout=1)

    class Answer:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False
    seen = []
    monkeypatch.setattr(auto.urllib.request, "urlopen", lambda request, timeout: seen.append(request) or Answer())
    assert auto.unreachable(auto.URLS["cifar100"], timeout=1) is None
    assert seen[0].get_method() == "HEAD" and seen[0].full_url == auto.URLS["cifar100"]


def test_names_match_torchvision():
    from torchvision import datasets

    for kind, cls in (("cifar10", datasets.CIFAR10), ("cifar100", datasets.CIFAR100)):
        assert auto.URLS[kind] == cls.url
        assert auto.TORCHVISION_FILES[kind] == (cls.base_folder, cls.filename)
