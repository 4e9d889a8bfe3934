"""gmx_small, checkpoints, recognition metrics, deterministic training and the default loader."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from gmxai_eval.data import synth
from gmxai_eval.data.base import Sample
from gmxai_eval.errors import ConfigError, DataError
from gmxai_eval.models import MODELS, check_no_reused_modules
from gmxai_eval.models import default as default_mod
from gmxai_eval.models import train as train_mod
from gmxai_eval.models.checkpoint import load_checkpoint, save_checkpoint
from gmxai_eval.models.metrics import classifier_topk, gallery_topk, macro_topk, ranks, syndrome_scores
from gmxai_eval.models.small import BLOCKS, CAM_LAYER, embed_dataset, with_gallery_head
from gmxai_eval.models.train import TrainConfig, evaluate, train_model
from gmxai_eval.utils import hooks, module_by_name

EASY = synth.SynthConfig(num_images=96, num_syndromes=2, imbalance=2.0, effect=5.0, nuisance=0.3, seed=3)


@pytest.fixture(scope="module")
def easy(tmp_path_factory):
    root = tmp_path_factory.mktemp("easy")
    return synth.generate(EASY, name="easy", root=root, progress=False)


def test_gmx_small_keys_shapes_and_no_reuse():
    m = MODELS.create("gmx_small", num_classes=13)
    want = []
    for i in range(len(BLOCKS)):
        want += [f"backbone.base.{i}.conv.weight"] + [f"backbone.base.{i}.norm.{k}" for k in
                                                       ("weight", "bias", "running_mean", "running_var",
                                                        "num_batches_tracked")]
    want += [f"backbone.base.{len(BLOCKS)}.weight", f"backbone.base.{len(BLOCKS)}.bias",
             "head.fc.weight", "head.fc.bias"]
    assert list(m.state_dict()) == want
    check_no_reused_modules(m)
    relus = [mod for mod in m.modules() if isinstance(mod, nn.ReLU)]
    assert len(relus) == len(BLOCKS) and len({id(r) for r in relus}) == len(BLOCKS)
    x = torch.rand(2, 3, 112, 112)
    assert m(x).shape == (2, 13) and m.embed(x).shape == (2, 128)
    assert not m.training and m.cam_layer == CAM_LAYER


def test_cam_layer_feeds_the_logits_through_gap():
    # logits = W . mean_ij A_ij + b at the CAM layer (so CAM = Grad-CAM there)
    m = MODELS.create("gmx_small", num_classes=5, seed=1)
    x = torch.rand(3, 3, 112, 112)
    acts = []
    with hooks() as hs:
        hs.append(module_by_name(m, m.cam_layer).register_forward_hook(lambda mod, i, o: acts.append(o)))
        y = m(x)
    assert acts[0].shape == (3, 128, 7, 7)
    torch.testing.assert_close(y, m.head.fc(acts[0].mean((2, 3))))


def test_strict_state_dict_round_trip_and_checkpoint(tmp_path):
    a = MODELS.create("gmx_small", num_classes=4, seed=1)
    b = MODELS.create("gmx_small", num_classes=4, seed=2)
    b.load_state_dict(a.state_dict(), strict=True)
    x = torch.rand(2, 3, 112, 112)
    assert torch.equal(a(x), b(x))
    card = {"arch": "gmx_small", "arch_kwargs": {"num_classes": 4, "seed": 5}, "metrics": {"top1": 0.5}}
    pt = save_checkpoint(a, tmp_path / "ck", card)
    state = torch.load(pt, weights_only=True)
    assert set(state) == set(a.state_dict())
    c, card2 = load_checkpoint(tmp_path / "ck.json")
    assert torch.equal(c(x), a(x)) and card2["metrics"] == {"top1": 0.5}
    (tmp_path / "ck.json").unlink()
    with pytest.raises(DataError):
        load_checkpoint(tmp_path / "ck")


def test_gallery_head_is_cosine_to_class_centroids(easy, tmp_path):
    m = MODELS.create("gmx_small", num_classes=3, seed=0)
    gal = synth.SyntheticFaces(easy, split="gallery")
    g = with_gallery_head(m, gal)
    z, y = embed_dataset(m, gal)
    zn = z / z.norm(dim=1, keepdim=True)
    cent = torch.stack([zn[y == k].sum(0) for k in range(3)])
    cent = cent / cent.norm(dim=1, keepdim=True)
    x = gal.images(slice(0, 4))
    q = m.embed(x)
    torch.testing.assert_close(g(x), (q / q.norm(dim=1, keepdim=True)) @ cent.t())
    # a gallery-head checkpoint round-trips through the registry constructor
    save_checkpoint(g, tmp_path / "g", {"arch": "gmx_small", "arch_kwargs": {"num_classes": 3, "head": "gallery"}})
    g2, _ = load_checkpoint(tmp_path / "g")
    assert torch.equal(g2(x), g(x))
    with pytest.raises(ConfigError):
        MODELS.create("gmx_small", head="arcface")


def test_gallery_topk_hand_computed():
    # gallery: class 0 at angle 0 and 90 deg, class 1 at 45 deg, class 2 at 180 deg
    gal = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]])
    gl = torch.tensor([0, 0, 1, 2])
    # q0 at 10 deg: nearest class 0 (10) < class 1 (35) < class 2 (170) -> true 1 has rank 2
    # q1 at 100 deg: class 0 (10) > class 1 (55) > class 2 (80) -> true 2 has rank 3
    # q2 at 40 deg: class 1 (5) first -> true 1 rank 1
    ang = torch.deg2rad(torch.tensor([10.0, 100.0, 40.0]))
    q = torch.stack([ang.cos(), ang.sin()], 1)
    ql = torch.tensor([1, 2, 1])
    s = syndrome_scores(q, gal, gl, 3)
    assert ranks(s, ql).tolist() == [2, 3, 1]
    # class 1: ranks [2, 1] -> top1 0.5; class 2: rank 3 -> top1 0 ; macro = 0.25
    got = gallery_topk(q, ql, gal, gl, 3, ks=(1, 2, 3))
    assert got == pytest.approx({"top1": 0.25, "top2": 0.5, "top3": 1.0})
    # macro differs from micro when classes have unequal counts
    logits = torch.tensor([[3.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.0, 3.0, 1.0], [0.0, 1.0, 3.0]])
    lab = torch.tensor([0, 1, 1, 1])
    assert classifier_topk(logits, lab, ks=(1,))["top1"] == pytest.approx((1 + 2 / 3) / 2)
    assert classifier_topk(logits, lab, ks=(1,), macro=False)["top1"] == pytest.approx(0.75)
    assert macro_topk(torch.tensor([1, 1, 4]), torch.tensor([0, 0, 1]), ks=(1,))["top1"] == 0.5


class _Squares(torch.utils.data.Dataset):
    """Noise images with a bright square at the top (class 0), centre (1) or bottom (2)."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.rand(n, 3, 112, 112, generator=g) * 0.5
        self.y = torch.arange(n) % 3
        for i, c in enumerate(self.y.tolist()):
            y0, x0 = [(8, 40), (40, 40), (72, 40)][c]  # flip-invariant positions
            self.x[i, :, y0:y0 + 32, x0:x0 + 32] += 0.5

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> Sample:
        return Sample(image=self.x[i], label=int(self.y[i]), image_id=str(i))


