#!/usr/bin/env bash
# Trains the bundled shapes model (Models/shapes-tiny) from random initialisation with this
# project's own trainer, in seven stages, then copies the trained weights into Models/shapes-tiny.
# Every step is seeded: the same commit on the same CPU writes the same weights. Stages 1 and 2
# took 1 hour 50 minutes on a 2-core AMD Zen 4, stages 3 to 5 about 50 minutes each on a 2-core
# AMD Zen 1, stages 6 and 7 about 18 minutes each on a 2-core AMD Zen 5: these CPUs train this
# model at 58 (Zen 1), 128 (Zen 4) and 200 (Zen 5) examples/s (Models/shapes-tiny/README.md
# has the measured runs); that trainer rebuilt the epoch's example order at every step, which
# the twenty-sixth session fixed: the Zen 5 then trained the one-hour run's 680,000 lines at 240.
#
#   scripts/train_shapes_model.sh [WORK_FOLDER]        (default /tmp/shapes-model)
#
# What it runs:
#   1. 184,000 training scenes (seed 1), two questions of each drawn at random (368,000 lines),
#      and 30 validation scenes (seed 2, every question; the first 60 lines give the validation
#      loss every 1,000 steps);
#   2. random weights in the shape Models/shapes-tiny/config.json gives (seed 1), with the
#      tokenizer and preprocessor files beside that config; the <loc> embedding rows start as
#      sinusoids of the coordinate and SigLIP's position embeddings as the 2D sin-cos table of
#      the patch grid, so that near coordinates and near patches start alike;
#   3. stage 1, `paligemma finetune --method full`: AdamW (betas 0.9 / 0.95, weight decay 0.05),
#      peak learning rate 5e-4, 200 warmup steps, then cosine to zero, 23,000 steps of 16
#      examples (one pass), whole images shuffled so that a step sees 8 images and runs the
#      vision tower once for each, the loss averaged over the step's answer tokens, two examples
#      at a time on a 2-core machine;
#   4. stage 2, from stage 1's weights over 200,000 new scenes (seed 4, two questions each):
#      the same settings with a peak learning rate of 3e-4 and 25,000 steps (a fresh optimiser
#      state, warmed up again over 200 steps);
#   5. stage 3, from stage 2's weights over 77,000 new scenes (seed 5), each with its caption and
#      one other question drawn at random (`--questions 2 --always caption`: half the lines are
#      captions, whose left-to-right order the first two stages left the weakest task): peak
#      learning rate 2e-4, 9,600 steps, otherwise the same settings;
#   6. stage 4, from stage 3's weights: stage 3 again over 77,000 new scenes (seed 6);
#   7. stage 5, from stage 4's weights, dwelling on the crowded captions: 40,000 new scenes
#      (seed 7, a caption and one other question each) and 60,000 scenes of 3 or 4 objects
#      (seed 8, `--objects 3-4`, captions only), both files given to one run (`--train` twice:
#      140,000 lines, 71% captions), 8,750 steps (one pass), seed 7, otherwise stage 3's settings;
#   8. stage 6, from stage 5's weights, dwelling on four objects: 60,000 new scenes (seed 9, a
#      caption and one other question each) and 60,000 scenes of 4 objects (seed 10, `--objects
#      4`, captions only): 180,000 lines, 11,250 steps (one pass), seed 9;
#   9. stage 7, from stage 6's weights: stage 6 again over new scenes, the second set of 3 or 4
#      objects (seeds 11 and 12, `--objects 3-4`), seed 11;
#  10. the trained model.safetensors and config.json copied into Models/shapes-tiny, and the
#      loss curves and logs of the seven stages into docs/.
#
#   scripts/train_shapes_model.sh --one-hour [WORK_FOLDER]
#
# runs instead the single-stage recipe measured against the issue's one-hour budget (57 min 46 s
# on a 2-core AMD Zen 5, data included): 300,000 scenes (seed 13, a caption and one other
# question each) and 80,000 captions of 3 or 4 objects (seed 14), then one cosine run of 44,000
# steps from the same random start, its other settings stage 1's. It met every target but the
# boxes' F1 (captions 96.9%, box F1 0.854; Models/shapes-tiny/README.md), so its result stays in
# WORK_FOLDER/hour/model and the bundled weights are the seven stages'.
set -euo pipefail
cd "$(dirname "$0")/.."
ONE_HOUR=0
if [ "${1:-}" = "--one-hour" ]; then
    ONE_HOUR=1
    shift
