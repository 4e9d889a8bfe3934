"""Bringing one's own model: factory (module or file), state dict, TorchScript, and the check
that the model fits the data — each failure a typed one-line error naming what is wrong."""

from __future__ import annotations

import textwrap

import pytest
import torch
from torch import nn

from gmxai_eval.errors import CheckpointError, ConfigError
from gmxai_eval.models import MODELS
from gmxai_eval.models.factory import check_model_fits, import_factory, load_user_model

NET = textwrap.dedent("""
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self, num_classes=3, width=4):
            super().__init__()
            self.conv = nn.Conv2d(3, width, 3, padding=1)
            self.fc = nn.Linear(width, num_classes)
        def forward(self, x):
            return self.fc(torch.relu(self.conv(x)).mean((2, 3)))

    def build(num_classes=3, width=4):
        torch.manual_seed(0)
        return Net(num_classes, width)

    def broken(**kw):
        raise ValueError("no such width\\nsecond line")

    NOT_CALLABLE = 3
""")


@pytest.fixture
def netfile(tmp_path):
    p = tmp_path / "mynet.py"
    p.write_text(NET)
    return p


def test_file_factory_with_kwargs_and_state_dict_round_trip(netfile, tmp_path):
    m = load_user_model(f"{netfile.name}:build", kwargs={"num_classes": 5}, base_dir=tmp_path)
    assert not m.training and m.fc.out_features == 5
    with torch.no_grad():
        for p in m.parameters():
            p.add_(1.0)  # weights that differ from the factory's
    torch.save(m.state_dict(), tmp_path / "w.pt")
    again = load_user_model(str(netfile) + ":build", kwargs={"num_classes": 5}, state_dict=tmp_path / "w.pt")
    x = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(again(x), m(x))


def test_module_factory(monkeypatch, netfile):
    monkeypatch.syspath_prepend(str(netfile.parent))
    fn = import_factory("mynet:build")
    assert isinstance(fn(), nn.Module)


def test_torchscript_file_gives_the_same_outputs(netfile, tmp_path):
    m = load_user_model(f"{netfile}:build")
    torch.jit.save(torch.jit.script(m), tmp_path / "m.ts")
    ts = load_user_model(torchscript=tmp_path / "m.ts")
    x = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(ts(x), m(x))
    assert check_model_fits(ts, num_classes=3, image_shape=(3, 16, 16)) == 3


@pytest.mark.parametrize("ref, kwargs, msg", [
    ("mynet.build", None, "expected a factory as 'package.module:function'"),
    ("nosuchmodule_xyz:build", None, "expected an importable module 'nosuchmodule_xyz'"),
    ("{file}:nothing", None, "expected a callable 'nothing'"),
    ("{file}:NOT_CALLABLE", None, "expected a callable 'NOT_CALLABLE'.*got int"),
    ("{file}:broken", None, "raised ValueError: no such width$"),
    ("{file}:build", {"depth": 3}, "raised TypeError"),
    ("missing.py:build", None, "expected a Python file"),
])
def test_factory_errors_are_one_line_config_errors(netfile, ref, kwargs, msg):
    with pytest.raises(ConfigError, match=msg) as e:
        load_user_model(ref.format(file=netfile), kwargs=kwargs)
    assert "\n" not in str(e.value)


def test_state_dict_errors_name_the_file_and_the_keys(netfile, tmp_path):
    other = nn.Sequential(nn.Linear(2, 2))
    torch.save(other.state_dict(), tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match=r"other\.pt.*missing keys \[conv\.bias, conv\.weight.*unexpected keys \[0\.bias"):
        load_user_model(f"{netfile}:build", state_dict=tmp_path / "other.pt")
    (tmp_path / "trunc.pt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CheckpointError, match=r"trunc\.pt.*weights_only=True"):
        load_user_model(f"{netfile}:build", state_dict=tmp_path / "trunc.pt")
    torch.save({"not": "tensors"}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="names -> tensors"):
        load_user_model(f"{netfile}:build", state_dict=tmp_path / "bad.pt")
    with pytest.raises(ConfigError, match="exactly one of model.factory and model.torchscript"):
        load_user_model()


def test_model_that_does_not_fit_the_data_is_refused_before_any_work(netfile):
    m = load_user_model(f"{netfile}:build", kwargs={"num_classes": 4})
    with pytest.raises(ConfigError, match="expected 3 outputs .*, got 4"):
        check_model_fits(m, num_classes=3, image_shape=(3, 64, 64))
    with pytest.raises(ConfigError, match=r"take the dataset's images \(1, 1, 64, 64\).*RuntimeError"):
        check_model_fits(m, num_classes=4, image_shape=(1, 64, 64))
    toy = MODELS.create("toy_cnn", num_classes=4)  # registered with input_size (32, 32)
    with pytest.raises(ConfigError, match="expects 32x32 images, the dataset has 64x64"):
        check_model_fits(toy, num_classes=4, image_shape=(3, 64, 64))
    assert check_model_fits(toy, num_classes=4, image_shape=(3, 32, 32)) == 4


def test_a_model_that_converts_its_input_itself_takes_the_datasets_pixels():
    # GestaltMatcher v1 is registered for 1x100x100 grayscale; its preprocess converts RGB 112 px
    v1 = MODELS.create("gestaltmatcher_v1", num_classes=4, width=0.125).eval()
    assert check_model_fits(v1, num_classes=4, image_shape=(3, 112, 112)) == 4