def test_training_is_deterministic_and_learns():
    tr, te = _Squares(48, 0), _Squares(30, 1)
    cfg = TrainConfig(epochs=6, batch_size=8, lr=3e-3, threads=1, seed=0, label_smoothing=0.0)
    m1, h1 = train_model(tr, 3, cfg, progress=False)
    m2, h2 = train_model(tr, 3, cfg, progress=False)
    for (k, a), b in zip(m1.state_dict().items(), m2.state_dict().values()):
        assert torch.equal(a, b), k
    assert h1["loss"] == h2["loss"]
    met = evaluate(m1, tr, te, ks=(1, 3))
    untrained = evaluate(MODELS.create("gmx_small", num_classes=3, seed=0), tr, te, ks=(1,))
    # chance is 1/3; the held-out images are recognised
    assert met["classifier_top1"] >= 0.7 and met["gallery_top1"] >= 0.9
    assert untrained["classifier_top1"] < met["classifier_top1"]
    assert met["gallery_top3"] == 1.0


def test_class_weights_balance_classes():
    y = torch.tensor([0] * 8 + [1] * 2)
    w = train_mod.class_weights(y, 2, 1.0)
    assert w[y].mean() == pytest.approx(1.0)
    assert (w[0] * 8).item() == pytest.approx((w[1] * 2).item())  # full inverse frequency
    assert torch.equal(train_mod.class_weights(y, 2, 0.0), torch.ones(2))


def test_load_default_tiny_trains_once_then_reuses(tmp_path, monkeypatch):
    model, splits, card = default_mod.load_default(root=tmp_path, preset="tiny", progress=False)
    assert card["dataset"]["content_hash"] == splits.dataset.card["content_hash"]
    assert set(card["metrics"]) >= {"gallery_top1", "classifier_top1"}
    assert not set(splits.gallery.subjects) & set(splits.test.subjects)
    x = splits.test.images(slice(0, 2))

    def boom(*a, **k):
        raise AssertionError("retrained")

    monkeypatch.setattr(default_mod, "train_model", boom)
    model2, _, card2 = default_mod.load_default(root=tmp_path, preset="tiny", progress=False)
    assert torch.equal(model2(x), model(x)) and card2["path"] == card["path"]
    with pytest.raises(ConfigError):
        default_mod.load_default(root=tmp_path, preset="huge")


def test_train_cli(tmp_path, capsys):
    from gmxai_eval.cli import main

    rc = main(["train", "--data", "synthetic_faces_tiny", "--root", str(tmp_path), "--epochs", "1",
               "--threads", "1", "--out", str(tmp_path / "ck"), "--quiet"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["checkpoint"].endswith("ck.pt") and (tmp_path / "ck.json").exists()
    assert main(["train", "--data", "nope", "--root", str(tmp_path), "--quiet"]) == 1
