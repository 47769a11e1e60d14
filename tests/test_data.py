import os
import pickle
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from core.data.load import load_splits
from core.data.splits import DataError, split_arrays, validation_splits
from tests.conftest import CLASSES, build_dataset


def test_folder_splits_sizes_order_and_hidden_labels(splits):
    assert splits.classes == CLASSES
    assert splits.labeled_x.shape == (30, 3, 32, 32) and splits.labeled_x.dtype == torch.uint8
    assert len(splits.labeled_y) == 30 and len(splits.test_y) == 30
    assert splits.unlabeled_x.shape == (60, 3, 32, 32)
    # files are ordered by name across classes: img_00000.. are red, then green, then blue
    assert splits.labeled_y.tolist() == [0] * 10 + [1] * 10 + [2] * 10
    # the dominant channel of every image is its label: pixels and labels stayed together
    assert (splits.labeled_x.float().mean((2, 3)).argmax(1) == splits.labeled_y).all()
    assert splits.unlabeled_hidden_y.tolist() == [0] * 20 + [1] * 20 + [2] * 20


def test_validation_split_holds_out_unlabeled_images_with_their_hidden_labels(splits):
    val = validation_splits(splits, n_val=15)
    assert len(val.test_y) == 15 and len(val.unlabeled_x) == 45 and val.unlabeled_hidden_y is not None
    # each held-out image keeps its hidden label: the dominant channel is the class
    assert (val.test_x.float().mean((2, 3)).argmax(1) == val.test_y).all()
    # the held-out images and the remaining pool split the unlabeled images exactly
    pool = {tuple(x.flatten().tolist()) for x in splits.unlabeled_x}
    held, rest = ({tuple(x.flatten().tolist()) for x in part} for part in (val.test_x, val.unlabeled_x))
    assert held | rest == pool and not held & rest
    # the same draw gives the same split; another draw another split, with a fingerprint of its own
    assert torch.equal(validation_splits(splits, n_val=15).test_x, val.test_x)
    other = validation_splits(splits, n_val=15, draw=54321)
    assert not torch.equal(other.test_x, val.test_x)
    assert len({splits.fingerprint, val.fingerprint, other.fingerprint}) == 3
    with pytest.raises(DataError, match="more than n_val"):
        validation_splits(splits, n_val=60)


def test_n_labeled_takes_the_first_images(dataset_dir, tmp_path):
    s = load_splits(dataset_dir, n_labeled=12, cache_dir=tmp_path)
    assert len(s.labeled_y) == 12 and s.labeled_y.tolist() == [0] * 10 + [1] * 2
    with pytest.raises(DataError, match="larger than the 30 images"):
        load_splits(dataset_dir, n_labeled=31, cache_dir=tmp_path)


def test_cache_is_read_on_the_second_load_and_follows_changes(tmp_path, monkeypatch):
    import core.data.splits

    root = build_dataset(tmp_path / "ds", labeled=4, test=4, unlabeled=4)
    cache = tmp_path / "cache"
    first = load_splits(root, n_labeled=12, cache_dir=cache)
    assert len(list(cache.glob("folder-*.pt"))) == 1
    real_decode = core.data.folder._decode

    def no_decoding(*args):
        raise AssertionError("decoded an image although the cache holds them all")

    monkeypatch.setattr(core.data.folder, "_decode", no_decoding)
    again = load_splits(root, n_labeled=12, cache_dir=cache)  # from the cache alone: no image decoded
    assert torch.equal(first.test_x, again.test_x) and first.fingerprint == again.fingerprint
    monkeypatch.setattr(core.data.folder, "_decode", real_decode)
    # change one image: the fingerprint and the pixels follow
    victim = next((root / "test" / "c0_red").glob("*.png"))
    from PIL import Image

    Image.new("RGB", (32, 32), (0, 0, 0)).save(victim)
    os.utime(victim, ns=(time.time_ns(), time.time_ns() + 10**9))
    changed = load_splits(root, n_labeled=12, cache_dir=cache)
    assert changed.fingerprint != first.fingerprint
    assert len(list(cache.glob("folder-*.pt"))) == 2


def test_read_only_cache_folder_still_loads(tmp_path):
    root = build_dataset(tmp_path / "ds", labeled=2, test=2, unlabeled=0)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    s = load_splits(root, n_labeled=6, cache_dir=blocker / "cache")  # cannot be created
    assert len(s.labeled_y) == 6 and len(s.unlabeled_x) == 0 and s.unlabeled_hidden_y is None


def test_other_image_sizes_are_resized(tmp_path):
    root = build_dataset(tmp_path / "ds", labeled=2, test=2, unlabeled=0)
    from PIL import Image

    Image.new("RGB", (64, 48), (10, 200, 10)).save(root / "labeled" / "c1_green" / "big.png")
    s = load_splits(root, n_labeled=7, cache_dir=tmp_path / "c")
    assert s.labeled_x.shape[1:] == (3, 32, 32)
    s16 = load_splits(root, n_labeled=7, image_size=16, cache_dir=tmp_path / "c")
    assert s16.labeled_x.shape[1:] == (3, 16, 16)