fi
WORK=${1:-/tmp/shapes-model}
mkdir -p "$WORK"
swift build -c release --product paligemma
P=.build/release/paligemma

# scenes NAME ARGS...: `paligemma shapes ARGS` into $WORK/NAME unless it is there already.
scenes() {
    local name=$1
    shift
    [ -d "$WORK/$name" ] || $P shapes --output "$WORK/$name" "$@"
}
# stage FROM OUT LR STEPS SEED DATA...: one `finetune --method full` from FROM's weights over the
# DATA folders' lines (given in order, drawn from as one set), the settings every stage shares.
stage() {
    local from=$1 out=$2 lr=$3 steps=$4 seed=$5
    shift 5
    local train=()
    for name in "$@"; do train+=(--train "$WORK/$name/data.jsonl"); done
    time $P finetune --model "$from" "${train[@]}" --eval "$WORK/val/val60.jsonl" --eval-every 1000 --eval-tokens 0 \
        --output "$WORK/$out" --overwrite --method full --lr "$lr" --weight-decay 0.05 --adam-beta2 0.95 \
        --batch-size 16 --steps "$steps" --shuffle --group-images --warmup-steps 200 --schedule cosine \
        --average tokens --seed "$seed" --save-every 2000
}

scenes val --count 30 --seed 2
head -60 "$WORK/val/data.jsonl" > "$WORK/val/val60.jsonl"
rm -rf "$WORK/init"
$P random-checkpoint --config Models/shapes-tiny/config.json --dtype f32 --seed 1 --output "$WORK/init" \
    --loc-embeddings sinusoidal --position-embeddings sincos
if [ "$ONE_HOUR" = 1 ]; then
    scenes train300s13 --count 300000 --seed 13 --questions 2 --always caption
    scenes crowded80s14 --count 80000 --seed 14 --objects 3-4 --tasks caption
    stage "$WORK/init" hour 5e-4 44000 13 train300s13 crowded80s14
    echo "trained (one hour); now: $P eval --model $WORK/hour/model --data <fresh scenes>/data.jsonl --group-by shapes"
    exit 0
fi
scenes train184 --count 184000 --seed 1 --questions 2
stage "$WORK/init" run 5e-4 23000 1 train184
scenes train200s4 --count 200000 --seed 4 --questions 2
stage "$WORK/run/model" run2 3e-4 25000 4 train200s4
scenes train77s5 --count 77000 --seed 5 --questions 2 --always caption
stage "$WORK/run2/model" run3 2e-4 9600 5 train77s5
scenes train77s6 --count 77000 --seed 6 --questions 2 --always caption
stage "$WORK/run3/model" run4 2e-4 9600 6 train77s6
scenes train40s7 --count 40000 --seed 7 --questions 2 --always caption
scenes crowded60s8 --count 60000 --seed 8 --objects 3-4 --tasks caption
stage "$WORK/run4/model" run5 2e-4 8750 7 train40s7 crowded60s8
scenes train60s9 --count 60000 --seed 9 --questions 2 --always caption
scenes four60s10 --count 60000 --seed 10 --objects 4 --tasks caption
stage "$WORK/run5/model" run6 2e-4 11250 9 train60s9 four60s10
scenes train60s11 --count 60000 --seed 11 --questions 2 --always caption
scenes crowded60s12 --count 60000 --seed 12 --objects 3-4 --tasks caption
stage "$WORK/run6/model" run7 2e-4 11250 11 train60s11 crowded60s12
cp "$WORK/run7/model/model.safetensors" "$WORK/run7/model/config.json" Models/shapes-tiny/
cp "$WORK/run/loss.png" docs/shapes-model-loss.png
LOG='import json,sys; [print(json.dumps({k: r[k] for k in ("step","loss","lr","grad_norm","seconds","eval_loss") if k in r}, separators=(",",":"))) for r in map(json.loads, sys.stdin)]'
python3 -c "$LOG" < "$WORK/run/training_log.jsonl" > docs/shapes-model-training-log.jsonl
for n in 2 3 4 5 6 7; do
    cp "$WORK/run$n/loss.png" "docs/shapes-model-loss-stage$n.png"
    python3 -c "$LOG" < "$WORK/run$n/training_log.jsonl" > "docs/shapes-model-training-log-stage$n.jsonl"
done
echo "trained; now: $P eval --data <fresh scenes>/data.jsonl --group-by shapes"
