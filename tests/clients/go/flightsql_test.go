package clients

// arrow-go's Flight SQL client (github.com/apache/arrow-go/v18/arrow/flight/flightsql).

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/flight"
	"github.com/apache/arrow-go/v18/arrow/flight/flightsql"
	"github.com/apache/arrow-go/v18/arrow/flight/flightsql/schema_ref"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

var mem = memory.DefaultAllocator

// session is a flightsql.Client and the context carrying its bearer token.
type session struct {
	cl  *flightsql.Client
	ctx context.Context
}

func dial(t *testing.T) *flightsql.Client {
	t.Helper()
	cl, err := flightsql.NewClient(address(t), nil, nil,
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("flightsql.NewClient: %v", err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// login connects as user (password = name) with a Basic-auth Handshake; the
// returned context carries the token the server sent back.
func login(t *testing.T, user string) session {
	t.Helper()
	cl := dial(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	ctx, err := cl.Client.AuthenticateBasicToken(ctx, user, user)
	if err != nil {
		t.Fatalf("Handshake as %s: %v", user, err)
	}
	return session{cl, ctx}
}

// fetch reads every endpoint of info. It fails the test (non-fatally) when a
// DoGet stream's schema differs from the schema FlightInfo announced.
func (s session) fetch(t *testing.T, info *flight.FlightInfo) (*arrow.Schema, []arrow.RecordBatch) {
	t.Helper()
	announced, err := flight.DeserializeSchema(info.Schema, mem)
	if err != nil {
		t.Fatalf("FlightInfo schema: %v", err)
	}
	schema := announced
	var batches []arrow.RecordBatch
	for _, ep := range info.Endpoint {
		rdr, err := s.cl.DoGet(s.ctx, ep.Ticket)
		if err != nil {
			t.Fatalf("DoGet: %v", err)
		}
		if !rdr.Schema().Equal(announced) {
			t.Errorf("DoGet schema differs from FlightInfo schema:\n DoGet:      %s\n FlightInfo: %s",
				rdr.Schema(), announced)
		}
		schema = rdr.Schema()
		for rdr.Next() {
			b := rdr.RecordBatch()
			b.Retain()
			batches = append(batches, b)
		}
		if err := rdr.Err(); err != nil {
			t.Fatalf("DoGet stream: %v", err)
		}
		rdr.Release()
	}
	return schema, batches
}

// query runs sql: CommandStatementQuery without args, otherwise a prepared
// statement with the args bound (DoPut) before GetFlightInfo.
func (s session) query(t *testing.T, sql string, args ...any) (*arrow.Schema, []arrow.RecordBatch) {
	t.Helper()
	if len(args) == 0 {
		info, err := s.cl.Execute(s.ctx, sql)
		if err != nil {
			t.Fatalf("Execute %q: %v", sql, err)
		}
		return s.fetch(t, info)
	}
	stmt, err := s.cl.Prepare(s.ctx, sql)
	if err != nil {
		t.Fatalf("Prepare %q: %v", sql, err)
	}
	defer stmt.Close(s.ctx)
	params := paramBatch(t, args)
	defer params.Release()
	stmt.SetParameters(params)
	info, err := stmt.Execute(s.ctx)
	if err != nil {
		t.Fatalf("prepared Execute %q with %v: %v", sql, args, err)
	}
	return s.fetch(t, info)
}

func (s session) rows(t *testing.T, sql string, args ...any) [][]any {
	t.Helper()
	_, batches := s.query(t, sql, args...)
	return rowsOf(t, batches)
}

func TestFlightSQLSeedQuestions(t *testing.T) {
	address(t)
	sessions := map[string]session{me: login(t, me), analyst: login(t, analyst)}
	for _, q := range seeds(t) {
		t.Run(q.name, func(t *testing.T) {
			s := session{sessions[q.user].cl, sessions[q.user].ctx}
			schema, batches := s.query(t, q.sql, q.args...)
			names, types := namesAndTypes(schema)
			record(t, answer{Client: "flightsql", Name: q.name, Columns: names, Types: types,
				Rows: rowsOf(t, batches)})
		})
	}
}

func TestFlightSQLWrongPasswordIsUnauthenticated(t *testing.T) {
	cl := dial(t)
	_, err := cl.Client.AuthenticateBasicToken(context.Background(), me, "wrong")
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("Handshake with a wrong password: want Unauthenticated, got %v", err)
	}
	if !strings.Contains(err.Error(), "invalid user name or password") {
		t.Errorf("unclear message: %v", err)
	}
}

func TestFlightSQLCallsWithoutATokenAreUnauthenticated(t *testing.T) {
	cl := dial(t)
	_, err := cl.Execute(context.Background(), "SELECT 1")
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("GetFlightInfo without a token: want Unauthenticated, got %v", err)
	}
}

func TestFlightSQLUserMistakesAreInvalidArgument(t *testing.T) {
	s := login(t, me)
	for _, c := range []struct{ sql, want string }{
		{"SELEC track_uri FROM streams", "SELEC"},
		{"SELECT * FROM playlists", "playlists"},
		{"SELECT genre FROM streams", "genre"},
	} {
		_, err := s.cl.Execute(s.ctx, c.sql)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Execute %q: want InvalidArgument naming %q, got %v", c.sql, c.want, err)
		}
		_, err = s.cl.Prepare(s.ctx, c.sql)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Prepare %q: want InvalidArgument naming %q, got %v", c.sql, c.want, err)
		}
	}
	// A parameter of the wrong type.
	stmt, err := s.cl.Prepare(s.ctx, "SELECT count(*) FROM streams WHERE ts >= ?")
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	defer stmt.Close(s.ctx)
	params := paramBatch(t, []any{"not a date"})
	defer params.Release()
	stmt.SetParameters(params)
	info, err := stmt.Execute(s.ctx)
	if err == nil {
		_, err = s.cl.DoGet(s.ctx, info.Endpoint[0].Ticket)
	}
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "parameter $1") {
		t.Errorf("a string for a timestamp parameter: want InvalidArgument naming parameter $1, got %v", err)
	}
	// Still serving on the same session.
	if got := s.rows(t, "SELECT 1"); len(got) != 1 || got[0][0] != int64(1) {
		t.Errorf("SELECT 1 after the errors: %v", got)
	}
}

