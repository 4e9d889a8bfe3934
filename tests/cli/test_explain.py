"""``gmxai-eval explain`` on a test image of the default data, and each bad input refused with
one line, exit status 1 and nothing written."""

from __future__ import annotations

import json
import re

import pytest
import torch

from gmxai_eval.analysis.explain import check_aligned
from gmxai_eval.cli import main
from gmxai_eval.data.images import read_image, write_image
from gmxai_eval.data.regions import ARCFACE_TEMPLATE_112
from gmxai_eval.errors import DataError


@pytest.fixture(scope="module")
def default():
    from gmxai_eval.models.default import load_default

    return load_default(progress=False)


def _face(folder, default, i=7, landmarks=None):
    _, splits, _ = default
    s = splits.test[i]
    img = folder / "face.png"
    write_image(img, s.image)
    lm = s.landmarks if landmarks is None else landmarks
    (folder / "face.landmarks.json").write_text(json.dumps(lm.tolist()))
    return img, s


@pytest.mark.slow
def test_explain_on_a_test_image(tmp_path, default, capsys):
    model, splits, _ = default
    img, s = _face(tmp_path, default)
    out = tmp_path / "out"
    assert main(["explain", str(img), "--out", str(out), "--top-k", "3", "--matches", "2"]) == 0
    page = (out / "explain.html").read_text()
    assert (out / "explain.png").read_bytes().startswith(b"\x89PNG")
    x = read_image(img).unsqueeze(0)  # the photo as written (8-bit), as explain read it
    with torch.no_grad():
        top = model(x).softmax(1)[0].topk(3)
    for k, p in zip(top.indices.tolist(), top.values.tolist()):
        assert splits.test.classes[k] in page and f"{p:.3g}" in page
    assert page.count("<img ") == 2 and "Nearest gallery matches" in page and "Region table row" in page
    assert "saliency, grad_cam" in page  # the documented default methods
    assert not any(p.name.endswith(".tmp") for p in out.iterdir())


@pytest.mark.slow
def test_explain_takes_the_best_methods_of_a_leaderboard(tmp_path, default):
    img, _ = _face(tmp_path, default)
    board = tmp_path / "results.json"
    cats = {"cf": "counterfactual"}
    board.write_text(json.dumps({
        "rankings": {"by_evaluator": {"cf": {"saliency": 2, "gradient_shap": 3, "input_x_gradient": 1, "random": 1}}},
        "methods": {"saliency": {"name": "saliency", "config": {}, "card": {"name": "saliency"}},
                    "gradient_shap": {"name": "gradient_shap", "config": {}, "card": {"name": "gradient_shap"}},
                    "input_x_gradient": {"name": "input_x_gradient", "config": {},
                                         "card": {"name": "input_x_gradient"}},
                    "random": {"name": "random", "config": {}, "card": {"name": "random", "control": True}}},
        "evaluators": {e: {"card": {"category": c}} for e, c in cats.items()}}))
    out = tmp_path / "out"
    assert main(["explain", str(img), "--leaderboard", str(board), "--matches", "0", "--out", str(out)]) == 0
    page = (out / "explain.html").read_text()
    assert "Methods: input_x_gradient, saliency" in page and "Nearest gallery matches" not in page


def test_alignment_check_against_the_template():
    assert check_aligned(ARCFACE_TEMPLATE_112, (112, 112)) == 0.0
    assert check_aligned(ARCFACE_TEMPLATE_112 * 2, (224, 224)) == 0.0  # scaled with the image
    moved = ARCFACE_TEMPLATE_112.clone()
    moved[2] += torch.tensor([0.0, 13.0])
    with pytest.raises(DataError, match="nose tip 13.0 px away"):
        check_aligned(moved, (112, 112))


@pytest.mark.slow
@pytest.mark.parametrize("case", ["missing", "not_an_image", "wrong_size", "no_landmarks", "bad_landmarks",
                                  "not_aligned"])
def test_explain_refuses_bad_inputs_and_writes_nothing(tmp_path, default, capsys, case):
    img, s = _face(tmp_path, default)
    expect = {"missing": "nope.png", "not_an_image": "face.png", "wrong_size": "expected a 112x112 image",
              "no_landmarks": "expected the photo's five landmarks", "bad_landmarks": "five [x, y]",
              "not_aligned": "expected an aligned frontal face"}[case]
    if case == "missing":
        img = tmp_path / "nope.png"
    elif case == "not_an_image":
        img.write_text("this is text, not a picture")
    elif case == "wrong_size":
        write_image(img, torch.nn.functional.interpolate(s.image[None], size=(96, 96))[0])
    elif case == "no_landmarks":
        (tmp_path / "face.landmarks.json").unlink()
    elif case == "bad_landmarks":
        (tmp_path / "face.landmarks.json").write_text("[[1, 2], [3, 4]]")
    else:  # the face moved by 20 px: its landmarks too, so the check must see them off the template
        write_image(img, torch.roll(s.image, 20, 2))
        (tmp_path / "face.landmarks.json").write_text(json.dumps((s.landmarks + torch.tensor([20.0, 0])).tolist()))
    out = tmp_path / "out"
    assert main(["explain", str(img), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expect in err, err
    assert not out.exists()


@pytest.mark.slow
def test_explain_with_a_checkpoint_equals_the_default_model(tmp_path, default):
    _, _, card = default
    img, _ = _face(tmp_path, default)
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["explain", str(img), "--matches", "1", "--methods", "saliency", "--out", str(a)]) == 0
    assert main(["explain", str(img), "--model", card["path"], "--matches", "1", "--methods", "saliency",
                 "--out", str(b)]) == 0
    strip = lambda p: re.sub(r"<img [^>]*>", "", (p / "explain.html").read_text().split("<h2>Top syndromes</h2>")[1])
    assert strip(a) == strip(b)  # same model, same numbers; only the model's description differs
