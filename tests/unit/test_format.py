from datetime import UTC, datetime, timedelta

from console.present.format import expires_in, human_bytes, human_duration, vram_split

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def test_expires_in():
    assert expires_in(None) == "—"
    assert expires_in(NOW + timedelta(seconds=30), NOW) == "30s"
    assert expires_in(NOW + timedelta(seconds=119), NOW) == "1m59s"
    # minute resolution beyond two minutes: the dashboard does not repaint every second for a countdown
    assert expires_in(NOW + timedelta(seconds=1795), NOW) == "30m"
    assert expires_in(NOW + timedelta(seconds=1786), NOW) == expires_in(NOW + timedelta(seconds=1795), NOW)
    assert expires_in(NOW + timedelta(hours=2, minutes=2), NOW) == "2h02m"
    assert expires_in(NOW - timedelta(seconds=1), NOW) == "stopping…"
    assert expires_in(NOW + timedelta(days=365 * 290), NOW) == "forever"


def test_sizes_and_splits():
    assert human_bytes(None) == "—" and human_bytes(512) == "512 B" and human_bytes(3 * 2**30) == "3.0 GB"
    assert human_duration(59) == "59s" and human_duration(3600) == "1h00m"
    assert vram_split(100, 100) == "100% GPU" and vram_split(100, 0) == "100% CPU"
    assert vram_split(100, 75) == "25%/75% CPU/GPU" and vram_split(None, 5) == "—"
