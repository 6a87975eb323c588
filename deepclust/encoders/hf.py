"""Hugging Face ``transformers`` vision models: ``hf:<model id or local folder>``.

Supported families and what the embedding is:

===========================  ===================================================================
``vit`` (ViT, DINO)          ``pool="cls"`` (default): the final CLS token (after the last layer
``dinov2``,                  norm); ``"mean"``: mean of the patch tokens (register tokens
``dinov2_with_registers``,   excluded); ``"cls+mean"``: both concatenated (2 x hidden size)
``vit_mae`` (MAE)
``clip``, ``clip_vision``    the projected image embedding (``image_embeds``), as used for
                             image-text similarity (``projection_dim``)
``siglip``, ``siglip_vision``  the vision tower's attention-pooled output (what
                             ``SiglipModel.get_image_features`` returns)
anything else ``AutoModel``  ``pooler_output`` when the model has one, else the token pools above
===========================  ===================================================================

MAE runs with ``mask_ratio=0`` and a fixed (identity) patch order, so every patch is seen and
embeddings are reproducible.

Preprocessing is read from the model's own image-processor configuration
(``preprocessor_config.json``, through ``AutoImageProcessor``): resize rule and size, centre
crop, resample filter, rescale factor, mean and std; it is applied with Pillow and torch, so
torchvision is never needed.

Weights are read with ``local_files_only=True``: from a local folder, or from the user's
Hugging Face cache (``$HF_HOME/hub``, default ``~/.cache/huggingface/hub``). Nothing is
downloaded; a missing model fails at once with a message saying what to fetch and where.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager

import torch

from deepclust.encoders.base import Encoder, EncoderInfo, freeze
from deepclust.encoders.transform import PIL_CODES, ImageTransform
from deepclust.errors import DataNotFoundError, InputError

#: Well-known checkpoints listed by ``deepclust encoders``: id -> (dim with the default pooling, note)
CATALOGUE = {
    "facebook/dino-vits16": (384, "DINO ViT-S/16 (CLS)"),
    "facebook/dino-vitb16": (768, "DINO ViT-B/16 (CLS)"),
    "facebook/dinov2-small": (384, "DINOv2 ViT-S/14 (CLS)"),
    "facebook/dinov2-base": (768, "DINOv2 ViT-B/14 (CLS)"),
    "facebook/dinov2-large": (1024, "DINOv2 ViT-L/14 (CLS)"),
    "openai/clip-vit-base-patch32": (512, "CLIP ViT-B/32 image tower, projected"),
    "openai/clip-vit-base-patch16": (512, "CLIP ViT-B/16 image tower, projected"),
    "openai/clip-vit-large-patch14": (768, "CLIP ViT-L/14 image tower, projected"),
    "google/siglip-base-patch16-224": (768, "SigLIP B/16 image tower, pooled"),
    "facebook/vit-mae-base": (768, "MAE ViT-B/16 (CLS)"),
    "google/vit-base-patch16-224-in21k": (768, "supervised ViT-B/16, ImageNet-21k (CLS)"),
}

TOKEN_POOLS = ("cls", "mean", "cls+mean")
_CLIP_TYPES = ("clip", "clip_vision_model")
_SIGLIP_TYPES = ("siglip", "siglip_vision_model")
_DINOV2_TYPES = ("dinov2", "dinov2_with_registers")


def _require_transformers():
    try:
        import transformers
    except ImportError:
        raise InputError(
            "hf: encoders need the transformers package: pip install transformers "
            "(or pip install 'deepclust[hf]')"
        ) from None
    return transformers


@contextmanager
def _quiet_transformers():
    """Silence transformers' info/warning chatter (e.g. 'torchvision not installed')."""
    logger = logging.getLogger("transformers")
    old = logger.level
    logger.setLevel(logging.ERROR)
    try:
        from transformers.utils import logging as tlogging

        old_verbosity = tlogging.get_verbosity()
        bars = tlogging.is_progress_bar_enabled()
        tlogging.set_verbosity_error()
        tlogging.disable_progress_bar()
    except Exception:  # pragma: no cover - very old transformers
        old_verbosity, bars = None, False
    try:
        yield
    finally:
        logger.setLevel(old)
        if old_verbosity is not None:
            tlogging.set_verbosity(old_verbosity)
            if bars:
                tlogging.enable_progress_bar()


