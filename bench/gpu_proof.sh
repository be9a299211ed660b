#!/bin/sh
# One run of the GPU telemetry on a machine with a real NVIDIA GPU (docs/telemetry.md records the output).
# A helper process takes 4 GiB of GPU memory with PyTorch, so a per-process figure and its owner show up.
set -u
python3 -c 'import torch, os, sys, time
x = torch.empty(4 * 2**30, dtype=torch.uint8, device="cuda"); torch.cuda.synchronize()
print("holder pid", os.getpid(), flush=True); time.sleep(90)' >/tmp/holder.out 2>&1 &
holder=$!
for _ in $(seq 120); do grep -q "holder pid" /tmp/holder.out && break; sleep 0.5; done
cat /tmp/holder.out
echo "== python3 -m console.telemetry.gpu (holder pid $holder)"
python3 -m console.telemetry.gpu
echo "== rc $?"
echo "== nvidia-smi for comparison"
nvidia-smi --query-gpu=name,memory.used,memory.total,driver_version,temperature.gpu,power.draw --format=csv
nvidia-smi --query-compute-apps=pid,used_memory --format=csv
date -u
kill $holder
