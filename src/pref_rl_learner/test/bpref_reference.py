"""A faithful reimplementation of B-Pref's scripted teacher, for comparison tests only.

Written from B-Pref's ``RewardModel.get_label`` and the threshold updates of its
``train_PEBBLE.py`` (rll-research/BPref, read 2026-12), in our own code:

- thresholds: ``margin = mean(last 10 episode returns) * segment / episode_length``; before
  the first session ``set_teacher_thres_*(margin)`` gives ``margin * eps``; at every later
  session ``set_teacher_thres_*(margin * eps)`` gives ``margin * eps**2``;
- ``get_label``: drop pairs unless ``max(S1, S2) > thres_skip`` (only when
  ``thres_skip > 0``); equal mask ``|S1 - S2| < thres_equal`` on the kept pairs; myopic
  weights (step k multiplied by γ once per later step); label 1 (second preferred) where
  ``S1_γ < S2_γ`` or, with β > 0, sampled from ``softmax(β [S1_γ, S2_γ])[1]``; flip where
  ``rand <= eps_mistake``; equal-masked labels become -1.
"""

from __future__ import annotations

import numpy as np


class BPrefTeacher:
    """B-Pref's labeller: ``beta <= 0`` is its rational (deterministic) teacher."""

    def __init__(self, beta: float, gamma: float, eps_mistake: float, eps_skip: float,
                 eps_equal: float, rng: np.random.Generator) -> None:
        self.beta, self.gamma, self.eps_mistake = beta, gamma, eps_mistake
        self.eps_skip, self.eps_equal = eps_skip, eps_equal
        self.thres_skip = self.thres_equal = 0.0
        self.rng = rng

    def set_thresholds(self, margin: float, first_session: bool) -> None:
        """What ``train_PEBBLE.py`` does before each session (its setters scale by ε)."""
        given = margin if first_session else margin * self.eps_skip
        self.thres_skip = given * self.eps_skip
        given = margin if first_session else margin * self.eps_equal
        self.thres_equal = given * self.eps_equal

    def get_label(self, r1: np.ndarray, r2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(kept-pair mask, labels of the kept pairs: 0 first, 1 second, -1 equal)."""
        s1, s2 = r1.sum(axis=1), r2.sum(axis=1)
        keep = np.ones(len(r1), bool)
        if self.thres_skip > 0:
            keep = np.maximum(s1, s2) > self.thres_skip
            r1, r2, s1, s2 = r1[keep], r2[keep], s1[keep], s2[keep]
        equal = np.abs(s1 - s2) < self.thres_equal
        t1, t2 = r1.copy(), r2.copy()
        for index in range(r1.shape[1] - 1):
            t1[:, :index + 1] *= self.gamma
            t2[:, :index + 1] *= self.gamma
        g1, g2 = t1.sum(axis=1), t2.sum(axis=1)
        if self.beta > 0:
            logits = self.beta * np.stack([g1, g2], axis=1)
            logits -= logits.max(axis=1, keepdims=True)
            p_second = np.exp(logits[:, 1]) / np.exp(logits).sum(axis=1)
            labels = (self.rng.random(len(g1)) < p_second).astype(int)
        else:
            labels = (g1 < g2).astype(int)
        flip = self.rng.random(len(labels)) <= self.eps_mistake
        labels[flip] = 1 - labels[flip]
        labels[equal] = -1
        return keep, labels
