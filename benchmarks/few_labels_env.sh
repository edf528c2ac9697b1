#!/usr/bin/env bash
# The few-label recipe on any env, with the settings of the PushCube few-label run
# (benchmarks/results/pushcube_few_labels/COMMAND.md), unchanged: 20 demonstrations recorded with
# noise 0.3, each marked once by the env's flag standing in for a person; a success classifier
# fitted on them (15 epochs, window 1); SAC with the demonstrations in its replay buffer, one update
# per env step, refits every 3,000 steps with at most 100 queries. Beside it: SAC on the env's dense
# reward with the same demonstrations.
#
#   ENV=PointReach-v0 INPUTS=rgb bash benchmarks/few_labels_env.sh OUT
#   ENV=gymnasium_robotics:FetchReachDense-v4 POLICY=benchmarks.fetch_expert:reach bash benchmarks/few_labels_env.sh OUT
#
# Knobs: ENV, POLICY (expert: the built-in scripted expert, or module:factory), INPUTS (state | rgb:
# what the classifier reads; the policy reads state), STEPS (30000), SEEDS (2), JOBS (2), WORK (/tmp/few_labels_<env>).
# gymnasium-robotics' Fetch needs `pip install gymnasium-robotics 'mujoco<3.4'` (1.4.2 runs on mujoco 3.3).
set -euo pipefail
ENV=${ENV:?set ENV}; OUT=${1:?usage: few_labels_env.sh OUT}
POLICY=${POLICY:-expert}; INPUTS=${INPUTS:-state}; STEPS=${STEPS:-30000}; SEEDS=${SEEDS:-2}; JOBS=${JOBS:-2}
WORK=${WORK:-/tmp/few_labels_${ENV//[:\/]/_}_$INPUTS}
OBS=state; [ "$INPUTS" = state ] || OBS=state+$INPUTS
FULL_LENGTH=(); case "$ENV" in *:*) ;; *) FULL_LENGTH=(--ignore-terminations);; esac  # built-in and ManiSkill ids
mkdir -p "$WORK" "$OUT"
[ -f "$WORK/expert/.done" ] || { rm -rf "$WORK/expert"
  rewardswap collect --env "$ENV" --policy "$POLICY" --noise 0.3 --episodes 20 --seed 0 --obs "$OBS" \
    "${FULL_LENGTH[@]}" --out "$WORK/expert" && touch "$WORK/expert/.done"; }
[ -f "$WORK/$INPUTS.pt" ] || rewardswap train-reward classifier --data "$WORK/expert" --out "$WORK/$INPUTS.pt" \
  --inputs "$INPUTS" --window 1 --epochs 15 --seed 0
cp "$WORK/$INPUTS.report.json" "$OUT/classifier.report.json"
rewardswap bench --env "$ENV" --algo sac --policy-obs state --seeds "$SEEDS" --steps "$STEPS" --eval-freq 5000 \
  --eval-episodes 50 --jobs "$JOBS" --out "$OUT" --resume --checkpoint-every 10000 \
  --algo-kwargs '{"gradient_steps": 8}' \
  --conditions "env@demos=$WORK/expert" \
  "classifier:$WORK/$INPUTS.pt@refit-every=3000@label-budget=100@refit-data=$WORK/expert@demos=$WORK/expert" \
  --names dense_env+demos "${INPUTS}_classifier+demos+refits"
