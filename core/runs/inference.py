"""Try a model: a saved run's kept weights predict the class of a test image or of an uploaded one.

Uploads are read from memory only (never written to disk), at most MAX_UPLOAD_BYTES, PNG or JPEG,
and refused with a message when they are not images, are truncated, or would unpack to a huge
bitmap (a decompression bomb: a few kilobytes of PNG can hold gigabytes of pixels).
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable

import torch
from PIL import Image, UnidentifiedImageError

from core.engine.device import place, resolve_device, use_bf16
from core.engine.predict import predict
from core.methods.frozen import StandardizedHead, extract
from core.models import create_model
from core.runs.evaluate import kept_network, load_kept
from core.runs.record import RunRecord
from core.runs.store import RunStore

MAX_UPLOAD_BYTES = 5 * 1024 * 1024
MAX_UPLOAD_PIXELS = 40_000_000  # a 5 MB photo has at most ~25 MP; more is a bomb
FORMATS = ("PNG", "JPEG")
Predictor = Callable[[torch.Tensor], torch.Tensor]  # uint8 N x 3 x 32 x 32 -> class probabilities N x C


class ImageError(ValueError):
    """An upload that is not a usable PNG or JPEG; the message says why."""


def read_upload(data: bytes) -> torch.Tensor:
    """An uploaded PNG or JPEG as the 32 x 32 uint8 image (3 x 32 x 32) the models were trained on:
    the centre square, scaled down with antialiasing."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise ImageError(f"the file is {len(data) / 2**20:.1f} MB; at most {MAX_UPLOAD_BYTES >> 20} MB, please")
    if not data:
        raise ImageError("the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))  # reads the header only
            if img.format not in FORMATS:
                raise ImageError(f"a {img.format} image; upload a PNG or JPEG")
            w, h = img.size
            if w * h > MAX_UPLOAD_PIXELS:
                raise ImageError(f"{w} x {h} pixels would unpack to {w * h * 3 / 2**30:.1f} GB: refused as a "
                                 "decompression bomb; upload a smaller image")  # fmt: skip
            img.load()  # decodes: a truncated or corrupt file fails here
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        if isinstance(err, UnidentifiedImageError):
            raise ImageError("not an image PIL can read; upload a PNG or JPEG") from None
        raise ImageError("refused as a decompression bomb (too many pixels); upload a smaller image") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"the image is corrupt or truncated ({err})") from None
    return to_cifar(img)


def to_cifar(img: Image.Image) -> torch.Tensor:
    img = img.convert("RGB")
    side = min(img.size)
    left, top = (img.width - side) // 2, (img.height - side) // 2
    img = img.crop((left, top, left + side, top + side)).resize((32, 32), Image.Resampling.LANCZOS)
    return torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).view(32, 32, 3).permute(2, 0, 1).clone()


def predictor(store: RunStore, record: RunRecord, n_classes: int) -> Predictor:
    """The run's network from its kept weights (weights_only=True). Raises StoreError when they are
    missing or do not fit, and core.models.ModelError when a head's pretrained backbone is unavailable."""
    cfg = record.config
    kept = store.load_weights(record.run_id)
    device = resolve_device("auto")  # where the app runs now, whatever the run trained on
    bf16 = use_bf16(device, cfg.precision)
    if kept.kind == "network":
        model = place(kept_network(record, kept.state, n_classes), device).eval()
        return lambda x: predict(model, x, device, bf16).float().softmax(1)
    # A head on frozen features: the backbone comes from the config's pretrained weights.
    backbone = place(create_model(cfg.arch, n_classes, cfg.weights, cfg.resolution, cfg.normalize), device)
    dim = backbone.feature_dim
    head = StandardizedHead(torch.nn.Linear(dim, n_classes), torch.zeros(dim), torch.ones(dim))
    load_kept(head, kept.state, record)
    head.eval()

    def run(x: torch.Tensor) -> torch.Tensor:
        feats = extract(backbone, x, device=device, bf16=bf16, flip=cfg.flip_features)
        with torch.no_grad():
            return head(feats).float().softmax(1)

    return run


def top_k(probs: torch.Tensor, classes: list[str], k: int = 3) -> list[tuple[str, float]]:
    """The k most probable classes of one image's probabilities, most probable first."""
    p, i = probs.topk(min(k, len(classes)))
    return [(classes[int(c)], float(v)) for v, c in zip(p, i, strict=True)]
