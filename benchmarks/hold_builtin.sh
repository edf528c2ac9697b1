#!/usr/bin/env bash
# A learned reward that an agent exploits, and the same reward kept honest by in-training refits
# (under a label budget) and demonstrations: PointReach-v0, reward from rgb, policy on state, SAC.
#
#   bash benchmarks/hold_builtin.sh [OUT]      (default OUT: benchmarks/results/hold_builtin)
#
# 1. 60 expert episodes (noise 0.1, full length) are the classifier's only data and the demonstrations;
# 2. a deliberately weak classifier: 2 epochs on those frames (it has never seen the states an agent finds);
# 3. one bench: dense env reward, the classifier alone, + refits, + refits + demonstrations; 3 seeds, same budget.
set -euo pipefail
OUT=${OUT:-${1:-benchmarks/results/hold_builtin}}
WORK=${WORK:-/tmp/hold_builtin}
PY=${PY:-python}
mkdir -p "$WORK" "$OUT"
if [ ! -d "$WORK/expert" ]; then
  $PY - "$WORK/expert" <<'PYEOF'
import sys
import collectors, envs
env = collectors.TrajectoryRecorder(envs.make("PointReach-v0", obs="state+rgb", ignore_terminations=True), sys.argv[1])
collectors.record_episodes(env, lambda e: envs.expert_policy(env, noise=0.1, seed=e), range(60), seed=0)
env.close()
PYEOF
fi
[ -f "$WORK/weak.pt" ] || rewardswap train-reward classifier --data "$WORK/expert" --out "$WORK/weak.pt" --inputs rgb --epochs 2 --seed 0
C="classifier:$WORK/weak.pt"
rewardswap bench --env PointReach-v0 --algo sac --policy-obs state --seeds 3 --steps 30000 --n-envs 4 \
  --eval-freq 3000 --eval-episodes 20 --jobs 2 --out "$OUT" --resume \
  --algo-kwargs '{"gradient_steps": 2, "batch_size": 128, "policy_kwargs": {"net_arch": [64, 64]}}' \
  --conditions env "$C" "$C@refit-every=2500@label-budget=1500" "$C@refit-every=2500@label-budget=1500@demos=$WORK/expert" \
  --names dense_env classifier classifier+refit classifier+refit+demos