func TestFlightSQLListenerSeesOnlyItsOwnRows(t *testing.T) {
	s := login(t, me)
	if got := s.rows(t, "SELECT DISTINCT user_id FROM streams"); len(got) != 1 || got[0][0] != me {
		t.Errorf("DISTINCT user_id as %s: %v", me, got)
	}
	for _, c := range []struct {
		sql  string
		args []any
	}{
		{"SELECT count(*) FROM streams WHERE user_id = 'u0003'", nil},
		{"SELECT count(*) FROM streams WHERE user_id <> ?", []any{me}},
		{"SELECT count(*) FROM streams s WHERE EXISTS (SELECT 1 FROM streams o " +
			"WHERE o.user_id = 'u0005' AND o.track_uri = s.track_uri)", nil},
	} {
		if got := s.rows(t, c.sql, c.args...); len(got) != 1 || got[0][0] != int64(0) {
			t.Errorf("%s %v as %s: want [[0]], got %v", c.sql, c.args, me, got)
		}
	}
}

func TestFlightSQLPreparedStatementRebinds(t *testing.T) {
	s := login(t, me)
	stmt, err := s.cl.Prepare(s.ctx, "SELECT track_uri FROM tracks ORDER BY track_uri LIMIT ?")
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	defer stmt.Close(s.ctx)
	t.Logf("parameter schema: %v; dataset schema: %v", stmt.ParameterSchema(), stmt.DatasetSchema())
	for _, limit := range []int64{1, 3, 2} {
		params := paramBatch(t, []any{limit})
		stmt.SetParameters(params)
		info, err := stmt.Execute(s.ctx)
		if err != nil {
			t.Fatalf("Execute with LIMIT %d: %v", limit, err)
		}
		_, batches := s.fetch(t, info)
		if n := len(rowsOf(t, batches)); int64(n) != limit {
			t.Errorf("LIMIT %d returned %d rows", limit, n)
		}
		params.Release()
	}
}

func TestFlightSQLPreparedStatementReportsSchemas(t *testing.T) {
	s := login(t, me)
	stmt, err := s.cl.Prepare(s.ctx,
		"SELECT track_uri, ts, ms_played FROM streams WHERE ts >= ? AND ms_played > ? AND track_uri LIKE ?")
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	defer stmt.Close(s.ctx)
	ds := stmt.DatasetSchema()
	if ds == nil {
		t.Fatal("CreatePreparedStatement returned no dataset_schema")
	}
	names, types := namesAndTypes(ds)
	if !slices.Equal(names, []string{"track_uri", "ts", "ms_played"}) ||
		types[1] != "timestamp[ms, tz=UTC]" || types[2] != "int64" {
		t.Errorf("dataset schema: %v", ds)
	}
	ps := stmt.ParameterSchema()
	if ps == nil || len(ps.Fields()) != 3 {
		t.Errorf("parameter schema: want 3 fields, got %v", ps)
	}
	t.Logf("parameter schema: %v", ps)
}

