"""Prometheus text → MetricsSnapshot: name tables, fallbacks, label sums, garbage."""

from __future__ import annotations

import pytest

from console.engines.metrics import combine_snapshots, parse_metrics
from console.errors import BadResponseError

VLLM = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="smollm2"} 2.0
vllm:num_requests_running{engine="1",model_name="smollm2"} 1.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="smollm2"} 4.0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="smollm2"} 0.25
vllm:kv_cache_usage_perc{engine="1",model_name="smollm2"} 0.75
# TYPE vllm:prompt_tokens counter
vllm:prompt_tokens_total{engine="0",model_name="smollm2"} 120.0
vllm:prompt_tokens_created{engine="0",model_name="smollm2"} 1.7e9
# TYPE vllm:generation_tokens counter
vllm:generation_tokens_total{engine="0",model_name="smollm2"} 80.0
# TYPE vllm:num_preemptions counter
vllm:num_preemptions_total{engine="0",model_name="smollm2"} 3.0
# TYPE vllm:engine_sleep_state gauge
vllm:engine_sleep_state{engine="0",model_name="smollm2",sleep_state="awake"} 1.0
vllm:engine_sleep_state{engine="0",model_name="smollm2",sleep_state="weights_offloaded"} 0.0
vllm:engine_sleep_state{engine="0",model_name="smollm2",sleep_state="discard_all"} 0.0
# TYPE vllm:e2e_request_latency_seconds histogram
vllm:e2e_request_latency_seconds_bucket{le="1.0",model_name="smollm2"} 5.0
vllm:e2e_request_latency_seconds_bucket{le="+Inf",model_name="smollm2"} 6.0
vllm:e2e_request_latency_seconds_count{model_name="smollm2"} 6.0
vllm:e2e_request_latency_seconds_sum{model_name="smollm2"} 3.5
"""


def test_vllm_sums_counts_over_label_sets_and_averages_the_kv_ratio():
    snap = parse_metrics(VLLM, "vllm")
    assert snap.running == 3.0
    assert snap.waiting == 4.0
    assert snap.kv_cache_usage == pytest.approx(0.5)
    assert (snap.prompt_tokens_total, snap.generation_tokens_total, snap.preemptions_total) == (120.0, 80.0, 3.0)
    assert snap.sleeping is False
    assert snap.raw['vllm:num_requests_running{engine="1",model_name="smollm2"}'] == 1.0
    assert snap.raw['vllm:e2e_request_latency_seconds_bucket{le="+Inf",model_name="smollm2"}'] == 6.0


def test_vllm_old_kv_name_is_the_fallback_and_sleep_is_read():
    text = """\
vllm:gpu_cache_usage_perc{model_name="m"} 0.4
vllm:engine_sleep_state{model_name="m",sleep_state="awake"} 0.0
vllm:engine_sleep_state{model_name="m",sleep_state="weights_offloaded"} 1.0
"""
    snap = parse_metrics(text, "vllm")
    assert snap.kv_cache_usage == pytest.approx(0.4)
    assert snap.sleeping is True
    assert snap.running is None  # not reported: None, not 0


def test_llamacpp_names():
    text = """\
# TYPE llamacpp:prompt_tokens_total counter
llamacpp:prompt_tokens_total 31
# TYPE llamacpp:tokens_predicted_total counter
llamacpp:tokens_predicted_total 5
# TYPE llamacpp:requests_processing gauge
llamacpp:requests_processing 2
# TYPE llamacpp:requests_deferred gauge
llamacpp:requests_deferred 1
"""
    snap = parse_metrics(text, "llamacpp", labels={"model": "smol-a"})
    assert (snap.running, snap.waiting, snap.prompt_tokens_total, snap.generation_tokens_total) == (2, 1, 31, 5)
    assert snap.kv_cache_usage is None and snap.sleeping is None
    assert snap.raw['llamacpp:requests_processing{model="smol-a"}'] == 2


def test_sglang_and_tgi_names():
    sg = parse_metrics('sglang:num_running_reqs{tp_rank="0"} 2\nsglang:num_queue_reqs{tp_rank="0"} 5\n'
                       'sglang:token_usage{tp_rank="0"} 0.1\n', "sglang")
    assert (sg.running, sg.waiting, sg.kv_cache_usage) == (2, 5, pytest.approx(0.1))
    tgi = parse_metrics("tgi_queue_size 3\ntgi_batch_current_size 8\ntgi_request_generated_tokens_sum 900\n", "tgi")
    assert (tgi.running, tgi.waiting, tgi.generation_tokens_total) == (8, 3, 900)


def test_nan_is_not_reported_and_empty_text_is_an_empty_snapshot():
    assert parse_metrics("vllm:kv_cache_usage_perc NaN\n", "vllm").kv_cache_usage is None
    empty = parse_metrics("", "vllm")
    assert empty.running is None and empty.raw == {}


@pytest.mark.parametrize("garbage", ["hello world", "<html><body>502 Bad Gateway</body></html>", '{"a": 1}',
                                     "vllm:num_requests_running{engine=0 oops"])
def test_garbage_is_a_bad_response(garbage):
    with pytest.raises(BadResponseError, match="not Prometheus text"):
        parse_metrics(garbage, "vllm", engine="e")


def test_combine_adds_counts_and_averages_ratios():
    a = parse_metrics("llamacpp:requests_processing 1\nllamacpp:kv_cache_usage_ratio 0.2\n", "llamacpp",
                      labels={"model": "a"})
    b = parse_metrics("llamacpp:requests_processing 2\nllamacpp:kv_cache_usage_ratio 0.4\n", "llamacpp",
                      labels={"model": "b"})
    both = combine_snapshots([a, b])
    assert both.running == 3 and both.kv_cache_usage == pytest.approx(0.3)
    assert len(both.raw) == 4
    assert combine_snapshots([]).running is None
