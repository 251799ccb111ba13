"""Training entry point on a tiny UNet and tiny synthetic data: the loss falls, the file round-trips through the
strict loader, LoRA reference nets are merged into plain weights; the dataset builder and the CLI."""
import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

from caedit_core.__main__ import main
from caedit_core.checkpoint import key_table, load_adapter, read_adapter_file, save_adapter
from caedit_core.dataset import (CAEditDataset, build_dataset, caption_from_attributes, read_attributes,
                                 synthetic_manifest)
from caedit_core.train import (CAEditTrainModel, TrainConfig, add_refnet_lora, encode_batch, export_tensors,
                               load_frozen, new_adapter, train)
from lato_core.errors import ModelFileError
from tiny_sd15 import tiny_adapter, tiny_unet, write_diffusers_pipeline

SMALL = dict(sample_size=8, block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D",) * 2,
             up_block_types=("CrossAttnUpBlock2D",) * 2, cross_attention_dim=32, layers_per_block=1)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("caedit_train")
    paths = write_diffusers_pipeline(root / "pipe", **SMALL)
    manifest = synthetic_manifest(root / "data", count=4, size=64)
    return root, paths, manifest


def _config(setup, name, **kw):
    root, paths, manifest = setup
    values = dict(pretrained=str(paths["pretrained"]), image_encoder=str(paths["image_encoder"]), data=str(manifest),
                  output=str(root / f"{name}.safetensors"), resolution=64, batch_size=4, learning_rate=1e-3,
                  max_steps=30, num_workers=0, log_every=0, score_hidden_dim=32, save_every=0, max_mask_grow=2)
    return TrainConfig(**{**values, **kw})


def test_loss_falls_and_the_saved_file_round_trips(setup):
    cfg = _config(setup, "refnet", eval_every=10)
    history = train(cfg)
    evals = [loss for _, loss in history["eval"]]
    assert [s for s, _ in history["eval"]] == [0, 10, 20, 30]
    assert evals[-1] < 0.9 * evals[0] and evals[-1] < evals[1]  # fixed noise / timesteps: comparable
    assert np.mean(history["losses"][-10:]) < 0.9 * np.mean(history["losses"][:10])

    loaded = load_adapter(cfg.output)
    assert loaded.config["placement"] == "refnet" and loaded.refnet is not None
    with safe_open(cfg.output, framework="pt") as f:
        meta = f.metadata()
        saved = {k: f.get_tensor(k) for k in f.keys()}
    assert json.loads(meta["train_config"])["max_steps"] == 30
    assert meta["steps"] == "30"
    assert set(saved) == set(loaded.file_state_dict())
    assert all(torch.equal(saved[k], v) for k, v in loaded.file_state_dict().items())
    # the loaded adapter predicts what the trained one did (same frozen parts, same batch)
    parts = load_frozen(cfg, "cpu", torch.float32)
    batch = next(iter(torch.utils.data.DataLoader(CAEditDataset(cfg.data, 64, parts["processor"]), batch_size=2)))
    enc = encode_batch(batch, parts, cfg)
    noisy, t = torch.randn_like(enc["latents"]), torch.tensor([700, 300])
    fresh = CAEditTrainModel(parts["unet"], loaded)(noisy, t, enc["text"], enc["image"], enc["mask"], enc["masked"])
    untrained = CAEditTrainModel(parts["unet"], new_adapter(parts["unet"], cfg, 32).eval())
    base = untrained(noisy, t, enc["text"], enc["image"], enc["mask"], enc["masked"])
    assert (fresh - base).abs().max() > 1e-3  # training changed the prediction and the file carries it


def test_lora_reference_net_is_saved_merged_and_loads_without_peft_keys(setup):
    cfg = _config(setup, "lora", max_steps=3, refnet_lora_rank=4)
    train(cfg)
    _, tensors, _ = read_adapter_file(cfg.output)
    assert not any("lora" in k or "base_layer" in k or "modules_to_save" in k for k in tensors)
    adapter = load_adapter(cfg.output)
    # merge equals the peft forward: a fresh LoRA net with non-zero B matrices vs its merged export
    parts = load_frozen(cfg, "cpu", torch.float32)
    live = new_adapter(parts["unet"], _config(setup, "x"), 32).eval()
    add_refnet_lora(live, 4)
    with torch.no_grad():
        for name, p in live.refnet.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    merged = type(adapter)(live.config)
    merged.load_file_state_dict(export_tensors(live))
    g = torch.Generator().manual_seed(0)
    args = (torch.randn(1, 4, 8, 8, generator=g), torch.tensor([400]), torch.randn(1, 77, 32, generator=g),
            torch.randn(1, 5, 8, 8, generator=g))
    with torch.no_grad():
        a, b = live.refnet(*args), merged.refnet(*args)
    assert all(torch.allclose(x, y, atol=1e-5) for x, y in zip([*a[0], a[1]], [*b[0], b[1]]))


