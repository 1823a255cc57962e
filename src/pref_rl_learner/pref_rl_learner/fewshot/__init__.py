"""Few-shot preference learning (Hejna & Sadigh, CoRL 2022): multi-task datasets, MAML
reward pretraining and the ``init``/``fewshot`` arms of ``pref-rl train``."""