@pytest.mark.parametrize(
    "breakage, words",
    [
        (lambda r: __import__("shutil").rmtree(r / "labeled"), ["labeled", "missing folder"]),
        (lambda r: (r / "test" / "purple").mkdir(), ["purple", "differ"]),
        (
            lambda r: (r / "labeled" / "c0_red" / "broken.png").write_bytes(b"not a png"),
            ["broken.png", "Remove"],
        ),
        (lambda r: [p.unlink() for p in (r / "labeled" / "c2_blue").glob("*")], ["c2_blue", "no images"]),
    ],
)
def test_bad_folders_get_clear_errors(tmp_path, breakage, words):
    root = build_dataset(tmp_path / "ds", labeled=2, test=2, unlabeled=0)
    breakage(root)
    with pytest.raises(DataError) as err:
        load_splits(root, n_labeled=2, cache_dir=tmp_path / "c")
    for word in words:
        assert word in str(err.value)


def test_a_folder_without_test_set_is_scored_by_cross_validation(tmp_path):
    root = build_dataset(tmp_path / "ds", labeled=3, test=1, unlabeled=2)
    __import__("shutil").rmtree(root / "test")
    s = load_splits(root, cache_dir=tmp_path / "c")
    assert s.cross_validated and len(s.test_y) == 0 and s.test_x.shape == (0, 3, 32, 32) and len(s.labeled_y) == 9


def test_missing_dataset_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_splits(tmp_path / "nowhere", cache_dir=tmp_path)


def test_non_image_files_are_skipped(tmp_path):
    root = build_dataset(tmp_path / "ds", labeled=2, test=2, unlabeled=0)
    (root / "labeled" / "c0_red" / "notes.txt").write_text("hello")
    assert len(load_splits(root, n_labeled=6, cache_dir=tmp_path / "c").labeled_y) == 6


def test_cifar_split_logic_on_arrays():
    x = torch.arange(20).view(20, 1, 1, 1).expand(20, 3, 2, 2).to(torch.uint8)
    y = torch.arange(20) % 10
    s = split_arrays(x, y, x[:5], y[:5], 7, tuple("abcdefghij"), "cifar10")
    assert len(s.labeled_y) == 7 and s.labeled_x[:, 0, 0, 0].tolist() == list(range(7))
    assert len(s.unlabeled_x) == 13 and s.unlabeled_x[0, 0, 0, 0] == 7
    assert s.unlabeled_hidden_y.tolist() == (torch.arange(7, 20) % 10).tolist()
    with pytest.raises(DataError):
        split_arrays(x, y, x, y, 20, tuple("abcdefghij"), "cifar10")


def test_cifar10_source_reads_torchvision_format(tmp_path):
    """A tiny fake of cifar-10-batches-py: 5 train batches of 4 images, a test batch of 3."""
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        n = 3 if name == "test_batch" else 4
        batch = {
            "data": rng.integers(0, 255, (n, 3072), dtype=np.uint8),
            "labels": [(i + j) % 10 for j in range(n)],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    s = load_splits("cifar10", n_labeled=6, data_dir=tmp_path, download=False)
    assert len(s.labeled_y) == 6 and len(s.unlabeled_x) == 14 and len(s.test_y) == 3
    assert s.labeled_y.tolist() == [0, 1, 2, 3, 1, 2]
    assert s.classes[0] == "airplane" and s.labeled_x.shape == (6, 3, 32, 32)


def test_cifar10_missing_without_download_says_where_to_put_it(tmp_path):
    with pytest.raises(DataError, match="cifar-10-python.tar.gz"):
        load_splits("cifar10", data_dir=tmp_path, download=False)


def test_cifar10_download_failure_is_a_clear_error(tmp_path, monkeypatch):
    import urllib.request

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DataError, match="Without network"):
        load_splits("cifar10", data_dir=tmp_path, download=True)
    assert not list(Path(tmp_path).glob("*.part"))


def test_paths_with_spaces_and_non_ascii_characters(tmp_path):
    root = build_dataset(tmp_path / "my data ñ 数据", labeled=2, test=2, unlabeled=2)
    (root / "labeled" / "c0_red" / "img_00000.png").rename(root / "labeled" / "c0_red" / "café au lait.png")
    s = load_splits(root, cache_dir=tmp_path / "cache dir é")
    assert len(s.labeled_y) == 6 and len(s.unlabeled_x) == 6


def test_truncated_and_huge_images_are_named(tmp_path):
    from PIL import Image

    root = build_dataset(tmp_path / "ds", labeled=2, test=2, unlabeled=0)
    good = next((root / "test" / "c1_green").glob("*.png"))
    (root / "test" / "c1_green" / "cut.png").write_bytes(good.read_bytes()[:60])
    with pytest.raises(DataError, match="cut.png"):
        load_splits(root, cache_dir=tmp_path / "c")
    (root / "test" / "c1_green" / "cut.png").unlink()
    Image.new("L", (5000, 5000)).save(root / "test" / "c1_green" / "bomb.png")  # 25 Mpx of zeros: a small file
    with pytest.raises(DataError, match="bomb.png.*too large"):
        load_splits(root, cache_dir=tmp_path / "c")
