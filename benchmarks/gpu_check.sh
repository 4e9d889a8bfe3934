#!/usr/bin/env bash
# GPU checks in one call (target: under 8 minutes on one GPU).
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]        (default OUT_DIR: gpu_check_out)
#
# 1. the CUDA tests of the suite (tests that skip without a GPU);
# 2. CPU/GPU agreement: the quick preset (every method and evaluator it lists) runs on the CPU
#    and on the GPU; every per-sample score must agree to float tolerance; ROAD's imputation
#    (multigrid CG on the GPU, banded Cholesky on the CPU) must agree to 1e-5 on 16 default
#    images (benchmarks/road_devices.py, which also times it and ROAD's forward share per device);
# 3. timings: the quick preset's stage times on both devices, then the default preset on the GPU.
# Figures go to OUT_DIR/gpu_figures.md (and the raw runs under OUT_DIR/runs); copy them into
# benchmarks/RESULTS.md with the date and the machine.
#
# Exit status: 0 all checks passed; 1 a check failed; 2 no usable GPU (nothing was run).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-gpu_check_out}
mkdir -p "$out/runs"
fig="$out/gpu_figures.md"

if ! python - <<'EOF'
import sys
try:
    import torch
except ImportError:
    print("gpu_check: expected an importable torch, got none", file=sys.stderr)
    sys.exit(1)
if not torch.cuda.is_available():
    print(f"gpu_check: expected a CUDA device, got none (torch {torch.__version__}, "
          f"built for CUDA {torch.version.cuda}); nothing was run", file=sys.stderr)
    sys.exit(1)
print(f"gpu_check: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
EOF
then
    exit 2
fi

status=0
export PYTHONUNBUFFERED=1
{
    echo "# GPU check, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    python -c "import torch, platform; print('-', torch.cuda.get_device_name(0), '| torch', torch.__version__, '| CUDA', torch.version.cuda, '| python', platform.python_version())"
    echo "- CPU cores: $(nproc); load: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
} > "$fig"

echo "== 1. CUDA tests"
if python -m pytest tests -q -x -k "cuda or gpu" -p no:cacheprovider 2>&1 | tee "$out/cuda_tests.log"; then
    echo "- CUDA tests: passed ($(grep -E '[0-9]+ passed' "$out/cuda_tests.log" | tail -1))" >> "$fig"
else
    echo "- CUDA tests: FAILED (see cuda_tests.log)" >> "$fig"; status=1
fi

echo "== 2. quick preset on cpu and cuda"
for dev in cpu cuda; do
    python -m gmxai_eval run --preset quick --device "$dev" --output "$out/runs" --run-id "quick-$dev" \
        --cache "$out/runs/.cache-$dev" --no-html --no-progress > "$out/quick-$dev.log" 2>&1 \
        || { echo "quick preset on $dev failed (see quick-$dev.log)"; status=1; }
done

python - "$out" >> "$fig" <<'EOF' || status=1
import json, sys
from pathlib import Path

import pandas as pd

out = Path(sys.argv[1]) / "runs"
try:
    cpu = pd.read_csv(out / "quick-cpu" / "samples.csv")
    gpu = pd.read_csv(out / "quick-cuda" / "samples.csv")
except FileNotFoundError as e:
    print(f"- CPU/GPU agreement: not measured ({e.filename} missing)")
    sys.exit(1)
keys = ["seed", "evaluator", "method", "sample_id"]
m = cpu.merge(gpu, on=keys, suffixes=("_cpu", "_gpu"), how="outer", indicator=True)
bad_rows = int((m["_merge"] != "both").sum())
m = m[m["_merge"] == "both"]
diff = (m["score_cpu"] - m["score_gpu"]).abs()
nan_mismatch = m["score_cpu"].isna() != m["score_gpu"].isna()
tol = 1e-3 + 1e-3 * m["score_cpu"].abs()
m = m.assign(diff=diff, ok=(diff <= tol) | (m["score_cpu"].isna() & m["score_gpu"].isna()))
per = m.groupby(["evaluator", "method"]).agg(max_abs_diff=("diff", "max"), agree=("ok", "mean"))
failed = per[per["agree"] < 1.0]
print(f"\n## CPU/GPU agreement (quick preset, {len(m)} scores, tolerance 1e-3 abs + 1e-3 rel)\n")
print(f"- rows present on one device only: {bad_rows}; NaN on one device only: {int(nan_mismatch.sum())}")
print(f"- (evaluator, method) pairs: {len(per)}; disagreeing: {len(failed)}")
print(f"- largest absolute difference: {float(diff.max()):.3g}")
if len(failed):
    print("\n" + failed.to_markdown())
t = {d: json.loads((out / f"quick-{d}" / "results.json").read_text())["timings"] for d in ("cpu", "cuda")}
print("\n## Quick preset, seconds per stage\n\n| stage | cpu | cuda | cpu/cuda |\n|---|---|---|---|")
for k in t["cpu"]:
    c, g = t["cpu"][k], t["cuda"].get(k, float("nan"))
    print(f"| {k} | {c:.2f} | {g:.2f} | {c / g if g else float('nan'):.1f} |")
sys.exit(1 if bad_rows or int(nan_mismatch.sum()) or len(failed) else 0)
EOF

echo "== 2b. ROAD imputation: cg on cuda against direct on cpu"
{
    echo -e "\n## ROAD imputation and forward share per device (benchmarks/road_devices.py)"
    if python benchmarks/road_devices.py --devices cpu,cuda --images 16 > "$out/road_devices.log" 2>&1; then
        grep -E "^\||^[0-9]+ images|^largest" "$out/road_devices.log"
    else
        echo "- FAILED (see road_devices.log)"; grep -E "^\||^largest" "$out/road_devices.log"
        false
    fi
} >> "$fig" || status=1

echo "== 3. default preset on cuda (timing)"
start=$(date +%s)
if timeout 300 python -m gmxai_eval run --device cuda --output "$out/runs" --run-id default-cuda \
        --cache "$out/runs/.cache-cuda" --no-progress > "$out/default-cuda.log" 2>&1; then
    echo -e "\n## Default preset on cuda\n\n- wall time (data and model from the cache when present): $(( $(date +%s) - start )) s" >> "$fig"
    grep -A20 "time per stage" "$out/default-cuda.log" | sed 's/^/    /' >> "$fig"
else
    echo -e "\n## Default preset on cuda\n\n- did not finish within 300 s (see default-cuda.log)" >> "$fig"; status=1
fi

cat "$fig"
exit $status
