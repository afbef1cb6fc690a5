package clients

import (
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

// The listener the listener-side questions act as, and the analyst. In the
// test dataset every password equals its user name.
const (
	me      = "u0002"
	analyst = "analyst"
)

// address is the Flight SQL listener's host:port; the test skips without one.
func address(t *testing.T) string {
	t.Helper()
	addr := os.Getenv("SLUICE_FLIGHT_ADDR")
	if addr == "" {
		t.Skip("SLUICE_FLIGHT_ADDR is not set (tests/python/test_client_go.py sets it)")
	}
	return addr
}

func required(t *testing.T, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		t.Fatalf("%s is not set (tests/python/test_client_go.py sets it)", name)
	}
	return v
}

// seed is one question asked of Sluice; its answer goes to SLUICE_ANSWERS under
// name, and the Python wrapper compares it with DuckDB's.
type seed struct {
	name string
	user string
	sql  string
	args []any // string, int64 or time.Time, bound as parameters 0, 1, ...
}

func utc(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// seeds are the questions of tests/python/test_seed_questions.py (same SQL as
// the listener sends it there), plus the parameter and isolation checks whose
// answers DuckDB also gives.
func seeds(t *testing.T) []seed {
	t.Helper()
	end, err := time.Parse("2006-01-02", required(t, "SLUICE_END"))
	if err != nil {
		t.Fatal(err)
	}
	year := end.Year() - 5
	summer := [2]string{fmt.Sprintf("%d-06-01", year+2), fmt.Sprintf("%d-09-01", year+2)}
	day := func(days int) string { return end.AddDate(0, 0, -days).Format("2006-01-02") }
	w := day(7)
	out := []seed{
		{name: "top_artist_in_a_year", user: me, sql: fmt.Sprintf(`
			SELECT a.artist_uri, a.artist_name, count(*) AS plays
			FROM streams s
			JOIN tracks t ON s.track_uri = t.track_uri
			JOIN artists a ON t.artist_uri = a.artist_uri
			WHERE s.ts >= '%d-01-01T00:00:00Z' AND s.ts < '%d-01-01T00:00:00Z'
			GROUP BY a.artist_uri, a.artist_name
			ORDER BY plays DESC, a.artist_uri
			LIMIT 3`, year, year+1)},
		{name: "top_tracks_in_a_date_range", user: me, sql: fmt.Sprintf(`
			SELECT t.track_name, s.track_uri, count(*) AS plays
			FROM streams s JOIN tracks t ON s.track_uri = t.track_uri
			WHERE s.ts BETWEEN '%sT00:00:00Z' AND '%sT00:00:00Z'
			GROUP BY t.track_name, s.track_uri
			ORDER BY plays DESC, s.track_uri LIMIT 10`, summer[0], summer[1])},
		{name: "first_stream_ever", user: me,
			sql: "SELECT track_uri, ts, ms_played FROM streams ORDER BY ts LIMIT 1"},
		{name: "first_and_last_play_of_a_track", user: me,
			sql: "SELECT min(ts) AS first_play, max(ts) AS last_play, count(*) AS plays " +
				"FROM streams WHERE track_uri = ?",
			args: []any{required(t, "SLUICE_TRACK")}},
		{name: "monthly_plays_per_genre", user: me, sql: fmt.Sprintf(`
			SELECT date_trunc('month', s.ts) AS month, a.genre, count(*) AS plays
			FROM streams s
			JOIN tracks t ON s.track_uri = t.track_uri
			JOIN artists a ON t.artist_uri = a.artist_uri
			WHERE s.ts >= '%d-01-01T00:00:00Z'
			GROUP BY 1, 2 ORDER BY 1, 2`, end.Year())},
		{name: "tracks_of_a_favourite_artist_never_played", user: me, sql: `
			SELECT t.track_uri, t.track_name FROM tracks t
			WHERE t.artist_uri = ?
			  AND t.track_uri NOT IN (SELECT track_uri FROM streams)
			ORDER BY t.track_uri`,
			args: []any{required(t, "SLUICE_ARTIST")}},
		{name: "whole_history_count", user: me, sql: "SELECT count(*) FROM streams"},
		{name: "relative_time_with_now", user: me,
			sql: "SELECT count(*) FROM streams WHERE ts >= now() - INTERVAL '7 days'"},
		{name: "analyst_counts_per_user", user: analyst,
			sql: "SELECT user_id, count(*) FROM streams GROUP BY 1 ORDER BY 1"},
		// A string, a timestamp and an int64 parameter in one statement.
		{name: "parameters_of_three_types", user: me,
			sql:  "SELECT count(*) FROM streams WHERE ts >= ? AND ms_played > ? AND track_uri LIKE ?",
			args: []any{utc(t, "2024-01-01T00:00:00Z"), int64(60000), "spotify:track:%"}},
		// A listener naming another listener's rows still gets only its own.
		{name: "isolation_union_with_another_user", user: me,
			sql: "SELECT count(*) FROM (SELECT * FROM streams UNION ALL " +
				"SELECT * FROM streams WHERE user_id = 'u0003')"},
	}
	for _, days := range []int{3, 10, 30} {
		out = append(out, seed{name: fmt.Sprintf("recent_plays_%d_days", days), user: me,
			sql: fmt.Sprintf(`SELECT count(*), sum(ms_played), count(DISTINCT track_uri)
				FROM streams WHERE ts >= '%sT00:00:00Z'`, day(days))})
	}
	for op, name := range map[string]string{"<": "lt", ">=": "ge", "=": "eq"} {
		out = append(out, seed{name: "watermark_" + name, user: analyst,
			sql: fmt.Sprintf("SELECT count(*) FROM streams WHERE ts %s '%sT00:00:00Z'", op, w)})
	}
	return out
}

// answer is one line of SLUICE_ANSWERS.
type answer struct {
	Client  string   `json:"client"`
	Name    string   `json:"name"`
	Columns []string `json:"columns"`
	Types   []string `json:"types"`
	Rows    [][]any  `json:"rows"`
}

var answersMu sync.Mutex

// record appends an answer to SLUICE_ANSWERS (if set) and logs it.
func record(t *testing.T, a answer) {
	t.Helper()
	if a.Rows == nil {
		a.Rows = [][]any{}
	}
	line, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("SEED %s %s %s", a.Client, a.Name, line)
	path := os.Getenv("SLUICE_ANSWERS")
	if path == "" {
		return
	}
	answersMu.Lock()
	defer answersMu.Unlock()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(append(line, '\n')); err != nil {
		t.Fatal(err)
	}
}

// isoTime is the one spelling of an instant in the answers: UTC, microseconds.
func isoTime(v time.Time) string {
	return v.UTC().Format("2006-01-02T15:04:05.000000Z")
}

// cell turns one Arrow value into its JSON form: ints as ints, timestamps as
// isoTime, dates as YYYY-MM-DD.
func cell(col arrow.Array, i int) (any, error) {
	if col.IsNull(i) {
		return nil, nil
	}
	switch c := col.(type) {
	case *array.Int8:
		return int64(c.Value(i)), nil
	case *array.Int16:
		return int64(c.Value(i)), nil
	case *array.Int32:
		return int64(c.Value(i)), nil
	case *array.Int64:
		return c.Value(i), nil
	case *array.Uint8:
		return uint64(c.Value(i)), nil
	case *array.Uint16:
		return uint64(c.Value(i)), nil
	case *array.Uint32:
		return uint64(c.Value(i)), nil
	case *array.Uint64:
		return c.Value(i), nil
	case *array.Float32:
		return float64(c.Value(i)), nil
	case *array.Float64:
		return c.Value(i), nil
	case *array.Boolean:
		return c.Value(i), nil
	case *array.String:
		return c.Value(i), nil
	case *array.LargeString:
		return c.Value(i), nil
	case *array.StringView:
		return c.Value(i), nil
	case *array.Timestamp:
		unit := c.DataType().(*arrow.TimestampType).Unit
		return isoTime(c.Value(i).ToTime(unit)), nil
	case *array.Date32:
		return c.Value(i).ToTime().Format("2006-01-02"), nil
	case *array.Date64:
		return c.Value(i).ToTime().Format("2006-01-02"), nil
	case *array.Dictionary:
		return cell(c.Dictionary(), c.GetValueIndex(i))
	}
	return nil, fmt.Errorf("no JSON form for a %s value", col.DataType())
}

// rowsOf turns record batches into rows of cells.
func rowsOf(t *testing.T, batches []arrow.RecordBatch) [][]any {
	t.Helper()
	var rows [][]any
	for _, b := range batches {
		for i := 0; i < int(b.NumRows()); i++ {
			row := make([]any, b.NumCols())
			for j, col := range b.Columns() {
				v, err := cell(col, i)
				if err != nil {
					t.Fatalf("column %s: %v", b.ColumnName(j), err)
				}
				row[j] = v
			}
			rows = append(rows, row)
		}
	}
	return rows
}

func namesAndTypes(s *arrow.Schema) (names, types []string) {
	for _, f := range s.Fields() {
		names = append(names, f.Name)
		types = append(types, f.Type.String())
	}
	return
}

// paramBatch is the one-row batch of parameters a client sends for args,
// fields named "0", "1", ... as ADBC names them.
func paramBatch(t *testing.T, args []any) arrow.RecordBatch {
	t.Helper()
	fields := make([]arrow.Field, len(args))
	cols := make([]arrow.Array, len(args))
	for i, a := range args {
		var arr arrow.Array
		switch v := a.(type) {
		case string:
			b := array.NewStringBuilder(mem)
			b.Append(v)
			arr = b.NewArray()
		case int64:
			b := array.NewInt64Builder(mem)
			b.Append(v)
			arr = b.NewArray()
		case time.Time:
			typ := &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}
			b := array.NewTimestampBuilder(mem, typ)
			b.Append(arrow.Timestamp(v.UnixMicro()))
			arr = b.NewArray()
		default:
			t.Fatalf("no Arrow type for a parameter of Go type %T", a)
		}
		fields[i] = arrow.Field{Name: fmt.Sprint(i), Type: arr.DataType(), Nullable: true}
		cols[i] = arr
	}
	return array.NewRecordBatch(arrow.NewSchema(fields, nil), cols, 1)
}

func hasTime(args []any) bool {
	for _, a := range args {
		if _, ok := a.(time.Time); ok {
			return true
		}
	}
	return false
}