def _hub_cache() -> str:
    try:
        from huggingface_hub.constants import HF_HUB_CACHE

        return str(HF_HUB_CACHE)
    except Exception:
        return os.path.join(os.environ.get("HF_HOME", "~/.cache/huggingface"), "hub")


def _looks_local(ref: str) -> bool:
    return ref.startswith(("/", "./", "../", "~")) or os.path.exists(os.path.expanduser(ref))


def _missing_message(ref: str, what: str, detail: str = "") -> str:
    if _looks_local(ref):
        return (
            f"hf:{ref}: {what} not found in the folder {os.path.expanduser(ref)}. It must hold "
            "config.json, preprocessor_config.json and the weights (model.safetensors), as "
            "written by save_pretrained()."
        )
    return (
        f"hf:{ref}: {what} is not on this machine (looked in the Hugging Face cache "
        f"{_hub_cache()}; deepclust never downloads models). Fetch it on a machine with "
        f"network access:\n  hf download {ref}     (older hubs: huggingface-cli download {ref})\n"
        "then copy the cache folder here (or set HF_HOME to where it is), or save the model "
        "to a folder with save_pretrained() and use hf:/path/to/that/folder."
        + (f"\n({detail})" if detail else "")
    )


def _size_fields(size) -> dict:
    """A Hugging Face ``size``/``crop_size`` (dict, SizeDict, int or None) as a plain dict."""
    if size is None:
        return {}
    if isinstance(size, int):
        return {"height": size, "width": size}
    if isinstance(size, dict):
        items = size.items()
    else:  # transformers 5: SizeDict
        items = ((k, getattr(size, k, None)) for k in ("height", "width", "shortest_edge", "longest_edge"))
    return {k: int(v) for k, v in items if v is not None}


def transform_from_processor(processor, ref: str = "") -> ImageTransform:
    """Build an :class:`ImageTransform` equal to a Hugging Face image processor's settings.

    Parameters
    ----------
    processor : transformers image processor
        Anything with the usual ``do_resize``/``size``/``resample``/``do_center_crop``/
        ``crop_size``/``rescale_factor``/``image_mean``/``image_std`` attributes.
    ref : str
        For error messages.
    """
    g = lambda name, default=None: getattr(processor, name, default)  # noqa: E731
    size = _size_fields(g("size"))
    crop = _size_fields(g("crop_size")) if g("do_center_crop", False) else {}
    do_resize = g("do_resize", True)
    resample = g("resample", 2)
    interpolation = PIL_CODES.get(int(resample) if resample is not None else 2)
    if interpolation is None:
        raise InputError(f"hf:{ref}: unsupported resample filter {resample!r} in the image processor")
    if "longest_edge" in size:
        raise InputError(
            f"hf:{ref}: image processors that resize by 'longest_edge' are not supported "
            f"(size={size}); use a model with a fixed input size"
        )
    if not do_resize:
        if not crop:
            raise InputError(f"hf:{ref}: the image processor neither resizes nor crops; cannot batch images")
        resize_mode, resize_size = "none", None
    elif "shortest_edge" in size:
        resize_mode, resize_size = "shortest", size["shortest_edge"]
    elif "height" in size and "width" in size:
        resize_mode, resize_size = "exact", (size["height"], size["width"])
    else:
        raise InputError(f"hf:{ref}: cannot read the image processor's size {size!r}")
    if crop:
        crop_size = (crop["height"], crop["width"])
    elif resize_mode == "exact":
        crop_size = resize_size
    else:
        s = resize_size
        raise InputError(
            f"hf:{ref}: the image processor resizes the shortest edge to {s} without a centre "
            "crop, so images of different shapes cannot be batched"
        )
    if g("do_normalize", True):
        mean, std = tuple(float(v) for v in g("image_mean")), tuple(float(v) for v in g("image_std"))
    else:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    rescale = float(g("rescale_factor", 1 / 255)) if g("do_rescale", True) else 1.0
    return ImageTransform(
        crop_size=crop_size, resize_size=resize_size, resize=resize_mode,
        interpolation=interpolation, mean=mean, std=std, rescale=rescale, crop_offset="floor",
    )


def load_image_processor(ref: str, revision: str | None = None):
    """The model's image processor, read offline (Pillow backend where there is a choice)."""
    from transformers import AutoImageProcessor

    kw = {"revision": revision} if revision else {}
    with _quiet_transformers():
        try:
            return AutoImageProcessor.from_pretrained(ref, local_files_only=True, **kw)
        except ImportError:
            # a processor class that needs torchvision: its JSON holds the same settings
            return _processor_settings_from_json(ref)
        except (OSError, ValueError) as exc:
            raise DataNotFoundError(
                _missing_message(ref, "the image-processor config (preprocessor_config.json)", str(exc))
            ) from None


