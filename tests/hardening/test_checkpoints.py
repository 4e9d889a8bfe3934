"""Every checkpoint failure is a CheckpointError naming the file and what was expected; a wrong
architecture lists missing and unexpected keys; weights-only refusal never suggests
``weights_only=False``. Oracle: the round trip of a good checkpoint reproduces the model."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from gmxai_eval.errors import CheckpointError, DataError
from gmxai_eval.models.base import MODELS
from gmxai_eval.models.checkpoint import load_checkpoint, save_checkpoint


@pytest.fixture
def ckpt(tmp_path):
    m = MODELS.create("toy_cnn", num_classes=3, seed=1)
    pt = save_checkpoint(m, tmp_path / "ck", {"arch": "toy_cnn", "arch_kwargs": {"num_classes": 3}})
    return m, pt, tmp_path / "ck.json"


def test_good_checkpoint_round_trips(ckpt):
    m, pt, _ = ckpt
    got, card = load_checkpoint(pt)
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(got(x), m(x)) and card["arch"] == "toy_cnn" and not got.training


def _card(js, **change):
    card = json.loads(js.read_text())
    card.update(change)
    js.write_text(json.dumps(card))


def _drop(js, key):
    card = json.loads(js.read_text())
    card.pop(key)
    js.write_text(json.dumps(card))


def test_checkpoint_failures(ckpt, tmp_path):
    m, pt, js = ckpt
    x_state = m.state_dict()
    cases = []  # (what to break, expected message part, file the message must name)

    def case(name, breaker, part, path):
        cases.append((name, breaker, part, path))

    case("no card", lambda: js.unlink(), "checkpoint card", js)
    case("card not JSON", lambda: js.write_text("{arch"), "UTF-8 JSON checkpoint card", js)
    case("card not UTF-8", lambda: js.write_bytes(b'{"arch": "\xff"}'), "UTF-8 JSON checkpoint card", js)
    case("card nested too deep", lambda: js.write_text("[" * 100000 + "]" * 100000), "UTF-8 JSON checkpoint card", js)
    case("card a list", lambda: js.write_text("[1]"), "JSON object", js)
    case("card without arch", lambda: _drop(js, "arch"), "card key 'arch'", js)
    case("unknown arch", lambda: _card(js, arch="toy_cnnn"), "toy_cnn", js)
    case("bad arch kwargs", lambda: _card(js, arch_kwargs={"num_clases": 3}), "arch", js)
    case("arch kwargs a list", lambda: _card(js, arch_kwargs=[3]), "arch_kwargs", js)
    case("no weights", lambda: pt.unlink(), "weights file", pt)
    case("not a checkpoint", lambda: pt.write_bytes(b"hello, not a checkpoint"), "complete PyTorch checkpoint", pt)
    case("truncated", lambda: pt.write_bytes(pt.read_bytes()[: len(pt.read_bytes()) // 2]),
         "complete PyTorch checkpoint", pt)
    case("pickled module", lambda: torch.save(nn.Linear(2, 2), pt), "weights-only", pt)
    case("a tensor, not a dict", lambda: torch.save(torch.zeros(3), pt), "state dict", pt)
    case("non-tensor entries", lambda: torch.save({"a": 1, **x_state}, pt), "non-tensor", pt)
    case("wrong architecture", lambda: torch.save(MODELS.create("linear", num_classes=3).state_dict(), pt),
         "missing keys", pt)
    case("missing and unexpected", lambda: torch.save(
        {("extra." + k if i == 0 else k): v for i, (k, v) in enumerate(x_state.items())}, pt), "unexpected keys", pt)
    case("wrong shape", lambda: _card(js, arch_kwargs={"num_classes": 5}), "shape mismatches", pt)
    for name, breaker, part, path in cases:
        save_checkpoint(m, pt, {"arch": "toy_cnn", "arch_kwargs": {"num_classes": 3}})
        breaker()
        with pytest.raises(CheckpointError) as e:
            load_checkpoint(pt)
        msg = str(e.value)
        assert part in msg, (name, msg)
        assert str(path) in msg, (name, msg)
        assert "weights_only=False" not in msg and "\n" not in msg, (name, msg)
        assert isinstance(e.value, DataError)  # callers catching DataError keep working
    assert len(cases) == 18


def test_wrong_architecture_lists_both_key_sets(ckpt):
    m, pt, _ = ckpt
    sd = dict(m.state_dict())
    sd["head.extra"] = torch.zeros(1)
    del sd["head.fc.bias"]
    torch.save(sd, pt)
    with pytest.raises(CheckpointError, match=r"missing keys \[head.fc.bias\]; unexpected keys \[head.extra\]"):
        load_checkpoint(pt)


def test_a_model_config_for_a_checkpoint_is_refused(ckpt):
    from gmxai_eval.errors import ConfigError

    _, pt, _ = ckpt
    with pytest.raises(ConfigError, match=r"\['num_classes'\]"):
        load_checkpoint(pt, num_classes=4)