def test_strict_loader_names_the_file_and_the_problem(tmp_path):
    good = save_adapter(tiny_adapter(0, "refnet", unet=tiny_unet(0, **SMALL), clip_dim=32), tmp_path / "good.safetensors")
    config, tensors, meta = read_adapter_file(good)
    broken = tmp_path / "broken.safetensors"
    key = next(k for k in tensors if k.endswith("to_k_vis.weight"))
    save_file({k: v for k, v in tensors.items() if k != key}, str(broken), metadata=meta)
    with pytest.raises(ModelFileError, match=r"broken\.safetensors does not match.*\n  missing \(1\):\n    " + key.replace(".", r"\.")):
        load_adapter(broken)
    save_file({**tensors, key: tensors[key][:, :3].contiguous()}, str(broken), metadata=meta)
    with pytest.raises(ModelFileError, match=r"wrong shape \(1\):\n    .*to_k_vis\.weight: file \[\d+, 3\], expected \[\d+, 32\]"):
        load_adapter(broken)
    save_file(tensors, str(broken), metadata={**meta, "format": "ip-adapter"})
    with pytest.raises(ModelFileError, match="broken.safetensors: metadata format is 'ip-adapter'"):
        load_adapter(broken)
    with pytest.raises(ModelFileError, match="no such file"):
        load_adapter(tmp_path / "missing.safetensors")
    table = key_table(good)
    assert "placement refnet" in table and f"{key:<90} [" in table and "refnet.down_blocks.0" in table


def test_cli_trains_a_ca2_only_adapter_and_inspects_it(setup, capsys):
    cfg = _config(setup, "cli")
    argv = ["train", "--pretrained", cfg.pretrained, "--image-encoder", cfg.image_encoder, "--data", cfg.data,
            "--output", cfg.output, "--resolution", "64", "--batch-size", "2", "--max-steps", "2", "--num-workers", "0",
            "--placement", "unet", "--no-refnet", "--score-hidden-dim", "16", "--save-every", "0"]
    assert main(argv) == 0
    adapter = load_adapter(cfg.output)
    assert adapter.refnet is None and adapter.config["placement"] == "unet"
    assert len(adapter.config["layers"]) == 7  # attn2 layers of the small UNet: 2 down, 1 mid, 4 up
    assert main(["inspect", cfg.output]) == 0
    assert "reference net: no" in capsys.readouterr().out


def test_dataset_builder_masks_from_landmarks_and_captions(tmp_path, astronaut_rgb):
    from skimage import data

    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(astronaut_rgb).save(photos / "astronaut.png")
    Image.fromarray(data.coffee()).save(photos / "coffee.png")  # no face: skipped
    (tmp_path / "captions.jsonl").write_text(json.dumps({"image": "astronaut.png", "region": "brows",
                                                         "caption": "thin arched eyebrows"}) + "\n")
    (tmp_path / "attrs.txt").write_text("2\nNarrow_Eyes Smiling Big_Lips\nastronaut.png 1 1 -1\ncoffee.png -1 -1 -1\n")
    manifest = build_dataset(photos, tmp_path / "out", ["brows", "eyes", "lips"], tmp_path / "captions.jsonl",
                             tmp_path / "attrs.txt", crop=256, grow=4)
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert [(r["region"], r["caption"]) for r in rows] == [("brows", "thin arched eyebrows"),
                                                           ("eyes", "narrow eyes"), ("lips", "natural lips")]
    masks = {r["region"]: np.asarray(Image.open(tmp_path / "out" / r["mask"])) > 127 for r in rows}
    assert all(m.shape == (256, 256) and 100 < m.sum() < 0.2 * 256 * 256 for m in masks.values())
    centre = {k: np.argwhere(m).mean(axis=0)[0] for k, m in masks.items()}  # rows: brows above eyes above lips
    assert centre["brows"] < centre["eyes"] < centre["lips"]
    item = CAEditDataset(manifest, 128, max_mask_grow=0)[0]
    assert item["pixels"].shape == (3, 128, 128) and -1 <= item["pixels"].min() < item["pixels"].max() <= 1
    assert set(item["mask"].unique().tolist()) == {0.0, 1.0}


