#!/usr/bin/env bash
# The runs behind experiments/text_gan/README.md, on the shared CPU under its lock.
#   experiments/text_gan/run.sh sample gan                # one lock turn (11 min measured)
#   experiments/text_gan/run.sh gan_pretrained gpt        # a second one (13 min)
#   experiments/text_gan/run.sh gan_400 evaluate          # a third
# Every invocation takes /tmp/movielab-cpu.lock once for all the runs it is given, so other people's
# runs queue between turns, never inside one; each run's wall-clock (measured inside the lock) is
# appended to outputs/text_gan_experiment/wallclock.txt.
# One torch thread: the GAN writes sentences position by position (many small ops), which a second
# thread on a busy 2-core machine slows down instead of speeding up.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ $# -eq 0 ]; then set -- sample gan gan_pretrained gpt gan_400 evaluate; fi
if [ -z "${MOVIELAB_CPU_LOCKED:-}" ]; then
  exec flock /tmp/movielab-cpu.lock env MOVIELAB_CPU_LOCKED=1 "$PWD/experiments/text_gan/run.sh" "$@"
fi
if [ -d .venv ]; then export PATH="$PWD/.venv/bin:$PATH"; fi
export OMP_NUM_THREADS=1
OUT=outputs/text_gan_experiment
REAL=../shared/data/fortunes/fortunes.txt
# the CPU-sized data config shared by every real-data run: sentences up to 32 tokens, 2000 words
DATA="data.path=$REAL data.max_tokens=32 data.tokenizer.options.max_size=2000"
QUIET="~callbacks.progress_bar logger=[tensorboard,csv]"
timed() { name=$1; shift; /usr/bin/time -f "$name: %e s wall, %U s user" -a -o $OUT/wallclock.txt "$@"; }
mkdir -p $OUT

# Sizes measured on the shared 2-core CPU with one thread (next to other people's runs): a GAN batch
# (critic or generator step) on real fortunes takes 0.5-0.9 s, an MLE pre-training step ~0.2 s, a GPT
# step 0.2-0.35 s.
for run in "$@"; do
  case "$run" in
  sample)
    # the reference config on the bundled sample, shortened to 10 generator steps
    timed sample python -m movielab.train experiment=text_gan \
      trainer.max_steps=70 trainer.val_check_interval=30 hydra.run.dir=$OUT/sample $QUIET ;;
  gan)
    # reference GAN (no pre-training) on real fortunes: 180 generator steps (1080 critic steps)
    timed gan python -m movielab.train experiment=text_gan $DATA \
      model.net.config.max_length=32 trainer.max_steps=1260 trainer.val_check_interval=270 \
      hydra.run.dir=$OUT/gan $QUIET ;;
  gan_400)
    # the gan run resumed (exactly) from its last checkpoint up to experiment=text_gan's default
    # 2800 steps: 400 generator steps in all
    timed gan_400 python -m movielab.train experiment=text_gan $DATA \
      model.net.config.max_length=32 trainer.max_steps=2800 trainer.val_check_interval=270 \
      ckpt_path=$OUT/gan/checkpoints/last.ckpt hydra.run.dir=$OUT/gan_400 $QUIET ;;
  gan_pretrained)
    # the same after 1500 MLE steps of the generator, then 105 generator steps (630 critic steps)
    timed gan_pretrained python -m movielab.train experiment=text_gan $DATA \
      model.net.config.max_length=32 model.pretrain_steps=1500 trainer.max_steps=2235 \
      trainer.val_check_interval=300 hydra.run.dir=$OUT/gan_pretrained $QUIET ;;
  gpt)
    # the MLE baseline: the project's GPT on the same sentences, tokenizer and batches
    timed gpt python -m movielab.train data=fortunes model=gpt $DATA \
      model.net.config.block_size=32 trainer.max_steps=1200 trainer.val_check_interval=100 \
      task_name=text_gan_mle hydra.run.dir=$OUT/gpt $QUIET ;;
  evaluate)
    GAN_400=$([ -f $OUT/gan_400/checkpoints/last.ckpt ] && echo yes || true)
    timed evaluate python experiments/text_gan/evaluate.py \
      --run gan_180=$OUT/gan/checkpoints/last.ckpt \
      ${GAN_400:+--run gan_400=$OUT/gan_400/checkpoints/last.ckpt} \
      --run gan_pretrained=$OUT/gan_pretrained/checkpoints/last.ckpt \
      --run gpt="$(ls $OUT/gpt/checkpoints/best-step*.ckpt | tail -1)" \
      --out experiments/text_gan/results ;;
  *) echo "unknown run '$run': sample, gan, gan_pretrained, gpt, gan_400 or evaluate" >&2; exit 2 ;;
  esac
done
