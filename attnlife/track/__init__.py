"""attnlife.track: capture attention, compute metrics over streamed row chunks, track training,
the post-hoc probe pass and generation quality (`generation`).

    from attnlife.track import Tracker, capture_attention
"""
from __future__ import annotations

from attnlife.track.accumulate import AttentionAccumulator
from attnlife.track.capture import capture_attention, site_name
from attnlife.track.metrics import METRIC_REGISTRY, MetricSpec, register_metric
from attnlife.track.summary import attention_summary, summary_table
from attnlife.track.tracker import Tracker

__all__ = ["AttentionAccumulator", "METRIC_REGISTRY", "MetricSpec", "Tracker", "attention_summary",
           "capture_attention", "register_metric", "site_name", "summary_table"]