// strings of one column of a metadata result.
func column(t *testing.T, schema *arrow.Schema, batches []arrow.RecordBatch, name string) []string {
	t.Helper()
	idx := schema.FieldIndices(name)
	if len(idx) != 1 {
		t.Fatalf("no column %q in %s", name, schema)
	}
	var out []string
	for _, b := range batches {
		col := b.Column(idx[0])
		for i := 0; i < col.Len(); i++ {
			if col.IsNull(i) {
				out = append(out, "<null>")
				continue
			}
			switch c := col.(type) {
			case *array.String:
				out = append(out, c.Value(i))
			default:
				t.Fatalf("column %q is %s, not utf8", name, col.DataType())
			}
		}
	}
	return out
}

func mustEqualSchema(t *testing.T, what string, got, want *arrow.Schema) {
	t.Helper()
	if !got.Equal(want) {
		t.Errorf("%s result schema differs from the reference:\n got:  %s\n want: %s", what, got, want)
	}
}

func TestFlightSQLGetCatalogs(t *testing.T) {
	s := login(t, me)
	info, err := s.cl.GetCatalogs(s.ctx)
	if err != nil {
		t.Fatalf("GetCatalogs: %v", err)
	}
	schema, batches := s.fetch(t, info)
	mustEqualSchema(t, "GetCatalogs", schema, schema_ref.Catalogs)
	if got := column(t, schema, batches, "catalog_name"); !slices.Contains(got, "sluice") {
		t.Errorf("catalogs: %v", got)
	}
}

func TestFlightSQLGetDBSchemas(t *testing.T) {
	s := login(t, me)
	catalog := "sluice"
	info, err := s.cl.GetDBSchemas(s.ctx, &flightsql.GetDBSchemasOpts{Catalog: &catalog})
	if err != nil {
		t.Fatalf("GetDbSchemas: %v", err)
	}
	schema, batches := s.fetch(t, info)
	mustEqualSchema(t, "GetDbSchemas", schema, schema_ref.DBSchemas)
	got := column(t, schema, batches, "db_schema_name")
	slices.Sort(got)
	if !slices.Equal(got, []string{"information_schema", "public"}) {
		t.Errorf("schemas of catalog sluice: %v", got)
	}
	pattern := "pub%"
	info, err = s.cl.GetDBSchemas(s.ctx, &flightsql.GetDBSchemasOpts{DbSchemaFilterPattern: &pattern})
	if err != nil {
		t.Fatalf("GetDbSchemas with a pattern: %v", err)
	}
	schema, batches = s.fetch(t, info)
	if got := column(t, schema, batches, "db_schema_name"); !slices.Equal(got, []string{"public"}) {
		t.Errorf("schemas matching %q: %v", pattern, got)
	}
}

