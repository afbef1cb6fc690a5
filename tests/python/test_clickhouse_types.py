"""The types current ClickHouse servers return and 18.16 never did, as the servers send them:
each case's `Native` bytes, asked of the real 18.16 server and of the 26.9 engine, equal the
files under tests/golden/native/<version>/, and its `ArrowStream` bytes from 26.9 (with the
settings Sluice sends) those under tests/golden/arrow_stream/26.9/ (SLUICE_BLESS=1 writes
them). The Rust decoders' unit tests (`types_as_the_servers_send_them` in
connectors/clickhouse/src/native.rs and src/arrow.rs) read those files: each type is decoded or
refused with an error naming its column."""

import os
import urllib.request

import pytest

from conftest import REPO, SERVER_18

GOLDEN = REPO / "tests" / "golden" / "native"
GOLDEN_ARROW = REPO / "tests" / "golden" / "arrow_stream"

# name -> (SELECT, whether 18.16 has the type). Every column is named `v`.
CASES = {
    "datetime64_3": ("SELECT toDateTime64('2020-01-02 03:04:05.123', 3, 'UTC') AS v", False),
    "datetime64_1": ("SELECT toDateTime64('2020-01-02 03:04:05.5', 1, 'UTC') AS v", False),
    "datetime64_6": ("SELECT toDateTime64('1969-12-31 23:59:59.999999', 6, 'UTC') AS v", False),
    "date32": ("SELECT toDate32('1900-01-02') AS v", False),
    "nullable_nothing": ("SELECT NULL AS v FROM system.numbers LIMIT 2", True),
    "array_nothing": ("SELECT [] AS v", True),
    "low_cardinality_nullable": (
        "SELECT CAST(arrayJoin(['a', NULL, 'b', 'a']) AS LowCardinality(Nullable(String))) AS v",
        False),
    "map": ("SELECT map('a', 1) AS v", False),
    "tuple": ("SELECT tuple(1, 'a') AS v", True),
    "uuid": ("SELECT toUUID('61f0c404-5cb3-11e7-907b-a6006ad3dba0') AS v", True),
    "ipv4": ("SELECT toIPv4('1.2.3.4') AS v", False),
    "int128": ("SELECT toInt128(-5) AS v", False),
    "uint256": ("SELECT toUInt256(7) AS v", False),
}


# What Sluice sends with an ArrowStream read (connectors/clickhouse/src/arrow_stream.rs).
ARROW_SETTINGS = ("output_format_arrow_string_as_string = 1, "
                  "output_format_arrow_low_cardinality_as_dictionary = 0, "
                  "output_format_arrow_compression_method = 'none'")


def fetch(clickhouse, sql, wire="Native"):
    settings = f" SETTINGS {ARROW_SETTINGS}" if wire == "ArrowStream" else ""
    req = urllib.request.Request(clickhouse.url + "/",
                                 data=f"{sql}{settings} FORMAT {wire}".encode())
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.read()


def compare_golden(path, got):
    if os.environ.get("SLUICE_BLESS"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(got)
    assert path.exists(), f"{path} is missing; SLUICE_BLESS=1 writes it"
    assert got == path.read_bytes(), f"{path.name} changed; SLUICE_BLESS=1 regenerates it"


@pytest.mark.parametrize("case", sorted(CASES))
def test_native_bytes_are_what_the_server_sends(clickhouse, case):
    sql, on_18 = CASES[case]
    if clickhouse.version == SERVER_18 and not on_18:
        pytest.skip(f"18.16 has no such type: {sql}")
    compare_golden(GOLDEN / clickhouse.version / f"{case}.native", fetch(clickhouse, sql))


@pytest.mark.parametrize("case", sorted(CASES))
def test_arrow_stream_bytes_are_what_the_server_sends(clickhouse, case):
    """Servers from 23.x answer Sluice in ArrowStream: the same cases in that format."""
    if clickhouse.version == SERVER_18:
        pytest.skip("18.16 is read in Native")
    compare_golden(GOLDEN_ARROW / clickhouse.version / f"{case}.arrows",
                   fetch(clickhouse, CASES[case][0], "ArrowStream"))
