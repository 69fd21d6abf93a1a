"""Generate text from a checkpoint written by ``make train``.

    python -m lstmbook.sample --checkpoint _build/checkpoints/best.pt --prompt "ROMEO:" \
        --length 500 --temperature 0.8

The checkpoint's vocabulary must match the text's (tiny Shakespeare unless ``--text``); the
model is rebuilt from the sizes the checkpoint records. The sampler is ``lstmbook.lm.sample``.
"""
import sys

from .best_model import sample_main

if __name__ == "__main__":
    sys.exit(sample_main())
