"""The capacity benchmark's readers of SIPp's CSV files, pcap files and /proc counters."""

from __future__ import annotations

import struct

import pytest

from benchmarks.sipp_stats import (
    MachineTicks,
    highest_clean,
    last_count,
    pcap_seconds,
    peak,
    percentile,
    process_cpu_ticks,
    read_sipp_csv,
    rtd_samples,
)

STAT = (
    "StartTime;CurrentTime;CurrentCall;SuccessfulCall(C);FailedCall(C);\n"
    "2026-11-30 02:00:00;2026-11-30 02:00:01;12;0;0;\n"
    "2026-11-30 02:00:00;2026-11-30 02:00:02;40;3;1;\n"
    "StartTime;CurrentTime;CurrentCall;SuccessfulCall(C);FailedCall(C);\n"
    "2026-11-30 02:00:00;2026-11-30 02:00:03;7;41;1;\n"
    "2026-11-30 02:00:00;2026-11-30\n"
)

RTT = (
    "Date_ms;response_time_ms;rtd_no\n"
    "1764468000000.100;1.500;1\n"
    "1764468000000.200;20.250;3\n"
    "1764468000001.100;2.500;1\n"
)


def test_given_a_stat_file_with_a_repeated_header_and_a_cut_line_when_read_then_whole_rows_only(
) -> None:
    """The repeated header is skipped, the half-written last line too; the counters are
    the last whole row's, the gauge's peak is over all rows."""
    rows = read_sipp_csv(STAT)
    assert len(rows) == 3
    assert last_count(rows, "SuccessfulCall(C)") == 41
    assert last_count(rows, "FailedCall(C)") == 1
    assert peak(rows, "CurrentCall") == 40
    assert last_count([], "FailedCall(C)") == 0


def test_given_rtt_rows_when_grouped_then_per_timer_milliseconds() -> None:
    """-trace_rtt rows become response times per timer."""
    assert rtd_samples(read_sipp_csv(RTT)) == {"1": [1.5, 2.5], "3": [20.25]}


def test_given_values_when_percentiles_then_linear_between_ranks() -> None:
    """Percentiles interpolate between closest ranks; none of nothing; a bad q raises."""
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 50) == 2.5
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    assert percentile(values, 95) == pytest.approx(3.85)
    assert percentile([], 50) is None
    with pytest.raises(ValueError):
        percentile(values, 101)


def _pcap(order: str, magic: int, stamps: list[tuple[int, int]]) -> bytes:
    data = struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 65535, 1)
    for sec, frac in stamps:
        payload = b"\x00" * 10
        data += struct.pack(order + "IIII", sec, frac, len(payload), len(payload)) + payload
    return data


@pytest.mark.parametrize("order", ["<", ">"])
def test_given_pcap_files_in_either_byte_order_when_measured_then_first_to_last_packet(
        order: str) -> None:
    """Microsecond and nanosecond pcaps in both byte orders; a header alone plays 0 s;
    anything else is refused."""
    assert pcap_seconds(_pcap(order, 0xA1B2C3D4, [(10, 500_000), (12, 0), (18, 250_000)])) \
        == pytest.approx(7.75)
    assert pcap_seconds(_pcap(order, 0xA1B23C4D, [(1, 0), (2, 500_000_000)])) \
        == pytest.approx(1.5)
    assert pcap_seconds(_pcap(order, 0xA1B2C3D4, [])) == 0.0
    with pytest.raises(ValueError):
        pcap_seconds(b"RIFF" + b"\x00" * 40)


def test_given_a_command_name_with_spaces_and_parentheses_when_cpu_read_then_right_fields(
) -> None:
    """utime + stime are counted from the last ')' so a name like "a) (b" cannot shift them."""
    fields = ["S", "1", "1", "1", "0", "-1", "0", "0", "0", "0", "0", "700", "55", "0", "0"]
    assert process_cpu_ticks("4242 (a) (b c) " + " ".join(fields) + " 20 0\n") == 755


def test_given_two_machine_readings_when_compared_then_busy_share() -> None:
    """Busy share of all cores between two /proc/stat readings (idle and iowait are idle)."""
    before = MachineTicks.parse("cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 2 3 4\n")
    after = MachineTicks.parse("cpu  250 0 250 800 100 0 0 0 0 0\n")
    assert before.busy_share(after) == pytest.approx(0.75)
    assert before.busy_share(before) == 0.0


def test_given_ramp_steps_when_one_fails_then_the_highest_clean_step_before_it() -> None:
    """A step that passes after one that failed does not count: the ramp broke there."""
    assert highest_clean([(50, 0), (100, 0), (150, 2), (200, 0)]) == 100
    assert highest_clean([(50, 3)]) == 0
    assert highest_clean([]) == 0


def test_given_a_hold_time_when_the_citizen_scenario_is_built_then_speech_fills_it() -> None:
    """The citizen's pauses add up to the configured hold: the IVR's time, half a second
    after the key 0, then speech pcaps back to back, none paused past its own length."""
    import re

    from benchmarks.capacity import Load, citizen_scenario

    load = Load(sipp=None, target="127.0.0.1:5060", operators=None,  # type: ignore[arg-type]
                hold_s=25.0, ivr_s=3.0, ramp_s=10.0, speech_s=7.05, sample=None,
                pids=dict, channels=lambda: 0)
    xml = citizen_scenario(load)
    pauses = [int(p) for p in re.findall(r'<pause milliseconds="(\d+)"/>', xml)]
    assert pauses[0] == 3000 and pauses[1] == 500
    assert sum(pauses) == pytest.approx(25_000, abs=5)
    assert xml.count("g711a.pcap") == len(pauses) - 2
    assert max(pauses[2:]) <= 7050
    assert "dtmf_2833_0.pcap" in xml


def test_given_queue_logs_of_two_nodes_when_a_desk_has_overlapping_calls_then_each_overlap_counts_once(  # noqa: E501
        tmp_path) -> None:  # noqa: ANN001
    """A desk connected to a second call before its first ended is double-booked, whichever
    node's log holds each call; back-to-back calls, a call never completed and other lines
    count for nothing."""
    from benchmarks.sipp_stats import double_booked

    a = tmp_path / "a_queue_log"
    b = tmp_path / "b_queue_log"
    a.write_text(
        "100|NONE|NONE|NONE|QUEUESTART|\n"
        "110|a-1.1|operators|Desk 7|CONNECT|2|a-1.2|1\n"
        "135|a-1.1|operators|Desk 7|COMPLETECALLER|2|25|1\n"
        "135|a-2.1|operators|Desk 7|CONNECT|1|a-2.2|1\n"  # back to back: not an overlap
        "160|a-2.1|operators|Desk 7|COMPLETEAGENT|1|25|1\n"
        "120|a-3.1|operators|Desk 8|CONNECT|1|a-3.2|1\n"
        "garbage line\n")
    b.write_text(
        "140|b-1.1|operators|Desk 7|CONNECT|1|b-1.2|1\n"  # while a-2.1 talks: counts
        "150|b-1.1|operators|Desk 7|COMPLETECALLER|1|10|1\n"
        "150|b-2.1|operators|Desk 8|CONNECT|1|b-2.2|1\n"  # desk 8's a-3.1 never completed
        "170|b-2.1|operators|Desk 8|COMPLETECALLER|1|20|1\n"
        "145|b-3.1|operators|Desk 9|RINGNOANSWER|1000\n")
    assert double_booked([a]) == 0
    assert double_booked([a, b]) == 1
    assert double_booked([a, b, tmp_path / "missing"]) == 1
