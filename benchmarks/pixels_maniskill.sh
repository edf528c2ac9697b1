#!/usr/bin/env bash
# From pixels on ManiSkill: a success classifier on the camera image replaces the env reward; the
# policy reads state, SAC learns with scripted-expert demonstrations and in-training refits under a
# label budget. Beside it: SAC on the env's dense reward (same budget and seeds) and, as a separate
# bench, PPO on the classifier with refits.
#
#   ENV=PushCube-v1 bash benchmarks/pixels_maniskill.sh [OUT]   (default OUT: benchmarks/results/pushcube_pixels)
#
# Knobs (environment variables): CAMERA (side: envs.make's camera_view), STEPS (60000), SEEDS (2),
# EPISODES (120 expert episodes, noise NOISE=0.3, full length; NOISE=mixed cycles agents.demo.COLLECT_NOISE's
# levels and random actions, the recipe PickCube's classifier needs), EPOCHS (15), WINDOW (1: frames the
# classifier reads), REFIT_EVERY (7500), LABELS (3000), JOBS (2), ALGO_KWARGS ('{"gradient_steps": 8}':
# one SAC update per env step, for every condition), PPO (1: run the PPO bench), SAC (1: run the SAC bench),
# DENSE (1: the dense env reward condition, with the same demonstrations, beside the classifier in the SAC bench).
set -euo pipefail
ENV=${ENV:-PushCube-v1}
OUT=${OUT:-${1:-benchmarks/results/pushcube_pixels}}
CAMERA=${CAMERA:-side}
WORK=${WORK:-/tmp/pixels_${ENV}_$CAMERA}
STEPS=${STEPS:-60000}; SEEDS=${SEEDS:-2}; EPISODES=${EPISODES:-120}; EPOCHS=${EPOCHS:-15}; WINDOW=${WINDOW:-1}
REFIT_EVERY=${REFIT_EVERY:-7500}; LABELS=${LABELS:-3000}; JOBS=${JOBS:-2}; NOISE=${NOISE:-0.3}
ALGO_KWARGS=${ALGO_KWARGS:-'{"gradient_steps": 8}'}
ENV_KWARGS="{\"camera_view\": \"$CAMERA\"}"
PY=${PY:-python}
mkdir -p "$WORK" "$OUT"
if [ ! -f "$WORK/expert/.done" ]; then
  rm -rf "$WORK/expert"
  # Full-length episodes (ignore_terminations), so successful ones hold many success frames.
  $PY - "$ENV" "$WORK/expert" "$EPISODES" "$NOISE" "$CAMERA" <<'PYEOF'
import pathlib, sys, torch
torch.set_num_threads(1)
import collectors, envs
from agents.demo import collect_mixed
env_id, out, episodes, noise, camera = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
if noise == "mixed":
    print(collect_mixed(env_id, pathlib.Path(out), episodes, seed=0, make_kwargs={"camera_view": camera}))
else:
    made = envs.make(env_id, obs="state+rgb", render_size=64, ignore_terminations=True, camera_view=camera)
    # "env_reward": rewards.npy holds the env's dense reward, so the dense condition may take these demonstrations
    env = collectors.TrajectoryRecorder(made, out, metadata={"env": envs.env_spec(env_id, {"camera_view": camera}),
                                                             "env_reward": "dense"})
    collectors.record_episodes(env, lambda e: envs.expert_policy(env, noise=float(noise), seed=e), range(episodes), seed=0)
    env.close()
PYEOF
  touch "$WORK/expert/.done"
fi
[ -f "$WORK/rgb.pt" ] || rewardswap train-reward classifier --data "$WORK/expert" --out "$WORK/rgb.pt" --inputs rgb \
  --window "$WINDOW" --epochs "$EPOCHS" --seed 0 --logdir "$WORK/rgb_tb"
cp "$WORK/rgb.report.json" "$OUT/classifier.report.json"
cp "$WORK/rgb.errors.png" "$OUT/classifier.errors.png"
C="classifier:$WORK/rgb.pt"
if [ "${SAC:-1}" = 1 ]; then
  CONDITIONS=("$C@refit-every=$REFIT_EVERY@label-budget=$LABELS@refit-data=$WORK/expert@demos=$WORK/expert")
  NAMES=(rgb_classifier+demos+refits)
  # the dense reference gets the same demonstrations (their recorded rewards are its reward)
  if [ "${DENSE:-1}" = 1 ]; then CONDITIONS=("env@demos=$WORK/expert" "${CONDITIONS[@]}"); NAMES=(dense_env+demos "${NAMES[@]}"); fi
  rewardswap bench --env "$ENV" --env-kwargs "$ENV_KWARGS" --algo sac --policy-obs state --seeds "$SEEDS" \
    --steps "$STEPS" --eval-freq 10000 --eval-episodes 50 --jobs "$JOBS" --out "$OUT" --resume \
    --algo-kwargs "$ALGO_KWARGS" --conditions "${CONDITIONS[@]}" --names "${NAMES[@]}"
fi
if [ "${PPO:-1}" = 1 ]; then
  rewardswap bench --env "$ENV" --env-kwargs "$ENV_KWARGS" --algo ppo --policy-obs state --seeds 1 --steps "$STEPS" \
    --eval-freq 10000 --eval-episodes 50 --jobs 1 --out "$OUT/ppo" --resume \
    --conditions "$C@refit-every=$REFIT_EVERY@label-budget=$LABELS@refit-data=$WORK/expert" --names rgb_classifier+refits
fi