func TestFlightSQLGetTablesWithSchema(t *testing.T) {
	s := login(t, me)
	catalog, dbSchema := "sluice", "public"
	info, err := s.cl.GetTables(s.ctx, &flightsql.GetTablesOpts{
		Catalog: &catalog, DbSchemaFilterPattern: &dbSchema, IncludeSchema: true})
	if err != nil {
		t.Fatalf("GetTables: %v", err)
	}
	schema, batches := s.fetch(t, info)
	mustEqualSchema(t, "GetTables(include_schema)", schema, schema_ref.TablesWithIncludedSchema)
	names := column(t, schema, batches, "table_name")
	want := []string{"albums", "artists", "plays_daily", "plays_monthly_artist",
		"plays_monthly_genre", "streams", "track_first_last", "tracks"}
	sorted := slices.Clone(names)
	slices.Sort(sorted)
	if !slices.Equal(sorted, want) {
		t.Errorf("tables of sluice.public: %v", names)
	}
	// The streams table's schema, IPC-encoded in table_schema.
	var streams *arrow.Schema
	for _, b := range batches {
		tn := b.Column(schema.FieldIndices("table_name")[0]).(*array.String)
		ts := b.Column(schema.FieldIndices("table_schema")[0]).(*array.Binary)
		for i := 0; i < tn.Len(); i++ {
			if tn.Value(i) == "streams" {
				streams, err = flight.DeserializeSchema(ts.Value(i), mem)
				if err != nil {
					t.Fatalf("table_schema of streams: %v", err)
				}
			}
		}
	}
	if streams == nil {
		t.Fatal("no streams row")
	}
	cols, types := namesAndTypes(streams)
	if !slices.Equal(cols, []string{"user_id", "track_uri", "ts", "ms_played"}) {
		t.Errorf("streams columns: %v", cols)
	}
	if types[2] != "timestamp[ms, tz=UTC]" || types[3] != "int64" {
		t.Errorf("streams types: %v", types)
	}
	remarks, _ := streams.Field(2).Metadata.GetValue("ARROW:FLIGHT:SQL:REMARKS")
	if !strings.Contains(remarks, "UTC") {
		t.Errorf("ts has no remarks naming UTC: %q", remarks)
	}

	// Without include_schema, and filtered by name pattern and type.
	pattern, kind := "plays%", []string{"VIEW"}
	info, err = s.cl.GetTables(s.ctx, &flightsql.GetTablesOpts{TableNameFilterPattern: &pattern})
	if err != nil {
		t.Fatalf("GetTables by pattern: %v", err)
	}
	schema, batches = s.fetch(t, info)
	mustEqualSchema(t, "GetTables", schema, schema_ref.Tables)
	got := column(t, schema, batches, "table_name")
	slices.Sort(got)
	if !slices.Equal(got, []string{"plays_daily", "plays_monthly_artist", "plays_monthly_genre"}) {
		t.Errorf("tables matching %q: %v", pattern, got)
	}
	info, err = s.cl.GetTables(s.ctx, &flightsql.GetTablesOpts{DbSchemaFilterPattern: &dbSchema, TableTypes: kind})
	if err != nil {
		t.Fatalf("GetTables of type VIEW: %v", err)
	}
	schema, batches = s.fetch(t, info)
	for _, typ := range column(t, schema, batches, "table_type") {
		if typ != "VIEW" {
			t.Errorf("GetTables(table_types=[VIEW]) returned a %q", typ)
		}
	}
}

func TestFlightSQLGetTableTypes(t *testing.T) {
	s := login(t, me)
	info, err := s.cl.GetTableTypes(s.ctx)
	if err != nil {
		t.Fatalf("GetTableTypes: %v", err)
	}
	schema, batches := s.fetch(t, info)
	mustEqualSchema(t, "GetTableTypes", schema, schema_ref.TableTypes)
	if got := column(t, schema, batches, "table_type"); !slices.Equal(got, []string{"BASE TABLE", "VIEW"}) {
		t.Errorf("table types: %v", got)
	}
}

func TestFlightSQLGetSqlInfo(t *testing.T) {
	s := login(t, me)
	info, err := s.cl.GetSqlInfo(s.ctx, []flightsql.SqlInfo{
		flightsql.SqlInfoFlightSqlServerName,
		flightsql.SqlInfoFlightSqlServerVersion,
		flightsql.SqlInfoFlightSqlServerArrowVersion,
		flightsql.SqlInfoFlightSqlServerReadOnly,
	})
	if err != nil {
		t.Fatalf("GetSqlInfo: %v", err)
	}
	schema, batches := s.fetch(t, info)
	// arrow-go's reference makes the union's string_list and int32_to_int32_list_map
	// members non-nullable; arrow-rs's SqlInfo builder (Sluice's) makes them nullable.
	// The Flight SQL spec does not say, and the Go clients read either: compare all
	// else exactly.
	if !sameSqlInfoShape(schema, schema_ref.SqlInfo) {
		t.Errorf("GetSqlInfo result schema differs from the reference:\n got:  %s\n want: %s",
			schema, schema_ref.SqlInfo)
	}
	values := map[flightsql.SqlInfo]any{}
	for _, b := range batches {
		names := b.Column(0).(*array.Uint32)
		union := b.Column(1).(*array.DenseUnion)
		for i := 0; i < int(b.NumRows()); i++ {
			child := union.Field(union.ChildID(i))
			off := int(union.ValueOffset(i))
			switch c := child.(type) {
			case *array.String:
				values[flightsql.SqlInfo(names.Value(i))] = c.Value(off)
			case *array.Boolean:
				values[flightsql.SqlInfo(names.Value(i))] = c.Value(off)
			default:
				values[flightsql.SqlInfo(names.Value(i))] = child.DataType().String()
			}
		}
	}
	t.Logf("sql info: %v", values)
	if values[flightsql.SqlInfoFlightSqlServerName] != "Sluice" {
		t.Errorf("server name: %v", values[flightsql.SqlInfoFlightSqlServerName])
	}
	if v, _ := values[flightsql.SqlInfoFlightSqlServerVersion].(string); v == "" {
		t.Errorf("server version: %v", values[flightsql.SqlInfoFlightSqlServerVersion])
	}
	if values[flightsql.SqlInfoFlightSqlServerReadOnly] != true {
		t.Errorf("read-only: %v", values[flightsql.SqlInfoFlightSqlServerReadOnly])
	}
}

