// Package clients tests Sluice through real Go Flight SQL clients: arrow-go's
// flightsql.Client, and ADBC's Go Flight SQL driver (directly and through
// database/sql).
//
// The tests need a running `sluice serve` over the generated test dataset;
// tests/python/test_client_go.py starts one and runs `go test` with:
//
//	SLUICE_FLIGHT_ADDR  host:port of the Flight SQL listener (plaintext gRPC)
//	SLUICE_END          the dataset's last day, YYYY-MM-DD (UTC)
//	SLUICE_TRACK        the track the listener u0002 played most (from DuckDB)
//	SLUICE_ARTIST       u0002's favourite artist with unplayed tracks (from DuckDB)
//	SLUICE_ANSWERS      a file the seed answers are appended to, one JSON object a line
//
// Without SLUICE_FLIGHT_ADDR every test skips. The answers are checked against
// DuckDB by the Python wrapper; the Go tests check what needs no reference
// engine (codes, messages, schemas, isolation).
package clients
