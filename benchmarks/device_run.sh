#!/usr/bin/env bash
# One prepared run on a lent GPU machine (see docs/benchmarks.md): CUDA correctness checks of the tuner, the tuner
# test suite on that machine's torch, and GPU timings. Wheels of the versions we test with travel in .device/
# (gitignored; the device machine has no network). Fill it for the device's Python (3.12) before the run:
#   pip download --no-deps --only-binary=:all: --python-version 3.12 -d .device \
#       transformers==5.24.0 peft==0.21.2 regex safetensors tokenizers huggingface_hub accelerate av tqdm
# and run it with the `run` tool's carry=[".device"].
# Sections: `bash benchmarks/device_run.sh data` runs the data-path measurements only, `tuner` the tuner's (CLIP),
# `families` the tuner's ratios for MetaCLIP 2, SigLIP and SigLIP 2 at their base geometries; data and tuner by
# default, data first. Each section fits one call of the `run` tool (10 minutes).
set -uo pipefail
SECTIONS=${*:-data tuner}
want() { [[ " $SECTIONS " == *" $1 "* ]]; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .device/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, transformers, peft; print(torch.__version__, transformers.__version__, peft.__version__)" | tee -a "$OUT/gpu.txt"
if want data; then
# Device-side preprocessing (issue 12): per-worker videos/s of the old and new data paths, the device step on the
# GPU and its largest difference from the CPU path; then vop train's data wait at ViT-B/32, bf16, batch 32, with
# the loader workers vop train chooses (target: at most 10% of the training time).
timeout 150 python3 benchmarks/bench_data.py --num-videos 16 --seconds 4 --workers 2 2>&1 | grep -v Warn | tee "$OUT/bench_data.log"
timeout 330 python3 benchmarks/bench_train.py --device cuda --mixed-precision bf16 --batch-size 32 --steps 20 --warmup 5 --num-videos 256 \
    --report-to none --output "$OUT/bench_train_b32_bf16.json" 2>&1 | grep -v Warn | tail -15 | tee "$OUT/bench_train.log"
fi
if want tuner; then
timeout 150 python3 benchmarks/device_check.py --output "$OUT/device_check.json" 2>&1 | grep -v Warning | tee "$OUT/device_check.log"
timeout 120 python3 -m pytest tests/tuner -q -x -p no:cacheprovider -n 8 2>&1 | tail -5 | tee "$OUT/tuner_tests.log"
timeout 120 python3 benchmarks/bench_tuner.py encode train --geometry b32 --device cuda --repeats 15 --output "$OUT/bench_b32_cuda.json" 2>&1 | grep -v Warn | tee "$OUT/bench.log"
timeout 100 python3 benchmarks/bench_tuner.py variants --geometry b32 --device cuda --repeats 7 --output "$OUT/variants_b32_cuda.json" 2>&1 | grep -v Warn | tee -a "$OUT/bench.log"
timeout 120 python3 benchmarks/bench_tuner.py variants --geometry b16 --device cuda --repeats 5 --output "$OUT/variants_b16_cuda.json" 2>&1 | grep -v Warn | tee -a "$OUT/bench.log"
timeout 100 python3 benchmarks/bench_tuner.py encode train --geometry b32 --device cpu --repeats 5 --output "$OUT/bench_b32_cpu16.json" 2>&1 | grep -v Warn | tee -a "$OUT/bench.log"
fi
if want families; then
# Issue 11: encoding, step and peak-memory ratios per backbone family at its base geometry (CLIP is in `tuner`).
for spec in metaclip_2:b32 siglip:b16 siglip2:b16; do
    family=${spec%%:*} geometry=${spec##*:}
    timeout 150 python3 benchmarks/bench_tuner.py encode train --family "$family" --geometry "$geometry" --device cuda \
        --repeats 10 --output "$OUT/bench_${family}_${geometry}_cuda.json" 2>&1 | grep -v Warn | tee -a "$OUT/bench_families.log"
done
fi
