"""Cost of attribution methods on the embedded default model, each with its registered
defaults, on the first ``--images`` test images: forward passes per image (counted at the model
class's ``forward``, so LRP's copy counts too; every image of a batch counts once) and seconds
per image (wall clock, ``--threads`` torch threads).

Run: ``python benchmarks/methods_cost.py --images 4 lime kernel_shap rise``.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from gmxai_eval.methods import create_method
from gmxai_eval.models.default import load_default


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("methods", nargs="+")
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, bundle, _ = load_default(progress=False)
    x = bundle.test.images(slice(0, args.images))
    with torch.no_grad():
        t = model(x).argmax(1)
    seen = [0]
    cls = type(model)
    original = cls.forward

    def counting(self, inp):  # class-level, so copies of the model (LRP) count too
        seen[0] += inp.shape[0]
        return original(self, inp)

    cls.forward = counting
    try:
        for name in args.methods:
            e = create_method(name)
            seen[0] = 0
            t0 = time.perf_counter()
            e(model, x, t)
            dt = time.perf_counter() - t0
            extra = {}
            if getattr(e, "surrogate_r2", None) is not None:
                extra["surrogate_r2"] = [round(float(v), 3) for v in e.surrogate_r2]
            print(json.dumps({"method": name, "forwards_per_image": seen[0] / args.images,
                              "s_per_image": round(dt / args.images, 3), **extra}), flush=True)
    finally:
        cls.forward = original


if __name__ == "__main__":
    main()
