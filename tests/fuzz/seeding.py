"""The fuzz seed: random per run (printed), or fixed by PYGDNSD_FUZZ_SEED to replay a failure."""

from __future__ import annotations

import os
import random

SEED_VARIABLE = "PYGDNSD_FUZZ_SEED"


def fuzz_seed() -> int:
    text = os.environ.get(SEED_VARIABLE)
    seed = int(text, 0) if text else random.SystemRandom().getrandbits(32)
    print(f"fuzz seed: {seed} (replay with {SEED_VARIABLE}={seed})")
    return seed
