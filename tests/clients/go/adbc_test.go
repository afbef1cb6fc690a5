package clients

// ADBC's Go Flight SQL driver (github.com/apache/arrow-adbc/go/adbc/driver/flightsql):
// through database/sql (sqldriver/flightsql registers it as "flightsql"), and
// through the ADBC API itself for metadata and typed parameters.

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-adbc/go/adbc"
	adbcflightsql "github.com/apache/arrow-adbc/go/adbc/driver/flightsql"
	_ "github.com/apache/arrow-adbc/go/adbc/sqldriver/flightsql"
	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

// dsn is the database/sql data source name for user (password = name).
func dsn(t *testing.T, user, password string) string {
	return fmt.Sprintf("uri=grpc://%s;username=%s;password=%s", address(t), user, password)
}

func openDB(t *testing.T, user string) *sql.DB {
	t.Helper()
	db, err := sql.Open("flightsql", dsn(t, user, user))
	if err != nil {
		t.Fatalf("sql.Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// adbcConn opens an ADBC connection with the Go driver directly.
func adbcConn(t *testing.T, user, password string) (adbc.Connection, error) {
	t.Helper()
	drv := adbcflightsql.NewDriver(mem)
	db, err := drv.NewDatabase(map[string]string{
		adbc.OptionKeyURI:      "grpc://" + address(t),
		adbc.OptionKeyUsername: user,
		adbc.OptionKeyPassword: password,
	})
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { db.Close() })
	cnxn, err := db.Open(context.Background())
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { cnxn.Close() })
	return cnxn, nil
}

func mustAdbcConn(t *testing.T, user string) adbc.Connection {
	t.Helper()
	cnxn, err := adbcConn(t, user, user)
	if err != nil {
		t.Fatalf("ADBC connect as %s: %v", user, err)
	}
	return cnxn
}

// sqlValue turns a database/sql value into the answers' JSON form.
func sqlValue(v any) any {
	switch x := v.(type) {
	case time.Time:
		return isoTime(x)
	case []byte:
		return string(x)
	case int8:
		return int64(x)
	case int16:
		return int64(x)
	case int32:
		return int64(x)
	case float32:
		return float64(x)
	}
	return v
}

// sqlRows runs query through database/sql. With args it prepares the statement
// and runs it once: ADBC's sqldriver (1.12.0) cannot do otherwise, see
// TestADBCDatabaseSQLDriverLimits.
func sqlRows(t *testing.T, db *sql.DB, query string, args ...any) (cols, types []string, out [][]any) {
	t.Helper()
	ctx := context.Background()
	var rows *sql.Rows
	var err error
	if len(args) == 0 {
		rows, err = db.QueryContext(ctx, query)
	} else {
		var stmt *sql.Stmt
		stmt, err = db.PrepareContext(ctx, query)
		if err != nil {
			t.Fatalf("database/sql Prepare %q: %v", query, err)
		}
		defer stmt.Close()
		rows, err = stmt.QueryContext(ctx, args...)
	}
	if err != nil {
		t.Fatalf("database/sql Query %q %v: %v", query, args, err)
	}
	defer rows.Close()
	cols, err = rows.Columns()
	if err != nil {
		t.Fatal(err)
	}
	cts, err := rows.ColumnTypes()
	if err != nil {
		t.Fatal(err)
	}
	for _, ct := range cts {
		types = append(types, ct.DatabaseTypeName())
	}
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		row := make([]any, len(cols))
		for i, v := range vals {
			row[i] = sqlValue(v)
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("database/sql rows %q: %v", query, err)
	}
	return cols, types, out
}

// adbcQuery runs sql through the ADBC statement API, binding args as one
// Arrow batch (how a timestamp parameter is sent: database/sql cannot, see
// TestADBCDatabaseSQLDriverLimits).
func adbcQuery(t *testing.T, cnxn adbc.Connection, query string, args ...any) (*arrow.Schema, []arrow.RecordBatch) {
	t.Helper()
	ctx := context.Background()
	stmt, err := cnxn.NewStatement()
	if err != nil {
		t.Fatal(err)
	}
	defer stmt.Close()
	if err := stmt.SetSqlQuery(query); err != nil {
		t.Fatal(err)
	}
	if len(args) > 0 {
		if err := stmt.Prepare(ctx); err != nil {
			t.Fatalf("ADBC Prepare %q: %v", query, err)
		}
		params := paramBatch(t, args)
		defer params.Release()
		if err := stmt.Bind(ctx, params); err != nil {
			t.Fatalf("ADBC Bind: %v", err)
		}
	}
	rdr, _, err := stmt.ExecuteQuery(ctx)
	if err != nil {
		t.Fatalf("ADBC ExecuteQuery %q %v: %v", query, args, err)
	}
	defer rdr.Release()
	var batches []arrow.RecordBatch
	for rdr.Next() {
		b := rdr.RecordBatch()
		b.Retain()
		batches = append(batches, b)
	}
	if err := rdr.Err(); err != nil {
		t.Fatalf("ADBC stream %q: %v", query, err)
	}
	return rdr.Schema(), batches
}

func TestADBCSeedQuestions(t *testing.T) {
	address(t)
	dbs := map[string]*sql.DB{me: openDB(t, me), analyst: openDB(t, analyst)}
	raw := mustAdbcConn(t, me)
	for _, q := range seeds(t) {
		t.Run(q.name, func(t *testing.T) {
			a := answer{Client: "adbc", Name: q.name}
			if hasTime(q.args) {
				schema, batches := adbcQuery(t, raw, q.sql, q.args...)
				a.Columns, a.Types = namesAndTypes(schema)
				a.Rows = rowsOf(t, batches)
			} else {
				a.Columns, a.Types, a.Rows = sqlRows(t, dbs[q.user], q.sql, q.args...)
			}
			record(t, a)
		})
	}
}

// One prepared statement, bound and run three times through the ADBC API
// (DoPut of the parameters, then GetFlightInfo + DoGet, on the same handle).
func TestADBCPreparedStatementRebinds(t *testing.T) {
	cnxn := mustAdbcConn(t, me)
	ctx := context.Background()
	stmt, err := cnxn.NewStatement()
	if err != nil {
		t.Fatal(err)
	}
	defer stmt.Close()
	if err := stmt.SetSqlQuery("SELECT track_uri FROM tracks ORDER BY track_uri LIMIT ?"); err != nil {
		t.Fatal(err)
	}
	if err := stmt.Prepare(ctx); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	for _, limit := range []int64{1, 3, 2} {
		params := paramBatch(t, []any{limit})
		if err := stmt.Bind(ctx, params); err != nil {
			t.Fatalf("Bind: %v", err)
		}
		rdr, _, err := stmt.ExecuteQuery(ctx)
		if err != nil {
			t.Fatalf("ExecuteQuery with LIMIT %d: %v", limit, err)
		}
		var n int64
		for rdr.Next() {
			n += rdr.RecordBatch().NumRows()
		}
		if err := rdr.Err(); err != nil {
			t.Fatal(err)
		}
		rdr.Release()
		if n != limit {
			t.Errorf("LIMIT %d returned %d rows", limit, n)
		}
	}
}

// database/sql with string and int64 parameters, as a Go program writes them.
func TestADBCDatabaseSQLParameters(t *testing.T) {
	db := openDB(t, me)
	stmt, err := db.Prepare("SELECT count(*) FROM streams WHERE track_uri = ? AND ms_played > ?")
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	defer stmt.Close()
	var n int64
	if err := stmt.QueryRow(required(t, "SLUICE_TRACK"), int64(0)).Scan(&n); err != nil || n == 0 {
		t.Errorf("string + int64 parameters: n=%d err=%v", n, err)
	}
}

// What ADBC's sqldriver (1.12.0) cannot do, whatever the server; each error
// arises in the driver before any call reaches Sluice. Logged for the client
// docs, not failed:
//   - db.Query(sql, args...) binds without preparing, and the driver then takes
//     the bound batch for bulk ingestion ("must set IngestTargetTable");
//   - a *sql.Stmt runs once: closing its rows closes the ADBC statement, so the
//     next Query binds to an unprepared statement (the same error);
//   - a timestamp parameter cannot be bound at all: CheckNamedValue wants an
//     arrow.Timestamp (Sluice declares $1 timestamp[ms, tz=UTC]), and
//     createBoundRecord then builds it without the parameter's type.
//
// Timestamp parameters and rebinding are covered through the ADBC API instead.
func TestADBCDatabaseSQLDriverLimits(t *testing.T) {
	db := openDB(t, me)
	var n int64
	err := db.QueryRow("SELECT count(*) FROM streams WHERE track_uri = ?", "x").Scan(&n)
	t.Logf("db.QueryRow with a string argument: err=%v", err)

	stmt, err := db.Prepare("SELECT track_uri FROM tracks ORDER BY track_uri LIMIT ?")
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	for i, limit := range []int64{1, 2} {
		var uri string
		err := stmt.QueryRow(limit).Scan(&uri)
		t.Logf("*sql.Stmt run %d: err=%v", i+1, err)
	}
	stmt.Close()

	since := utc(t, "2024-01-01T00:00:00Z")
	stmt, err = db.Prepare("SELECT count(*) FROM streams WHERE ts >= ?")
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	defer stmt.Close()
	err = stmt.QueryRow(since).Scan(&n)
	t.Logf("*sql.Stmt with a time.Time: err=%v", err)
	stmt2, err := db.Prepare("SELECT count(*) FROM streams WHERE ts >= ?")
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	defer stmt2.Close()
	err = stmt2.QueryRow(arrow.Timestamp(since.UnixMilli())).Scan(&n)
	t.Logf("*sql.Stmt with an arrow.Timestamp: err=%v", err)
}

func adbcStatus(err error) (adbc.Status, bool) {
	var e adbc.Error
	if errors.As(err, &e) {
		return e.Code, true
	}
	return 0, false
}

func TestADBCWrongPasswordIsUnauthenticated(t *testing.T) {
	_, err := adbcConn(t, me, "wrong")
	if code, _ := adbcStatus(err); code != adbc.StatusUnauthenticated {
		t.Fatalf("ADBC connect with a wrong password: want Unauthenticated, got %v", err)
	}
	if !strings.Contains(err.Error(), "invalid user name or password") {
		t.Errorf("unclear message: %v", err)
	}
	db, err := sql.Open("flightsql", dsn(t, me, "wrong"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Ping()
	if code, _ := adbcStatus(err); code != adbc.StatusUnauthenticated {
		t.Errorf("database/sql Ping with a wrong password: want Unauthenticated, got %v", err)
	}
}

func TestADBCUserMistakesAreInvalidArgument(t *testing.T) {
	db := openDB(t, me)
	for _, c := range []struct{ sql, want string }{
		{"SELEC track_uri FROM streams", "SELEC"},
		{"SELECT * FROM playlists", "playlists"},
		{"SELECT genre FROM streams", "genre"},
		{"SELECT 1; SELECT 2", "several statements"},
	} {
		rows, err := db.Query(c.sql)
		if err == nil {
			for rows.Next() {
			}
			err = rows.Err()
			rows.Close()
		}
		code, ok := adbcStatus(err)
		if !ok || code != adbc.StatusInvalidArgument || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: want InvalidArgument naming %q, got %v", c.sql, c.want, err)
		}
	}
	// Sluice answers these Unimplemented on purpose (gateway/flight/src/error.rs:
	// a read-only gateway), which ADBC reports as NotImplemented.
	for _, c := range []struct{ sql, want string }{
		{"CREATE TABLE mine (a INT)", "read-only"},
		{"INSERT INTO streams VALUES ('u0002', 'x', now(), 1)", "read-only"},
	} {
		_, err := db.Query(c.sql)
		code, ok := adbcStatus(err)
		if !ok || code != adbc.StatusNotImplemented || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: want NotImplemented naming %q, got %v", c.sql, c.want, err)
		}
	}
	var one int64
	if err := db.QueryRow("SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Errorf("SELECT 1 after the errors: %d %v", one, err)
	}
}

func TestADBCListenerSeesOnlyItsOwnRows(t *testing.T) {
	db := openDB(t, me)
	_, _, got := sqlRows(t, db, "SELECT DISTINCT user_id FROM streams")
	if len(got) != 1 || got[0][0] != me {
		t.Errorf("DISTINCT user_id as %s: %v", me, got)
	}
	for _, c := range []struct {
		sql  string
		args []any
	}{
		{"SELECT count(*) FROM streams WHERE user_id = 'u0003'", nil},
		{"SELECT count(*) FROM streams WHERE user_id = ?", []any{"u0003"}},
		{"SELECT count(*) FROM streams WHERE user_id <> ?", []any{me}},
	} {
		if _, _, got := sqlRows(t, db, c.sql, c.args...); len(got) != 1 || got[0][0] != int64(0) {
			t.Errorf("%s %v as %s: want [[0]], got %v", c.sql, c.args, me, got)
		}
	}
}

func TestADBCGetInfo(t *testing.T) {
	cnxn := mustAdbcConn(t, me)
	rdr, err := cnxn.GetInfo(context.Background(), []adbc.InfoCode{
		adbc.InfoVendorName, adbc.InfoVendorVersion, adbc.InfoDriverName})
	if err != nil {
		t.Fatalf("GetInfo: %v", err)
	}
	defer rdr.Release()
	info := map[adbc.InfoCode]string{}
	for rdr.Next() {
		b := rdr.RecordBatch()
		codes := b.Column(0).(*array.Uint32)
		union := b.Column(1).(*array.DenseUnion)
		for i := 0; i < int(b.NumRows()); i++ {
			if s, ok := union.Field(union.ChildID(i)).(*array.String); ok {
				info[adbc.InfoCode(codes.Value(i))] = s.Value(int(union.ValueOffset(i)))
			}
		}
	}
	if err := rdr.Err(); err != nil {
		t.Fatal(err)
	}
	t.Logf("info: %v", info)
	if info[adbc.InfoVendorName] != "Sluice" {
		t.Errorf("vendor name: %q", info[adbc.InfoVendorName])
	}
	if !strings.HasPrefix(info[adbc.InfoDriverName], "ADBC Flight SQL") {
		t.Errorf("driver name: %q", info[adbc.InfoDriverName])
	}
}

// GetObjects' nested result, as RecordToJSON writes it.
type objCatalog struct {
	Name    string `json:"catalog_name"`
	Schemas []struct {
		Name   string `json:"db_schema_name"`
		Tables []struct {
			Name    string `json:"table_name"`
			Type    string `json:"table_type"`
			Columns []struct {
				Name     string `json:"column_name"`
				Position int    `json:"ordinal_position"`
			} `json:"table_columns"`
		} `json:"db_schema_tables"`
	} `json:"catalog_db_schemas"`
}

func TestADBCGetObjects(t *testing.T) {
	cnxn := mustAdbcConn(t, me)
	rdr, err := cnxn.GetObjects(context.Background(), adbc.ObjectDepthAll, nil, nil, nil, nil, nil)
	if err != nil {
		t.Fatalf("GetObjects: %v", err)
	}
	defer rdr.Release()
	var buf bytes.Buffer
	for rdr.Next() {
		if err := array.RecordToJSON(rdr.RecordBatch(), &buf); err != nil {
			t.Fatal(err)
		}
	}
	if err := rdr.Err(); err != nil {
		t.Fatalf("GetObjects stream: %v", err)
	}
	var catalogs []objCatalog
	sc := bufio.NewScanner(&buf)
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		var c objCatalog
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			t.Fatal(err)
		}
		catalogs = append(catalogs, c)
	}
	i := slices.IndexFunc(catalogs, func(c objCatalog) bool { return c.Name == "sluice" })
	if i < 0 {
		t.Fatalf("no catalog sluice in %v", catalogs)
	}
	var schemas, tables, columns []string
	for _, s := range catalogs[i].Schemas {
		schemas = append(schemas, s.Name)
		if s.Name != "public" {
			continue
		}
		for _, tb := range s.Tables {
			tables = append(tables, tb.Name)
			if tb.Name == "streams" {
				for _, c := range tb.Columns {
					columns = append(columns, c.Name)
				}
			}
		}
	}
	slices.Sort(schemas)
	slices.Sort(tables)
	if !slices.Equal(schemas, []string{"information_schema", "public"}) {
		t.Errorf("schemas: %v", schemas)
	}
	if !slices.Equal(tables, []string{"albums", "artists", "plays_daily", "plays_monthly_artist",
		"plays_monthly_genre", "streams", "track_first_last", "tracks"}) {
		t.Errorf("tables: %v", tables)
	}
	if !slices.Equal(columns, []string{"user_id", "track_uri", "ts", "ms_played"}) {
		t.Errorf("streams columns: %v", columns)
	}
}

func TestADBCGetTableSchemaAndTypes(t *testing.T) {
	cnxn := mustAdbcConn(t, me)
	ctx := context.Background()
	catalog, dbSchema := "sluice", "public"
	schema, err := cnxn.GetTableSchema(ctx, &catalog, &dbSchema, "streams")
	if err != nil {
		t.Fatalf("GetTableSchema: %v", err)
	}
	cols, types := namesAndTypes(schema)
	if !slices.Equal(cols, []string{"user_id", "track_uri", "ts", "ms_played"}) ||
		types[2] != "timestamp[ms, tz=UTC]" || types[3] != "int64" {
		t.Errorf("streams schema: %s", schema)
	}
	rdr, err := cnxn.GetTableTypes(ctx)
	if err != nil {
		t.Fatalf("GetTableTypes: %v", err)
	}
	defer rdr.Release()
	var kinds []string
	for rdr.Next() {
		c := rdr.RecordBatch().Column(0).(*array.String)
		for i := 0; i < c.Len(); i++ {
			kinds = append(kinds, c.Value(i))
		}
	}
	if !slices.Equal(kinds, []string{"BASE TABLE", "VIEW"}) {
		t.Errorf("table types: %v", kinds)
	}
}
