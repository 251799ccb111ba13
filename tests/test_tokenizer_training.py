"""Landmark tokenizer training: the data, a short CI run with a stated error bound, and the saved file."""
import numpy as np
import pytest
import torch

from lato_core.predictor.face_model import load_face_model
from lato_core.predictor.geometry import fit_face, predict_landmarks
from lato_core.tokenizer import expected_shapes, load_tokenizer, points_to_tokens_input, read_header
from lato_core.tokenizer_training import TrainConfig, base_faces, evaluate, landmark_sets, train_tokenizer
from lato_core.tokenizer_training.__main__ import main
from lato_core.tokenizer_training.data import Augmentation, edited_points, random_params

# The CI run: 300 steps of batch 64 on a tiny model, one thread (~25 s; two threads crawl when another process
# shares the cores). Its held-out reconstruction error (mean |dx| + |dy| per point on the 512 canvas) came out
# 12.6-14.0 px over seeds 0-3; the mean-shape guess scores ~100 px, the untrained model ~250 px.
RECON_BOUND_PX = 20.0
CI = dict(steps=300, batch=64, lr=5e-3, code_dim=32, codebook_size=128, channels=(32, 64), pool=4096,
          held_out=512, log_every=100)


@pytest.fixture(scope="module")
def faces():
    return base_faces()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, faces):
    out = tmp_path_factory.mktemp("tokenizer") / "tiny.safetensors"
    logs, threads = [], torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = train_tokenizer(TrainConfig(**CI, out=str(out)), log=logs.append)
    finally:
        torch.set_num_threads(threads)
    return result, logs


def test_landmark_sets_follow_the_predictor(faces):
    assert len(faces) == 3 and all(f.image_size == (512, 512) for f in faces)  # astronaut, Grace Hopper, model face
    model = load_face_model()
    params = random_params(np.random.default_rng(3), Augmentation())
    direct = predict_landmarks(faces[0], params, model).points
    assert np.allclose(edited_points(fit_face(faces[0], model), params, model).clip(-0.5, 511.5), direct, atol=1e-9)
    sets = landmark_sets(512, seed=1, faces=faces)
    assert sets.shape == (512, 68, 2) and sets.min() >= -0.5 and sets.max() <= 511.5
    spread = (sets - sets.mean(0)).abs().sum(-1).mean()
    assert 50 < spread < 200  # varied poses and expressions, still faces on the canvas
    assert torch.equal(sets, landmark_sets(512, seed=1, faces=faces))


def test_ci_training_reaches_the_bound(trained):
    result, logs = trained
    assert result.recon_error_px < RECON_BOUND_PX < result.initial_recon_error_px
    assert result.perplexity > 32 and result.codes_used >= 64  # the codebook is in use, not collapsed
    assert result.history[-1]["recon_px"] < result.history[0]["recon_px"]
    assert len(logs) == 4 and "perplexity" in logs[-1] and "px" in logs[-1]


def test_saved_file_loads_in_the_lato_loader(trained, faces):
    result, _ = trained
    header = read_header(result.path)
    model = load_tokenizer(result.path)  # sizes inferred from the shapes, as for the release file
    cfg = model.config
    assert (cfg.channels, cfg.code_dim, cfg.codebook_size) == ((32, 64), 32, 128)
    assert {k: v[0] for k, v in header.items()} == expected_shapes(cfg)  # the release key layout
    points = landmark_sets(64, seed=99, faces=faces)
    indices, codes = model.encode(points_to_tokens_input(points))
    assert indices.shape == (64, 68) and codes.shape == (64, 68, 32)
    recon, _, _ = evaluate(model, points_to_tokens_input(landmark_sets(512, seed=10_000, faces=faces)))
    assert recon == pytest.approx(result.recon_error_px, rel=1e-4)  # the loaded network is the trained one
    assert model.decode(indices).shape == (64, 2, 68)


def test_command_line(tmp_path, capsys):
    out, threads = tmp_path / "cli.safetensors", torch.get_num_threads()
    try:
        assert main(["--steps", "4", "--batch", "8", "--code-dim", "32", "--codebook-size", "64", "--channels", "32",
                     "64", "--pool", "256", "--log-every", "2", "--threads", "1", "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    assert "held-out: recon" in capsys.readouterr().out
    assert load_tokenizer(out).config.codebook_size == 64