// sameSqlInfoShape compares SqlInfo schemas exactly except for the nullability of
// the value union's members.
func sameSqlInfoShape(got, want *arrow.Schema) bool {
	if len(got.Fields()) != 2 || !got.Field(0).Equal(want.Field(0)) ||
		got.Field(1).Name != want.Field(1).Name || got.Field(1).Nullable != want.Field(1).Nullable {
		return false
	}
	gu, ok := got.Field(1).Type.(*arrow.DenseUnionType)
	wu := want.Field(1).Type.(*arrow.DenseUnionType)
	if !ok || !slices.Equal(gu.TypeCodes(), wu.TypeCodes()) || len(gu.Fields()) != len(wu.Fields()) {
		return false
	}
	for i, f := range gu.Fields() {
		w := wu.Fields()[i]
		if f.Name != w.Name || !arrow.TypeEqual(f.Type, w.Type) {
			return false
		}
	}
	return true
}

// GetSchema of a statement and of a prepared statement: the schema the query's
// DoGet then streams.
func TestFlightSQLGetSchemaOfAQuery(t *testing.T) {
	s := login(t, me)
	query := "SELECT track_uri, ts, ms_played FROM streams ORDER BY ts LIMIT 5"
	want, _ := s.query(t, query)
	sr, err := s.cl.GetExecuteSchema(s.ctx, query)
	if err != nil {
		t.Fatalf("GetSchema(CommandStatementQuery): %v", err)
	}
	got, err := flight.DeserializeSchema(sr.GetSchema(), mem)
	if err != nil {
		t.Fatal(err)
	}
	mustEqualSchema(t, "GetSchema(CommandStatementQuery)", got, want)
	stmt, err := s.cl.Prepare(s.ctx, query)
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	defer stmt.Close(s.ctx)
	sr, err = stmt.GetSchema(s.ctx)
	if err != nil {
		t.Fatalf("GetSchema(CommandPreparedStatementQuery): %v", err)
	}
	if got, err = flight.DeserializeSchema(sr.GetSchema(), mem); err != nil {
		t.Fatal(err)
	}
	mustEqualSchema(t, "GetSchema(CommandPreparedStatementQuery)", got, want)
}

// FlightSql.proto lists key_name before key_sequence, as Sluice sends them;
// arrow-go's schema_ref.PrimaryKeys has key_sequence first. Clients here read
// the columns by name, so the fields are compared by name, type and
// nullability, and a different order is only logged.
func TestFlightSQLGetPrimaryKeys(t *testing.T) {
	s := login(t, me)
	info, err := s.cl.GetPrimaryKeys(s.ctx, flightsql.TableRef{Table: "tracks"})
	if err != nil {
		t.Fatalf("GetPrimaryKeys: %v", err)
	}
	schema, batches := s.fetch(t, info)
	want := schema_ref.PrimaryKeys
	if len(schema.Fields()) != len(want.Fields()) {
		t.Fatalf("GetPrimaryKeys schema: %s", schema)
	}
	for _, w := range want.Fields() {
		idx := schema.FieldIndices(w.Name)
		if len(idx) != 1 || !schema.Field(idx[0]).Equal(w) {
			t.Errorf("GetPrimaryKeys field %s: want %s, schema is %s", w.Name, w, schema)
		}
	}
	if !schema.Equal(want) {
		t.Logf("GetPrimaryKeys fields in another order than arrow-go's reference: %v", schema)
	}
	if got := column(t, schema, batches, "column_name"); !slices.Equal(got, []string{"track_uri"}) {
		t.Errorf("primary key of tracks: %v", got)
	}
}

// Sluice is read-only and says so: BeginTransaction is Unimplemented.
func TestFlightSQLTransactionsAreRefused(t *testing.T) {
	s := login(t, me)
	_, err := s.cl.BeginTransaction(s.ctx)
	if status.Code(err) != codes.Unimplemented || !strings.Contains(err.Error(), "read-only") {
		t.Errorf("BeginTransaction: want Unimplemented naming read-only, got %v", err)
	}
}
