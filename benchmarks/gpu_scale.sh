#!/usr/bin/env bash
# The GPU rows of issues 11 and 18 in one call, on a machine with one CUDA GPU:
#
#   OUT=runs/gpu bash benchmarks/gpu_scale.sh          # from the repository root
#
# Stages, cheapest first, each under its own time limit, so a short lease still brings back the
# first ones (every stage appends JSON lines or writes folders under $OUT; a second call resumes the
# paper study where the first stopped: reproduce resumes killed cells from their checkpoints):
#   1. light tier every step at GPT-2-small shape (12 x 12 x 768, T = 1024, batch 12), CUDA SDPA:
#      our GPT in float32 and bf16 autocast, HF GPT-2 in bf16; measured (synchronised wall) and
#      implied ratios, the bf16 agreement on peaked heads          -> $OUT/scale.jsonl
#   2. probe pass of one Pythia-160m-shaped revision (random weights, real GPT-NeoX safetensors
#      layout, loopback hub) on the GPU: checkpoints per minute and |cuda - cpu| of every row
#                                                                   -> $OUT/hub.jsonl
#   3. the light tier at that shape under torch.compile (fp32, CUDA)     -> $OUT/scale.jsonl
#   4. the `paper` preset on shakespeare_char, $SEEDS seeds (default 3), runs $GPU_RUNS (default 0,1: baseline and
#      tracking): best val loss, train time, tokens/s beside the published 1.47 / 142 s / 420, and the
#      tracking overhead run 1 vs run 0                             -> $OUT/paper/results/
# Then $OUT/summary.md holds the tables (benchmarks' --report) and compare.md; copy its rows into
# BENCHMARKS.md ("Scale" and "paper preset on a GPU") and docs/results.md.
#
# Needs: the project's Python with torch (CUDA build), transformers, huggingface_hub ($PYTHON, else
# python); tiny-shakespeare's input.txt under $ATTNLIFE_SOURCES/shakespeare/ (default: shared/data,
# ../shared/data or data/sources, whichever exists) when the machine has no internet.
# Time: TOTAL_S (default 570, to fit a 10-minute call) bounds the whole call; each light stage gets at
# most LIGHT_S (120), the probe stage PROBE_S (150), the paper study what is left (a rerun with
# STAGES=paper continues it). STAGES (default "light probe compile paper") picks stages.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu_scale}
PY=${PYTHON:-python}
GPU_RUNS=${GPU_RUNS:-0,1}
TOTAL_S=${TOTAL_S:-570}
STAGES=${STAGES:-light probe compile paper}
SEEDS=${SEEDS:-3}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_DISABLE_PROGRESS_BARS=1
if [ -z "${ATTNLIFE_SOURCES:-}" ]; then
    for d in shared/data ../shared/data data/sources; do
        [ -d "$d" ] && export ATTNLIFE_SOURCES="$PWD/$d" && break
    done
fi

left() { echo $((TOTAL_S - SECONDS - 15)); }
stage() {   # stage NAME LIMIT_S COMMAND...: run with a hard limit (never past TOTAL_S), log, record
    local name=$1 limit=$2
    shift 2
    [ "$(left)" -lt "$limit" ] && limit=$(left)
    if [ "$limit" -lt 30 ]; then echo "$name skipped: TOTAL_S spent" | tee -a "$OUT/stages.txt"; return; fi
    local t0=$SECONDS
    timeout -k 10 "$limit" "$@" >>"$OUT/$name.log" 2>&1
    local rc=$?
    echo "$(date -u +%FT%TZ) $name rc=$rc $((SECONDS - t0))s" | tee -a "$OUT/stages.txt"
}

{ nvidia-smi -L; "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"; } \
    >"$OUT/device.txt" 2>&1 || { echo "no CUDA device: see $OUT/device.txt"; exit 2; }

# an array, not a shell function: `timeout` runs a program and cannot run a function
light=("$PY" benchmarks/bench_scale_tracking.py --device cuda --batch 12 --repeats 5 --T 1024 --out "$OUT/scale.jsonl")
case " $STAGES " in *" light "*)
    stage light_fp32 "${LIGHT_S:-120}" "${light[@]}" --model gpt --mode fp32
    stage light_bf16 "${LIGHT_S:-120}" "${light[@]}" --model gpt --mode bf16
    stage light_hf_bf16 "${LIGHT_S:-120}" "${light[@]}" --model hf-gpt2 --mode bf16 --no-full ;; esac
case " $STAGES " in *" probe "*)
    stage probe_160m "${PROBE_S:-150}" "$PY" benchmarks/bench_hub_throughput.py --shape 160m --only-breakdown \
        --device cuda --suites "$OUT/suites" --out "$OUT/hub.jsonl" ;; esac
case " $STAGES " in *" compile "*)
    stage light_compile "${LIGHT_S:-120}" "${light[@]}" --model gpt --mode compile --no-full ;; esac
case " $STAGES " in *" paper "*)
    stage paper "$TOTAL_S" "$PY" -m attnlife reproduce --out "$OUT/paper" --preset paper \
        --datasets shakespeare_char --seeds "$SEEDS" --runs "$GPU_RUNS" --quiet ;; esac

{
    echo "# GPU rows ($(tail -1 "$OUT/device.txt"))"
    echo
    cat "$OUT/stages.txt"
    echo
    [ -f "$OUT/scale.jsonl" ] && "$PY" benchmarks/bench_scale_tracking.py --report "$OUT/scale.jsonl"
    echo
    [ -f "$OUT/hub.jsonl" ] && "$PY" benchmarks/bench_hub_throughput.py --report "$OUT/hub.jsonl"
    echo
    [ -f "$OUT/paper/results/compare.md" ] && cat "$OUT/paper/results/compare.md"
} >"$OUT/summary.md" 2>&1
rm -rf "$OUT/suites"        # the built Pythia-shaped suite (about 0.3 GB)
cat "$OUT/summary.md"
