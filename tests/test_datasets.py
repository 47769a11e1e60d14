"""Your own images: an upload read and checked before anything is written, stored as a dataset, labelled,
scored by cross-validation when there is no test set, and every bad input refused with one line."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from core.access import Actor, PermissionDenied
from core.data.load import load_splits
from core.data.splits import DataError
from core.datasets.images import square_pixels
from core.datasets.library import DatasetLibrary
from core.datasets.upload import Limits, UploadError, read_files, read_zip
from core.methods.registry import preset
from core.runs.crossval import stratified_folds
from core.runs.train import fit
from tests.conftest import TINY

ANA, BEN, TEACHER = Actor("Ana"), Actor("Ben"), Actor("Ms Lee", teacher=True)
COLOURS = {"red": (210, 40, 40), "green": (40, 200, 40), "blue": (40, 40, 220)}
MODES = ("RGB", "RGBA", "L", "CMYK", "P")


def photo(colour: tuple[int, int, int], size: tuple[int, int], mode: str, fmt: str, seed: int) -> bytes:
    """A shape on a coloured ground, in any mode and format a phone or a web page gives."""
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(colour) + rng.integers(-30, 30, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    pixels[size[1] // 4 : size[1] // 2, size[0] // 4 : size[0] // 2] = 255  # a white square
    img = Image.fromarray(pixels)
    if mode == "L":
        img = img.convert("L")
    elif mode == "RGBA":
        img = img.convert("RGBA")
        img.putalpha(200)
        fmt = "PNG" if fmt == "JPEG" else fmt  # JPEG has no alpha
    elif mode == "CMYK":
        img, fmt = img.convert("CMYK"), "JPEG"
    elif mode == "P":
        img, fmt = img.convert("P", palette=Image.Palette.ADAPTIVE), "GIF"
    out = io.BytesIO()
    img.save(out, format=fmt)
    return out.getvalue()


def make_zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def class_folders(per_class: int = 10, unlabeled: int = 12, seed: int = 0) -> bytes:
    """`photos/<colour>/*` in several sizes, modes and formats, and `photos/unlabeled/*`."""
    members, i = {}, seed * 1000
    for name, colour in COLOURS.items():
        for j in range(per_class):
            fmt = ("PNG", "JPEG", "WEBP")[j % 3]
            size = ((40, 30), (300, 500), (64, 64))[j % 3]
            members[f"photos/{name}/img{j}.{fmt.lower()}"] = photo(colour, size, MODES[j % len(MODES)], fmt, i)
            i += 1
    for j in range(unlabeled):
        colour = list(COLOURS.values())[j % 3]
        members[f"photos/unlabeled/u{j}.png"] = photo(colour, (50, 50), "RGB", "PNG", i)
        i += 1
    members["photos/notes.txt"] = b"taken on a Tuesday"
    members["__MACOSX/photos/._img0.png"] = b"resource fork"
    return make_zip(members)


def test_any_phone_or_web_image_becomes_small_upright_rgb():
    # a portrait photo stored sideways, with the EXIF tag that turns it upright
    img = Image.new("RGB", (60, 20), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 30, 20))  # red on the stored left half: the top half once turned
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    out = io.BytesIO()
    img.save(out, format="JPEG", exif=exif)
    pixels = square_pixels(out.getvalue(), 32)
    assert pixels.shape == (32, 32, 3) and pixels.dtype == np.uint8
    # turned as the tag says, then centre-cropped: red above, blue below (unturned: red left, blue right)
    assert pixels[2, 28, 0] > 200 and pixels[2, 28, 2] < 60 and pixels[29, 4, 2] > 200 and pixels[29, 4, 0] < 60
    transparent = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    buf = io.BytesIO()
    transparent.save(buf, format="PNG")
    assert square_pixels(buf.getvalue(), 32).min() == 255  # transparency over white, not black
    for mode in MODES:
        assert square_pixels(photo((200, 30, 30), (33, 47), mode, "PNG", 0), 64).shape == (64, 64, 3)


def test_a_zip_of_class_folders_becomes_a_dataset_that_trains_with_cross_validation(tmp_path, checkpoint):
    incoming = read_zip(class_folders(), 32)
    assert incoming.classes() == ["blue", "green", "red"]
    assert incoming.count("labeled") == 30 and incoming.count("unlabeled") == 12
    assert [name for name, _ in incoming.skipped] == ["notes.txt"]  # __MACOSX is no member of the user's
    library = DatasetLibrary(tmp_path / "datasets")
    info = library.create(incoming, "Colours", ANA)
    assert info.labeled == {"blue": 10, "green": 10, "red": 10} and info.unlabeled == 12 and info.n_test == 0
    assert [d.name for d in library.list(ANA)] == ["Colours"] and library.list(BEN) == []

    splits = load_splits(info.folder, cache_dir=tmp_path / "cache")
    assert splits.cross_validated and splits.label == "Colours" and splits.classes == ("blue", "green", "red")
    cfg = preset("transfer", "recommended", arch=TINY, weights=checkpoint, resolution=32, lr=0.05, device="cpu",
                 n_labeled=30, epochs=30)  # fmt: skip
    record = fit(cfg, splits, cache_dir=tmp_path / "cache")
    m = record.metrics
    assert record.status == "finished" and m.cross_validated and len(m.cv_accuracies) == 5
    assert m.test_acc == pytest.approx(sum(m.cv_accuracies) / 5) and m.test_acc > 0.6  # colour classes
    assert sum(map(sum, m.confusion)) == 30  # every labeled image predicted once, out of its fold
    assert "cross-validated" in record.message and record.dataset["name"] == "Colours"
    assert all(0 <= i < 30 for i in m.wrong_indices)  # labeled images, not test images


def test_frozen_methods_pass_each_labeled_image_through_the_backbone_once(tmp_path, checkpoint, monkeypatch):
    library = DatasetLibrary(tmp_path / "datasets")
    info = library.create(read_zip(class_folders(per_class=4, unlabeled=9), 32), "Few", ANA)
    splits = load_splits(info.folder, cache_dir=tmp_path / "cache")
    import core.methods.frozen as frozen

    seen = []
    real = frozen.extract
    monkeypatch.setattr(
        frozen, "extract", lambda model, images, **kw: seen.append(len(images)) or real(model, images, **kw)
    )
    cfg = preset("labelspread", "recommended", arch=TINY, weights=checkpoint, resolution=32, device="cpu",
                 n_labeled=12, knn=3, per_class=2, rounds=1, flip_features=False, augment="none")  # fmt: skip
    record = fit(cfg, splits, cache_dir=tmp_path / "cache")
    assert record.status == "finished" and len(record.metrics.cv_accuracies) == 5
    assert sum(seen) == 9 + 12  # the pool once and each of the 12 labeled images once: not once per fold


def test_stratified_folds_cover_every_image_once_and_spread_each_class():
    labels = torch.tensor([0] * 10 + [1] * 3 + [2] * 7)
    folds = stratified_folds(labels, 5, seed=0)
    assert sorted(torch.cat(folds).tolist()) == list(range(20))
    for c, n in ((0, 10), (1, 3), (2, 7)):
        per_fold = [int((labels[f] == c).sum()) for f in folds]
        assert max(per_fold) - min(per_fold) <= 1 and sum(per_fold) == n


def test_a_flat_zip_is_labelled_in_the_app_with_undo_then_trains(tmp_path, checkpoint):
    flat = {f"IMG_{j:04d}.jpg": photo(list(COLOURS.values())[j % 3], (120, 90), "RGB", "JPEG", j) for j in range(18)}
    library = DatasetLibrary(tmp_path / "datasets")
    info = library.create(read_zip(make_zip(flat), 32), "Flat", ANA)
    assert info.unlabeled == 18 and info.n_labeled == 0
    with pytest.raises(DataError, match="no labeled image yet"):
        load_splits(info.folder, cache_dir=tmp_path / "c")
    for name in COLOURS:
        library.add_class(info.slug, name, ANA)
    with pytest.raises(DataError, match="exists already"):
        library.add_class(info.slug, "RED", ANA)
    with pytest.raises(PermissionDenied):
        library.label(info.slug, library.files(info.slug, ANA)[0], "red", BEN)
    pending = library.files(info.slug, ANA)
    names = list(COLOURS)
    for j, where in enumerate(pending[:12]):
        info = library.label(info.slug, where, names[j % 3], ANA)
    info, back = library.undo(info.slug, ANA)
    assert back == pending[11] and info.n_labeled == 11 and info.unlabeled == 7
    info = library.label(info.slug, back, "blue", ANA)
    assert info.labeled == {"blue": 4, "green": 4, "red": 4}
    splits = load_splits(info.folder, cache_dir=tmp_path / "c")
    assert len(splits.labeled_y) == 12 and len(splits.unlabeled_x) == 6 and splits.cross_validated
    cfg = preset("scratch", "notebook", arch=TINY, device="cpu", n_labeled=12, epochs=3, batch_size=4, lr=1e-3)
    record = fit(cfg, splits, cache_dir=tmp_path / "c")
    assert record.status == "finished" and len(record.metrics.cv_accuracies) == 5


def test_a_test_set_is_used_when_there_is_one_and_a_leak_is_named(tmp_path):
    same = photo((200, 30, 30), (40, 40), "RGB", "PNG", 7)
    members = {
        f"labeled/{c}/{j}.png": photo(v, (40, 40), "RGB", "PNG", j) for c, v in COLOURS.items() for j in range(3)
    }
    members |= {
        f"test/{c}/t{j}.png": photo(v, (40, 40), "RGB", "PNG", 50 + j) for c, v in COLOURS.items() for j in range(2)
    }
    members |= {"labeled/red/dup.png": same, "test/red/dup.png": same}
    info = DatasetLibrary(tmp_path / "d").create(read_zip(make_zip(members), 64), "With test", ANA)
    assert info.n_test == 7 and info.resolution == 64
    assert info.warnings and "both labeled and in the test set" in info.warnings[0]
    splits = load_splits(info.folder, cache_dir=tmp_path / "c")
    assert not splits.cross_validated and splits.image_size == 64 and len(splits.test_y) == 7


def test_a_class_with_one_labeled_image_is_refused_for_cross_validation(tmp_path):
    members = {f"a/{j}.png": photo((200, 0, 0), (20, 20), "RGB", "PNG", j) for j in range(4)}
    members["b/0.png"] = photo((0, 0, 200), (20, 20), "RGB", "PNG", 9)
    info = DatasetLibrary(tmp_path / "d").create(read_zip(make_zip(members), 32), "One b", ANA)
    splits = load_splits(info.folder, cache_dir=tmp_path / "c")
    cfg = preset("scratch", "notebook", arch=TINY, device="cpu", n_labeled=5, epochs=1)
    with pytest.raises(DataError, match="at least 2 labeled images per class, and 'b' has 1"):
        fit(cfg, splits, cache_dir=tmp_path / "c")


def bomb() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("big/a.png", b"\0" * 30_000_000)  # 30 MB of zeros: 30 KB zipped
    return out.getvalue()


def traversal(name: str) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("ok/a.png", photo((1, 2, 3), (8, 8), "RGB", "PNG", 0))
        archive.writestr(zipfile.ZipInfo(name), b"x")
    return out.getvalue()


def truncated() -> bytes:
    return make_zip({"a/x.jpg": photo((200, 0, 0), (64, 64), "RGB", "JPEG", 0)[:300], "a/y.txt": b"hi"})


@pytest.mark.parametrize(
    "data, limits, words",
    [
        (b"PK\x03\x04 not really a zip", Limits(), ["not a zip file"]),
        (bomb(), Limits(unpacked_bytes=10_000_000), ["unpacks to 30 MB", "before anything was written"]),
        (traversal("../../etc/evil.png"), Limits(), ["leaves it", "../../etc/evil.png"]),
        (traversal("/etc/evil.png"), Limits(), ["absolute path"]),
        (class_folders(per_class=2, unlabeled=0), Limits(files=3), ["more than the 3 allowed"]),
        (truncated(), Limits(), ["no image this app can read", "corrupt or truncated", "y.txt: not an image"]),
        (
            make_zip({"a/x.png": photo((9, 9, 9), (300, 300), "RGB", "PNG", 0)}),
            Limits(member_bytes=1000),
            ["no image", "more than the 1 KB allowed per file"],
        ),
    ],
    ids=["not-a-zip", "zip-bomb", "dot-dot", "absolute", "too-many-files", "truncated", "too-many-bytes"],
)
def test_bad_uploads_get_one_line_and_leave_no_folder(tmp_path, data, limits, words):
    root = tmp_path / "datasets"
    library = DatasetLibrary(root)
    with pytest.raises(UploadError) as err:
        library.create(read_zip(data, 32, limits, name="photos.zip"), "Bad", ANA)
    message = str(err.value)
    assert "\n" not in message
    for word in words:
        assert word in message
    assert not root.exists() or list(root.iterdir()) == []


def test_too_many_pixels_is_skipped_with_its_reason(tmp_path, monkeypatch):
    import core.datasets.images as images

    monkeypatch.setattr(images, "MAX_PIXELS", 100 * 100)
    members = {"a/big.png": photo((200, 0, 0), (200, 200), "RGB", "PNG", 0),
               "a/small.png": photo((200, 0, 0), (50, 50), "RGB", "PNG", 1)}  # fmt: skip
    incoming = read_zip(make_zip(members), 32)
    assert len(incoming.images) == 1 and "megapixels allowed" in incoming.skipped[0][1]


def test_a_failed_write_leaves_no_folder_behind(tmp_path, monkeypatch):
    import core.datasets.library as library_module

    calls = []

    def failing_png(pixels):
        calls.append(1)
        if len(calls) == 5:
            raise OSError("disk full")
        return b"png"

    monkeypatch.setattr(library_module, "png_bytes", failing_png)
    root = tmp_path / "datasets"
    with pytest.raises(OSError, match="disk full"):
        DatasetLibrary(root).create(read_zip(class_folders(per_class=3, unlabeled=0), 32), "Half", ANA)
    assert list(root.iterdir()) == []


def test_loose_files_owners_sharing_export_and_delete(tmp_path):
    files = [(f"p{j}.png", photo((200, 30, 30), (30, 30), "RGB", "PNG", j)) for j in range(3)] + [("a.pdf", b"%PDF")]
    incoming = read_files(files, 96)
    assert incoming.count("unlabeled") == 3 and incoming.skipped == [("a.pdf", "not an image file")]
    library = DatasetLibrary(tmp_path / "d")
    info = library.create(incoming, "Loose", ANA)
    with pytest.raises(PermissionDenied):
        library.get(info.slug, BEN)
    with pytest.raises(PermissionDenied, match="only a teacher"):
        library.share(info.slug, True, ANA)
    library.share(info.slug, True, TEACHER)
    assert [d.name for d in library.list(BEN)] == ["Loose"]  # shared: Ben may use it
    with pytest.raises(PermissionDenied):
        library.delete(info.slug, BEN)  # ...not delete it
    again = read_zip(library.export_zip(info.slug, BEN), 96)
    assert again.count("unlabeled") == 3 and {i.digest for i in again.images} == {i.digest for i in incoming.images}
    library.delete(info.slug, ANA)
    assert library.list(ANA) == [] and list((tmp_path / "d").iterdir()) == []


def test_the_cli_trains_on_an_uploaded_dataset(tmp_path, capsys):
    from core.cli import main

    incoming = read_zip(class_folders(per_class=3, unlabeled=4), 32)
    info = DatasetLibrary(tmp_path / "datasets").create(incoming, "Cli", ANA)
    code = main(["train", "--dataset", str(info.folder), "--method", "scratch", "--preset", "notebook", "--arch", TINY,
                 "--epochs", "2", "--device", "cpu", "--runs-dir", str(tmp_path / "runs"), "--cache-dir",
                 str(tmp_path / "c"), "--json"])  # fmt: skip
    out = __import__("json").loads(capsys.readouterr().out)
    assert code == 0 and out["dataset"] == "Cli" and len(out["cv_accuracies"]) == 5


def test_why_views_on_an_upload_without_hidden_labels_colour_the_labeled_images_only(tmp_path, checkpoint):
    from core.views.computed import ViewRequest, compute

    info = DatasetLibrary(tmp_path / "d").create(read_zip(class_folders(per_class=3, unlabeled=8), 32), "Why", ANA)
    splits = load_splits(info.folder, cache_dir=tmp_path / "c")
    assert splits.unlabeled_hidden_y is None  # unlabeled/ holds no class folders: nothing is known of them
    request = ViewRequest("replay", TINY, checkpoint, 32, False, "tiny", "unlabeled", 8)
    compute(request.map_request(), splits, tmp_path / "c")
    replay = compute(request, splits, tmp_path / "c")
    frame = compute(request.map_request(), splits, tmp_path / "c")["frame"]
    names = [row["class"] for row in frame]
    assert names[:9] == [splits.classes[int(y)] for y in splits.labeled_y] and set(names[9:]) == {"unlabeled"}
    assert all(step["accuracy"] is None for step in replay["steps"])  # no hidden label scores it
