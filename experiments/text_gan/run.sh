#!/usr/bin/env bash
# The runs behind experiments/text_gan/README.md, one at a time under the shared CPU lock.
# One torch thread: the GAN writes sentences position by position (many small ops), which a second
# thread on a busy 2-core machine slows down instead of speeding up.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -d .venv ]; then export PATH="$PWD/.venv/bin:$PATH"; fi
export OMP_NUM_THREADS=1
OUT=outputs/text_gan_experiment
REAL=../shared/data/fortunes/fortunes.txt
# the CPU-sized data config shared by every real-data run: sentences up to 32 tokens, 2000 words
DATA="data.path=$REAL data.max_tokens=32 data.tokenizer.options.max_size=2000"
QUIET="~callbacks.progress_bar logger=[tensorboard,csv]"
# wall-clock measured inside the lock (waiting for other people's runs does not count)
timed() { name=$1; shift; flock /tmp/movielab-cpu.lock /usr/bin/time -f "$name: %e s wall, %U s user" -a -o $OUT/wallclock.txt "$@"; }
mkdir -p $OUT

case "${1:-all}" in
sample|all)
  # the reference config on the bundled sample, shortened to 50 generator steps
  timed sample python -m movielab.train experiment=text_gan \
    trainer.max_steps=350 trainer.val_check_interval=100 hydra.run.dir=$OUT/sample $QUIET ;;&
gan|all)
  # reference GAN (no pre-training) on real fortunes: 400 generator steps
  timed gan python -m movielab.train experiment=text_gan $DATA \
    model.net.config.max_length=32 trainer.max_steps=2800 trainer.val_check_interval=300 \
    hydra.run.dir=$OUT/gan $QUIET ;;&
gan_pretrained|all)
  # the same after 1000 MLE steps of the generator: 200 generator steps
  timed gan_pretrained python -m movielab.train experiment=text_gan $DATA \
    model.net.config.max_length=32 model.pretrain_steps=1000 trainer.max_steps=2400 \
    trainer.val_check_interval=300 hydra.run.dir=$OUT/gan_pretrained $QUIET ;;&
gpt|all)
  # the MLE baseline: the project's GPT on the same sentences, tokenizer and batches
  timed gpt python -m movielab.train data=fortunes model=gpt $DATA \
    model.net.config.block_size=32 trainer.max_steps=1500 trainer.val_check_interval=100 \
    task_name=text_gan_mle hydra.run.dir=$OUT/gpt $QUIET ;;&
evaluate|all)
  timed evaluate python experiments/text_gan/evaluate.py \
    --run gan=$OUT/gan/checkpoints/last.ckpt \
    --run gan_pretrained=$OUT/gan_pretrained/checkpoints/last.ckpt \
    --run gpt=$(ls $OUT/gpt/checkpoints/best-step*.ckpt | tail -1) \
    --out experiments/text_gan/results ;;
esac