def _processor_settings_from_json(ref: str):
    """The raw ``preprocessor_config.json`` as an object with the processor's attribute names."""
    import json
    from types import SimpleNamespace

    from transformers.utils import cached_file

    try:
        path = cached_file(ref, "preprocessor_config.json", local_files_only=True)
    except OSError as exc:
        raise DataNotFoundError(
            _missing_message(ref, "the image-processor config (preprocessor_config.json)", str(exc))
        ) from None
    with open(path) as f:
        return SimpleNamespace(**json.load(f))


class _TokenPool(torch.nn.Module):
    """Wraps a transformers vision model; returns pooled embeddings."""

    def __init__(self, model, kind: str, pool: str, n_prefix: int, mae: bool, interpolate: bool = False):
        super().__init__()
        self.model, self.kind, self.pool, self.n_prefix, self.mae = model, kind, pool, n_prefix, mae
        self.interpolate = interpolate

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if self.kind == "clip":
            return self.model(pixel_values=pixel_values).image_embeds
        if self.kind == "siglip":
            return self.model(pixel_values=pixel_values).pooler_output
        kwargs = {"interpolate_pos_encoding": True} if self.interpolate else {}
        if self.mae:  # identity patch order: reproducible, and with mask_ratio=0 all patches kept
            p = self.model.config.patch_size
            p = (p, p) if isinstance(p, int) else tuple(p)
            n = (pixel_values.shape[2] // p[0]) * (pixel_values.shape[3] // p[1])
            kwargs["noise"] = torch.arange(n, device=pixel_values.device, dtype=torch.float32).expand(len(pixel_values), n)
        out = self.model(pixel_values=pixel_values, **kwargs)
        if self.kind == "pooler":
            pooled = out.pooler_output
            return pooled.reshape(len(pooled), -1)
        tokens = out.last_hidden_state
        if tokens.ndim == 4:  # convolutional models: (B, C, H, W)
            return tokens.mean(dim=(2, 3))
        cls = tokens[:, 0]
        if self.pool == "cls":
            return cls
        mean = tokens[:, self.n_prefix:].mean(dim=1)
        if self.pool == "mean":
            return mean
        return torch.cat([cls, mean], dim=1)


class HFEncoder(Encoder):
    """A transformers vision model, loaded offline.

    Parameters
    ----------
    ref : str
        A hub id (``"facebook/dinov2-small"``, read from the local hub cache) or a local folder
        written by ``save_pretrained``.
    pool : {"auto", "cls", "mean", "cls+mean"}
        Token pooling for ViT/DINO/DINOv2/MAE ("auto" = "cls"); CLIP and SigLIP always give
        their image embedding and accept only "auto".
    revision : str, optional
        Hub revision (branch, tag or commit) to read from the cache.
    """

    def __init__(self, ref: str, *, pool: str = "auto", revision: str | None = None):
        super().__init__()
        if not ref:
            raise InputError("hf: needs a model id or folder, e.g. hf:facebook/dinov2-small")
        transformers = _require_transformers()
        if pool not in ("auto",) + TOKEN_POOLS:
            raise InputError(f"pool must be one of auto, {', '.join(TOKEN_POOLS)}; got {pool!r}")
        if _looks_local(ref) and not os.path.isdir(os.path.expanduser(ref)):
            raise DataNotFoundError(f"hf:{ref}: no such folder")
        ref_path = os.path.expanduser(ref) if _looks_local(ref) else ref
        kw = {"local_files_only": True}
        if revision:
            kw["revision"] = revision
        with _quiet_transformers():
            try:
                config = transformers.AutoConfig.from_pretrained(ref_path, **kw)
            except (OSError, ValueError) as exc:
                detail = "" if "connect" in str(exc) else str(exc)
                raise DataNotFoundError(_missing_message(ref, "the model config (config.json)", detail)) from None
            model_type = config.model_type
            kind, n_prefix, mae = "tokens", 1, False
            if model_type in _CLIP_TYPES:
                cls_, kind = transformers.CLIPVisionModelWithProjection, "clip"
                if model_type == "clip":  # a full CLIP checkpoint: keep its image tower only
                    vision = config.vision_config
                    vision.projection_dim = config.projection_dim  # lives at the top level
                    kw["config"] = vision
            elif model_type in _SIGLIP_TYPES:
                cls_, kind = transformers.SiglipVisionModel, "siglip"
                if model_type == "siglip":
                    kw["config"] = config.vision_config
            elif model_type in _DINOV2_TYPES:
                cls_ = transformers.AutoModel
                n_prefix = 1 + int(getattr(config, "num_register_tokens", 0) or 0)
            elif model_type == "vit_mae":
                cls_, mae = transformers.ViTMAEModel, True
                kw["mask_ratio"] = 0.0
            elif model_type == "vit":
                cls_ = transformers.ViTModel
                kw["add_pooling_layer"] = False
            else:
                cls_ = transformers.AutoModel
                kind = "generic"
            if kind in ("clip", "siglip") and pool != "auto":
                raise InputError(
                    f"hf:{ref} is a {model_type} model: it gives its image embedding; "
                    "pool= applies to ViT, DINO, DINOv2 and MAE only"
                )
            try:
                model = cls_.from_pretrained(ref_path, **kw)
            except (OSError, ValueError) as exc:
                raise DataNotFoundError(_missing_message(ref, "the model weights", str(exc))) from None
            except RuntimeError as exc:  # e.g. weights whose shapes do not fit the config
                first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
                raise InputError(f"hf:{ref}: the weights do not fit the model's config ({first})") from None
        processor = load_image_processor(ref_path, revision)
        self.transform = transform_from_processor(processor, ref)
        model = model.float().eval()
        if kind == "generic":
            h, w = self.transform.output_size
            with torch.inference_mode():
                probe = model(pixel_values=torch.zeros(1, 3, h, w))
            has_pooler = getattr(probe, "pooler_output", None) is not None
            kind = "pooler" if (pool == "auto" and has_pooler) else "tokens"
        self.pool = "cls" if (pool == "auto" and kind == "tokens") else pool
        # ViT and MAE refuse inputs of another size than they were trained at unless told to
        # interpolate their position embeddings (DINOv2 always does).
        size = getattr(config, "image_size", None)
        size = (size, size) if isinstance(size, int) else tuple(size or ())
        interpolate = model_type in ("vit", "vit_mae") and bool(size) and size != self.transform.output_size
        self.model = freeze(_TokenPool(model, kind, self.pool, n_prefix, mae, interpolate))
        self.name = f"hf:{ref}"
        self.ref = ref
        self.model_type = model_type
        hidden = getattr(config, "hidden_size", None)
        if kind == "clip":
            self.dim = int(model.config.projection_dim)
        elif kind == "siglip":
            self.dim = int(model.config.hidden_size)
        elif kind == "tokens" and hidden and model_type in (_DINOV2_TYPES + ("vit", "vit_mae")):
            self.dim = int(hidden) * (2 if self.pool == "cls+mean" else 1)
        else:
            h, w = self.transform.output_size
            with torch.inference_mode():
                self.dim = int(self.model(torch.zeros(1, 3, h, w)).shape[1])
        self.config = {
            "model_type": model_type,
            "pool": self.pool if kind == "tokens" else kind,
            "revision": revision or getattr(config, "_commit_hash", None),
        }

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model(batch)


def hf_cached(ref: str) -> bool:
    """Whether model ``ref`` has its config and weights in the local hub cache."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    config = try_to_load_from_cache(ref, "config.json")
    if not isinstance(config, str):
        return False
    return any(
        isinstance(try_to_load_from_cache(ref, f), str)
        for f in ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")
    )


def list_hf() -> list[EncoderInfo]:
    import importlib.util

    have = importlib.util.find_spec("transformers") is not None
    rows = [EncoderInfo(
        name="hf:<id or folder>", dim=None, available=have, family="hf",
        description="any transformers vision model (pool=cls|mean|cls+mean for ViT/DINO/MAE)",
        how_to_get="" if have else "pip install transformers",
    )]
    for ref, (dim, note) in CATALOGUE.items():
        ok = have and hf_cached(ref)
        how = ""
        if not have:
            how = "pip install transformers"
        elif not ok:
            how = f"hf download {ref}  (into {_hub_cache()})"
        rows.append(EncoderInfo(name=f"hf:{ref}", dim=dim, available=ok, family="hf",
                                description=note, how_to_get=how))
    return rows


