from pathlib import Path

import pytest

from node_agent.traces import load_trace, parse_rate

VERIZON_DOWN = Path(__file__).parents[1] / "data" / "traces" / "Verizon-LTE-short.down"
MBIT = 1_000_000


@pytest.mark.parametrize(
    ("text", "rate_bps"),
    [
        ("100Mbit", 100 * MBIT),
        ("20Mbps", 20 * MBIT),
        ("5MB/s", 40 * MBIT),
        ("512kbit", 512_000),
        ("1.5Gbit", 1.5e9),
        ("100mbit", 100 * MBIT),
        ("64000", 64_000),
    ],
)
def test_parse_rate_reads_units(text, rate_bps):
    assert parse_rate(text) == pytest.approx(rate_bps)


@pytest.mark.parametrize("text", ["fast", "10Mb", "10 mbit/h", "0Mbit", ""])
def test_parse_rate_rejects_bad_text(text):
    with pytest.raises(ValueError, match="invalid rate"):
        parse_rate(text)


def test_verizon_trace_matches_its_summary():
    trace = load_trace(VERIZON_DOWN)

    mean_bps = sum(trace.rates_bps) / len(trace.rates_bps)
    assert trace.length_s == 140
    assert mean_bps == pytest.approx(5.0 * MBIT, rel=0.02)
    assert min(trace.rates_bps) == pytest.approx(0.3 * MBIT, abs=0.05 * MBIT)
    assert max(trace.rates_bps) == pytest.approx(16.8 * MBIT, abs=0.05 * MBIT)


def test_mahimahi_counts_packets_per_second(tmp_path):
    path = tmp_path / "tiny.down"
    path.write_text("0\n0\n999\n1000\n1500\n2000\n")

    trace = load_trace(path)

    assert trace.rates_bps == (4 * 12_000, 2 * 12_000)
    assert trace.length_s == 2


def test_trace_loops_after_its_end(tmp_path):
    path = tmp_path / "tiny.down"
    path.write_text("0\n0\n1000\n2000\n")
    trace = load_trace(path)

    assert trace.rate_at(0.5) == 36_000
    assert trace.rate_at(1.5) == 12_000
    assert trace.rate_at(2.5) == 36_000


def test_mahimahi_rejects_non_numbers(tmp_path):
    path = tmp_path / "bad.down"
    path.write_text("0\nten\n")

    with pytest.raises(ValueError, match=r"bad.down:2: expected a time"):
        load_trace(path)


def test_csv_steps_hold_until_next(tmp_path):
    path = tmp_path / "steps.csv"
    path.write_text("0,10Mbit\n5,20Mbit\n")

    trace = load_trace(path)

    assert trace.rate_at(3) == 10 * MBIT
    assert trace.rate_at(6) == 20 * MBIT
    assert trace.length_s == 10
    assert trace.rate_at(12) == 10 * MBIT


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("1,10Mbit\n", "must start at second 0"),
        ("0,10Mbit\n0,5Mbit\n", "times must increase"),
        ("0,fast\n", "invalid rate 'fast'"),
        ("0,\n", "invalid rate ''"),
    ],
)
def test_csv_rejects_bad_rows(tmp_path, text, fragment):
    path = tmp_path / "steps.csv"
    path.write_text(text)

    with pytest.raises(ValueError) as info:
        load_trace(path)

    assert fragment in str(info.value)


def test_unit_can_be_required():
    with pytest.raises(ValueError, match="add a unit, e.g. 100Mbit"):
        parse_rate("100", unit_required=True)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0\n5\n3\n", r"bad.trace:3: times must not decrease, got 3 after 5"),
        ("0,1Mbit,extra\n", r"bad.trace:1: expected seconds,rate, got 3 columns"),
        ("# nothing\n\n", r"bad.trace: the trace is empty"),
        ("0,0\n5,0\n", r"bad.trace: every rate is 0"),
        ("seconds,rate\n", r"bad.trace: the first row must start at second 0"),
    ],
)
def test_bad_traces_are_rejected(tmp_path, text, message):
    path = tmp_path / "bad.trace"
    path.write_text(text)

    with pytest.raises(ValueError, match=message):
        load_trace(path)


def test_binary_trace_is_rejected_with_its_name(tmp_path):
    path = tmp_path / "bad.trace"
    path.write_bytes(b"\xff\xfe0\n")

    with pytest.raises(ValueError, match=r"bad.trace: not a text file"):
        load_trace(path)


def test_csv_with_header_comments_and_outage(tmp_path):
    path = tmp_path / "steps.csv"
    path.write_text("# a lab link\nseconds,rate\n0,10Mbit\n5,0\n8,2Mbit\n")

    trace = load_trace(path)

    assert trace.rates_bps == (10 * MBIT, 0.0, 2 * MBIT)
    assert trace.starts_s == (0.0, 5.0, 8.0)
