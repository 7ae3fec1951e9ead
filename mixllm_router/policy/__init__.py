"""Decide: the meta score, the latency penalty and load tracking it reads, the cost-knob curve, decisions.

``S_l = q_l − λ·c_l + α·u_l − β·P_l + γ·κ_l·s_l``, vectorised over queries × candidates
(:mod:`.meta_score`); ``P_l`` from :mod:`.latency`, of the expected waits that :mod:`.load_tracker`
keeps (:mod:`.load` re-exports both); ``λ`` from a target cost share through the curve of
:mod:`.tradeoff`; what a decision records in :mod:`.decision`.
"""

from __future__ import annotations

from .meta_score import ScoreTerms, choose, meta_scores

__all__ = ["ScoreTerms", "choose", "meta_scores"]