def test_attribute_tables_and_mask_augmentation(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("Bushy_Eyebrows Arched_Eyebrows Wearing_Lipstick\nx.jpg 1 1 1\ny.jpg -1 -1 -1\n")
    attrs = read_attributes(path)
    assert caption_from_attributes("brows", attrs["x.jpg"]) == "bushy arched eyebrows"
    assert caption_from_attributes("lips", attrs["x.jpg"]) == "red lips"
    assert caption_from_attributes("brows", attrs["y.jpg"]) is None
    rows = CAEditDataset(synthetic_manifest(tmp_path / "s", 1, 64), 64, max_mask_grow=3, seed=1)
    plain = CAEditDataset(rows.rows, 64)[0]["mask"]
    grown = [rows[0]["mask"].sum() - plain.sum() for _ in range(6)]
    assert min(grown) >= 0 and max(grown) > 0


def test_face_parsing_classes_are_selected_by_name_in_both_orders():
    from caedit_core.face_parsing import BISENET_LABELS, SEGFORMER_LABELS, class_indices, mask_from_labels

    assert class_indices("brows", "bisenet") == [2, 3] and class_indices("brows", "segformer") == [6, 7]
    assert class_indices("lips, nose", "bisenet") == [12, 13, 10] and class_indices("lips, nose", "segformer") == [11, 12, 2]
    assert sorted(BISENET_LABELS) == sorted(SEGFORMER_LABELS)
    # the same picture labelled in each order gives the same mask for the same names
    names = np.random.default_rng(0).choice(BISENET_LABELS, size=(2, 16, 16))
    maps = {order: torch.from_numpy(np.vectorize(labels.index)(names)) for order, labels in
            (("bisenet", BISENET_LABELS), ("segformer", SEGFORMER_LABELS))}
    for regions in ("brows", "u_lip, l_lip", "glasses", "face"):
        a, b = (mask_from_labels(maps[o], regions, o) for o in ("bisenet", "segformer"))
        assert torch.equal(a, b) and a.sum() > 0
    assert torch.equal(mask_from_labels(maps["bisenet"], "eyes", "bisenet"),
                       torch.from_numpy(np.isin(names, ["l_eye", "r_eye"])).float())
    with pytest.raises(ValueError, match="Unknown face-parsing class 'eyelash'"):
        class_indices("eyelash", "segformer")


def test_a_local_segformer_folder_parses_to_a_label_map(tmp_path):
    from transformers import SegformerConfig, SegformerForSemanticSegmentation, SegformerImageProcessor

    from caedit_core.face_parsing import SEGFORMER_LABELS, load_segformer, mask_from_labels, segformer_label_map

    config = SegformerConfig(num_labels=19, id2label=dict(enumerate(SEGFORMER_LABELS)),
                             label2id={n: i for i, n in enumerate(SEGFORMER_LABELS)}, hidden_sizes=[8, 8, 8, 8],
                             depths=[1, 1, 1, 1], num_attention_heads=[1, 1, 1, 1], decoder_hidden_size=8)
    torch.manual_seed(0)
    SegformerForSemanticSegmentation(config).save_pretrained(tmp_path / "parser")
    SegformerImageProcessor(size={"height": 64, "width": 64}).save_pretrained(tmp_path / "parser")
    model, processor, order = load_segformer(tmp_path / "parser")
    assert order == SEGFORMER_LABELS
    labels = segformer_label_map(model, processor, torch.rand(2, 48, 40, 3))
    assert labels.shape == (2, 48, 40) and labels.dtype == torch.int64 and 0 <= labels.min() <= labels.max() < 19
    present = SEGFORMER_LABELS[int(labels[0, 0, 0])]
    assert mask_from_labels(labels, present, order)[0, 0, 0] == 1.0
