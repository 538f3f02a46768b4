//! Many rows in one statement whose text does not depend on how many rows there are.
//!
//! A multi-row `VALUES (…), (…)` list makes a new statement for every row count: PostgreSQL
//! parses and plans each one afresh, and the driver prepares it in an extra round trip (and
//! evicts it again from its per-connection statement cache). On PostgreSQL the rows therefore
//! travel in fixed statements, prepared once per connection and planned once:
//! - rows a statement joins on (`row_sources`: balances, idempotency responses) as one array
//!   per column read by `unnest`, whose row count the planner estimates from the arrays (so a
//!   join by primary key stays an index lookup instead of a hash join over the whole table);
//! - rows to insert (`insert_rows`) the same way, a nullable column as its values beside an
//!   array of NULL flags (the driver cannot send a NULL inside an array).
//!
//! SQLite, in-process, keeps `VALUES` lists (in chunks under its bind-parameter limit).

use super::{StoreError, StoreResult};
use sea_orm::sea_query::{ArrayType, Expr, SimpleExpr};
use sea_orm::sqlx::{Postgres, pool::PoolConnection};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, DbErr,
    EntityName, EntityTrait, IdenStatic, Iterable, RuntimeErr, Statement, Value,
};
use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::Arc;

/// Rows per statement on SQLite, well under its bind-parameter limit (the widest table written
/// in bulk, transfers, has 14 columns: 7,000 parameters).
pub(super) const SQLITE_ROWS_PER_STATEMENT_MAX: usize = 500;

/// What a column of a row source holds (its SQL type on PostgreSQL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SqlType {
    Text,
    BigInt,
    Int,
    Bool,
    Timestamp,
}

impl SqlType {
    fn postgres(self) -> &'static str {
        match self {
            SqlType::Text => "text",
            SqlType::BigInt => "bigint",
            SqlType::Int => "integer",
            SqlType::Bool => "boolean",
            SqlType::Timestamp => "timestamptz",
        }
    }

    fn array_type(self) -> ArrayType {
        match self {
            SqlType::Text => ArrayType::String,
            SqlType::BigInt => ArrayType::BigInt,
            SqlType::Int => ArrayType::Int,
            SqlType::Bool => ArrayType::Bool,
            SqlType::Timestamp => ArrayType::ChronoDateTimeUtc,
        }
    }

    /// A value of this type standing in for a NULL (whose flag says so).
    fn placeholder(self) -> Value {
        match self {
            SqlType::Text => Value::from(String::new()),
            SqlType::BigInt => Value::from(0_i64),
            SqlType::Int => Value::from(0_i32),
            SqlType::Bool => Value::from(false),
            SqlType::Timestamp => Value::from(chrono::DateTime::<chrono::Utc>::UNIX_EPOCH),
        }
    }

    fn of(value: &Value) -> Option<SqlType> {
        Some(match value {
            Value::String(_) => SqlType::Text,
            Value::BigInt(_) => SqlType::BigInt,
            Value::Int(_) => SqlType::Int,
            Value::Bool(_) => SqlType::Bool,
            Value::ChronoDateTimeUtc(_) => SqlType::Timestamp,
            _ => return None,
        })
    }
}

/// A set of rows, ready to be the source of one statement: `INSERT INTO t (cols) {sql}`,
/// `WITH rows (cols) AS ({sql}) UPDATE …`. Its parameters are the statement's only ones.
pub(super) struct RowSource {
    pub sql: String,
    pub values: Vec<Value>,
}

/// Builds the statement sources for `rows` (each holding one value per column, in `columns`
/// order, none of them NULL): on PostgreSQL one `unnest` of one array per column, on SQLite one
/// `VALUES` list per chunk. Empty when there are no rows.
pub(super) fn row_sources(
    backend: DbBackend,
    columns: &[(&str, SqlType)],
    rows: Vec<Vec<Value>>,
) -> StoreResult<Vec<RowSource>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    if backend == DbBackend::Postgres {
        return Ok(vec![array_source(columns, rows)?]);
    }
    Ok(values_sources(backend, columns.len(), rows))
}

fn values_sources(backend: DbBackend, columns: usize, rows: Vec<Vec<Value>>) -> Vec<RowSource> {
    let mut sources = Vec::new();
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<Vec<Value>> = rows.by_ref().take(SQLITE_ROWS_PER_STATEMENT_MAX).collect();
        let sql = format!("VALUES {}", values_rows(backend, chunk.len(), columns));
        sources.push(RowSource {
            sql,
            values: chunk.into_iter().flatten().collect(),
        });
    }
    sources
}

/// `SELECT * FROM unnest($1::text[], $2::bigint[], …) AS r("a", "b", …) LIMIT $n`, `$n` the
/// row count.
///
/// The `LIMIT` cuts nothing: it is there for the planner. A prepared statement's generic plan
/// cannot see into the arrays and guesses 10 rows for `unnest`; against a small table (a
/// deployment with a few hundred accounts, the benchmark's) it then found a hash join over a
/// sequential scan cheaper than ten primary-key lookups, and the balances' update read and
/// pruned every page of `accounts` on every group (8.5 % of PostgreSQL's CPU under uniform
/// load, `perf`; the plan by `auto_explain`). A `LIMIT` by parameter is estimated at a tenth
/// of its input, one row, and one row is looked up by its key whatever the table's size.
fn array_source(columns: &[(&str, SqlType)], rows: Vec<Vec<Value>>) -> StoreResult<RowSource> {
    let mut arrays: Vec<Vec<Value>> = columns
        .iter()
        .map(|_| Vec::with_capacity(rows.len()))
        .collect();
    for row in rows {
        if row.len() != columns.len() {
            return Err(StoreError::Corrupt(format!(
                "a bulk row has {} values for {} columns",
                row.len(),
                columns.len()
            )));
        }
        for ((array, (_, kind)), value) in arrays.iter_mut().zip(columns).zip(row) {
            if SqlType::of(&value) != Some(*kind) || !value.is_some() {
                return Err(StoreError::Corrupt(format!(
                    "a bulk value {value:?} in a {} column",
                    kind.postgres()
                )));
            }
            array.push(value);
        }
    }
    let mut sql = String::from("SELECT * FROM unnest(");
    for (position, (_, kind)) in columns.iter().enumerate() {
        if position > 0 {
            sql.push_str(", ");
        }
        let _ = write!(sql, "${}::{}[]", position + 1, kind.postgres());
    }
    sql.push_str(") AS r(");
    for (position, (name, _)) in columns.iter().enumerate() {
        if position > 0 {
            sql.push_str(", ");
        }
        let _ = write!(sql, "\"{name}\"");
    }
    let rows = arrays.first().map_or(0, Vec::len);
    let _ = write!(sql, ") LIMIT ${}", columns.len() + 1);
    let mut values: Vec<Value> = columns
        .iter()
        .zip(arrays)
        .map(|((_, kind), array)| Value::Array(kind.array_type(), Some(Box::new(array))))
        .collect();
    values.push(Value::from(rows as i64));
    Ok(RowSource { sql, values })
}

/// A column of an INSERT: its name, type, and whether it may hold NULL.
#[derive(Debug, Clone, Copy)]
pub(super) struct InsertColumn<'a> {
    pub name: &'a str,
    pub kind: SqlType,
    pub nullable: bool,
}

/// The sources of an INSERT: on PostgreSQL one `unnest` of typed arrays (`insert_array_source`),
/// on SQLite `VALUES` lists.
fn insert_sources(
    backend: DbBackend,
    columns: &[InsertColumn<'_>],
    rows: Vec<Vec<Value>>,
) -> StoreResult<Vec<RowSource>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    if backend == DbBackend::Postgres {
        return Ok(vec![insert_array_source(columns, rows)?]);
    }
    Ok(values_sources(backend, columns.len(), rows))
}

/// The suffix of the flag column that says a nullable column's value is NULL.
const NULL_FLAG: &str = "__null";

/// `SELECT r."a", CASE WHEN r."b__null" THEN NULL ELSE r."b" END, … FROM unnest($1::text[],
/// $2::bigint[], $3::boolean[], …) AS r("a", "b", "b__null", …)`: one binary array per column.
/// The driver cannot send NULL inside an array, so a nullable column travels as its values
/// (a NULL replaced by a placeholder) beside an array of NULL flags. Which columns carry flags
/// depends on the table only, so the statement text is the same for every batch. (Arrays rather
/// than one JSON document: PostgreSQL spent about a tenth of its time per transfer lexing the
/// JSON.)
fn insert_array_source(
    columns: &[InsertColumn<'_>],
    rows: Vec<Vec<Value>>,
) -> StoreResult<RowSource> {
    let mut arrays: Vec<Vec<Value>> = columns
        .iter()
        .map(|_| Vec::with_capacity(rows.len()))
        .collect();
    let mut flags: Vec<Vec<Value>> = columns
        .iter()
        .map(|column| Vec::with_capacity(if column.nullable { rows.len() } else { 0 }))
        .collect();
    for row in rows {
        if row.len() != columns.len() {
            return Err(StoreError::Corrupt(format!(
                "a bulk row has {} values for {} columns",
                row.len(),
                columns.len()
            )));
        }
        for (((array, flag), column), value) in
            arrays.iter_mut().zip(&mut flags).zip(columns).zip(row)
        {
            let mismatch = || {
                StoreError::Corrupt(format!(
                    "a bulk value {value:?} in a {} column {}",
                    column.kind.postgres(),
                    column.name
                ))
            };
            if SqlType::of(&value) != Some(column.kind) {
                return Err(mismatch());
            }
            let null = !value.is_some();
            if null && !column.nullable {
                return Err(mismatch());
            }
            if column.nullable {
                flag.push(Value::from(null));
            }
            array.push(if null {
                column.kind.placeholder()
            } else {
                value
            });
        }
    }
    let mut select = String::from("SELECT ");
    let mut arguments = String::new();
    let mut names = String::new();
    let mut values = Vec::with_capacity(columns.len() * 2);
    let mut add_array = |name: String, kind: SqlType, array: Vec<Value>| {
        if !values.is_empty() {
            arguments.push_str(", ");
            names.push_str(", ");
        }
        let _ = write!(arguments, "${}::{}[]", values.len() + 1, kind.postgres());
        let _ = write!(names, "\"{name}\"");
        values.push(Value::Array(kind.array_type(), Some(Box::new(array))));
    };
    for (position, ((column, array), flag)) in columns.iter().zip(arrays).zip(flags).enumerate() {
        if position > 0 {
            select.push_str(", ");
        }
        let name = column.name;
        add_array(name.to_owned(), column.kind, array);
        if column.nullable {
            let _ = write!(
                select,
                "CASE WHEN r.\"{name}{NULL_FLAG}\" THEN NULL ELSE r.\"{name}\" END"
            );
            add_array(format!("{name}{NULL_FLAG}"), SqlType::Bool, flag);
        } else {
            let _ = write!(select, "r.\"{name}\"");
        }
    }
    let sql = format!("{select} FROM unnest({arguments}) AS r({names})");
    Ok(RowSource { sql, values })
}

/// `column IN (ids)` with one statement text whatever the count on PostgreSQL
/// (`column = ANY($1)`, one array parameter); an `IN (…)` list elsewhere. For statements over
/// one table (the column is not qualified).
pub(super) fn id_in<C: ColumnTrait>(backend: DbBackend, column: C, ids: Vec<String>) -> SimpleExpr {
    match backend {
        DbBackend::Postgres => Expr::cust_with_values(
            format!("\"{}\" = ANY($1)", column.as_str()),
            [Value::from(ids)],
        ),
        _ => column.is_in(ids),
    }
}

/// `rows` rows of `columns` bind parameters each, `(…), (…)`, in the backend's syntax, for a
/// multi-row `VALUES` whose parameters are bound row by row.
pub(super) fn values_rows(backend: DbBackend, rows: usize, columns: usize) -> String {
    let placeholder = |index: usize| match backend {
        DbBackend::Postgres => format!("${}", index + 1),
        _ => "?".to_owned(),
    };
    (0..rows)
        .map(|row| {
            let marks: Vec<String> = (row * columns..(row + 1) * columns)
                .map(placeholder)
                .collect();
            format!("({})", marks.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Inserts `rows` of one entity: on PostgreSQL one fixed statement for all of them, on SQLite
/// multi-row INSERTs. `conflict`: an optional `ON CONFLICT …` clause. Every row must set the
/// same columns.
pub(super) async fn insert_rows<A>(
    transaction: &DatabaseTransaction,
    rows: Vec<A>,
    conflict: Option<&str>,
) -> StoreResult<()>
where
    A: ActiveModelTrait + Send,
{
    for (sql, values) in insert_statements(transaction.get_database_backend(), rows, conflict)? {
        transaction
            .execute_raw(Statement::from_sql_and_values(
                transaction.get_database_backend(),
                sql,
                values,
            ))
            .await?;
    }
    Ok(())
}

/// `insert_rows`, answering the `id`s of the rows inserted (with `ON CONFLICT … DO NOTHING`,
/// those that were not there yet).
pub(super) async fn insert_rows_returning_ids<A>(
    transaction: &DatabaseTransaction,
    rows: Vec<A>,
    conflict: Option<&str>,
) -> StoreResult<HashSet<String>>
where
    A: ActiveModelTrait + Send,
{
    let backend = transaction.get_database_backend();
    let mut inserted = HashSet::with_capacity(rows.len());
    for (sql, values) in insert_statements(backend, rows, conflict)? {
        let sql = format!("{sql} RETURNING \"id\"");
        for row in transaction
            .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
            .await?
        {
            inserted.insert(row.try_get::<String>("", "id")?);
        }
    }
    Ok(inserted)
}

fn insert_statements<A>(
    backend: DbBackend,
    rows: Vec<A>,
    conflict: Option<&str>,
) -> StoreResult<Vec<(String, Vec<Value>)>>
where
    A: ActiveModelTrait,
{
    let Some(first) = rows.first() else {
        return Ok(Vec::new());
    };
    let columns: Vec<<A::Entity as EntityTrait>::Column> =
        <A::Entity as EntityTrait>::Column::iter()
            .filter(|column| first.get(*column).is_set() || first.get(*column).is_unchanged())
            .collect();
    let mut names = Vec::with_capacity(columns.len());
    for column in &columns {
        let value = first.get(*column).into_value().unwrap_or(Value::Bool(None));
        let kind = SqlType::of(&value)
            .ok_or_else(|| StoreError::Corrupt(format!("no bulk type for {}", column.as_str())))?;
        names.push(InsertColumn {
            name: column.as_str(),
            kind,
            nullable: column.def().is_null(),
        });
    }
    // Each row's values are moved out of it, not copied (ids, payloads, stored responses).
    let mut values = Vec::with_capacity(rows.len());
    for mut row in rows {
        let mut row_values = Vec::with_capacity(columns.len());
        for column in &columns {
            let value = row.take(*column).into_value().ok_or_else(|| {
                StoreError::Corrupt(format!("a bulk row leaves {} unset", column.as_str()))
            })?;
            row_values.push(value);
        }
        values.push(row_values);
    }
    let table = A::Entity::default().table_name().to_owned();
    let column_list = names
        .iter()
        .map(|column| format!("\"{}\"", column.name))
        .collect::<Vec<_>>()
        .join(", ");
    Ok(insert_sources(backend, &names, values)?
        .into_iter()
        .map(|source| {
            let sql = format!(
                "INSERT INTO \"{table}\" ({column_list}) {} {}",
                source.sql,
                conflict.unwrap_or("")
            );
            (sql.trim_end().to_owned(), source.values)
        })
        .collect())
}

/// Statements whose answers nobody reads (at most their row count): on PostgreSQL they go to
/// the server as ONE statement of data-modifying CTEs (one round trip instead of one each; the
/// group commit's writer spent about half its time waiting on those round trips), elsewhere
/// one after the other. Every sub-statement runs to completion and sees the database as it was
/// before the statement: an UPDATE does not see rows inserted beside it (a guarded one then
/// matches fewer rows, which its count check reports), and no row may be written twice.
/// (None of the tables written this way has a foreign key on PostgreSQL: `entries` lost its
/// two in migration `entries_checked_by_the_writer`.)
#[derive(Default)]
pub(super) struct Writes {
    statements: Vec<(String, Vec<Value>)>,
    /// Statements (by index) that must return exactly this many rows, and what it means when
    /// they do not.
    checked: Vec<(usize, usize, String)>,
}

impl Writes {
    /// `rows` inserted as `insert_rows` would.
    pub(super) fn insert<A>(
        &mut self,
        backend: DbBackend,
        rows: Vec<A>,
        conflict: Option<&str>,
    ) -> StoreResult<()>
    where
        A: ActiveModelTrait,
    {
        self.statements
            .extend(insert_statements(backend, rows, conflict)?);
        Ok(())
    }

    pub(super) fn push(&mut self, sql: String, values: Vec<Value>) {
        self.statements.push((sql, values));
    }

    /// A statement with a `RETURNING` clause that must return exactly `expected` rows; otherwise
    /// the whole statement fails (nothing of it is written) with an error naming `meaning` and
    /// the count (PostgreSQL only: the check runs in the same statement, so the statement can
    /// run on its own, as its own transaction).
    pub(super) fn push_checked(
        &mut self,
        sql: String,
        values: Vec<Value>,
        expected: usize,
        meaning: String,
    ) {
        self.checked
            .push((self.statements.len(), expected, meaning));
        self.statements.push((sql, values));
    }

    pub(super) async fn execute(self, transaction: &DatabaseTransaction) -> StoreResult<()> {
        let backend = transaction.get_database_backend();
        if backend != DbBackend::Postgres {
            debug_assert!(self.checked.is_empty(), "checked writes are PostgreSQL's");
            for (sql, values) in self.statements {
                transaction
                    .execute_raw(Statement::from_sql_and_values(backend, sql, values))
                    .await?;
            }
            return Ok(());
        }
        if let Some((sql, values)) = self.combine() {
            transaction
                .execute_raw(Statement::from_sql_and_values(backend, sql, values))
                .await?;
        }
        Ok(())
    }

    /// PostgreSQL: every statement as ONE (`combined`), or nothing if there is none.
    pub(super) fn combine(self) -> Option<(String, Vec<Value>)> {
        (!self.statements.is_empty()).then(|| combined(self.statements, self.checked))
    }
}

/// PostgreSQL: a combined statement (`Writes::combine`), one round trip on a pooled connection,
/// outside a transaction: a transaction of its own, committed by the server when it succeeds,
/// and a failed count check fails all of it.
///
/// The values are moved into the driver's buffer: sea-orm's `execute_raw` would copy every one
/// first (a group's arrays of ids, bodies and payloads), then free both copies.
pub(super) async fn execute_alone(
    mut connection: PoolConnection<Postgres>,
    (sql, values): (String, Vec<Value>),
) -> StoreResult<()> {
    let query = sea_orm::sqlx::query_with(
        sea_orm::sqlx::AssertSqlSafe(sql),
        sea_query_sqlx::SqlxValues(sea_orm::sea_query::Values(values)),
    );
    query
        .execute(&mut *connection)
        .await
        .map_err(|error| DbErr::Exec(RuntimeErr::SqlxError(Arc::new(error))))?;
    Ok(())
}

/// `WITH w0 AS (…), w1 AS (…) SELECT 1`, each statement's parameters renumbered after the
/// ones before it. With `checked` statements (index, expected rows, meaning) the final `SELECT`
/// counts each one's rows and, where a count differs, casts a text naming the check to an
/// integer: the statement fails at run time (the text is not a constant, so the planner cannot
/// fail it ahead of time), and with it everything the statement wrote. Expected counts and
/// meanings travel as parameters, so the text stays the same from group to group (one prepared
/// statement).
fn combined(
    statements: Vec<(String, Vec<Value>)>,
    checked: Vec<(usize, usize, String)>,
) -> (String, Vec<Value>) {
    let mut sql = String::from("WITH ");
    let mut values = Vec::new();
    for (index, (statement, statement_values)) in statements.into_iter().enumerate() {
        if index > 0 {
            sql.push_str(", ");
        }
        let _ = write!(sql, "w{index} AS (");
        renumber(&mut sql, &statement, values.len());
        sql.push(')');
        values.extend(statement_values);
    }
    if checked.is_empty() {
        sql.push_str(" SELECT 1");
        return (sql, values);
    }
    let mut checks = Vec::with_capacity(checked.len());
    for (index, expected, meaning) in checked {
        let expected_at = values.len() + 1;
        let meaning_at = values.len() + 2;
        values.push(Value::from(i64::try_from(expected).unwrap_or(i64::MAX)));
        values.push(Value::from(meaning));
        checks.push(format!(
            "CASE WHEN (SELECT count(*) FROM w{index}) = ${expected_at}::bigint THEN 0 \
             ELSE CAST(${meaning_at}::text || ' (' || (SELECT count(*) FROM w{index}) || ' of ' \
             || ${expected_at}::bigint || ')' AS integer) END"
        ));
    }
    let _ = write!(sql, " SELECT {}", checks.join(", "));
    (sql, values)
}

/// Appends `statement` with every `$n` parameter shifted by `offset`. The statements are
/// walleti's own texts: values travel as parameters, so a `$` followed by digits is always one.
fn renumber(out: &mut String, statement: &str, offset: usize) {
    let mut chars = statement.char_indices().peekable();
    while let Some((_, character)) = chars.next() {
        out.push(character);
        if character != '$' {
            continue;
        }
        let mut number = String::new();
        while let Some((_, digit)) = chars.peek().filter(|(_, next)| next.is_ascii_digit()) {
            number.push(*digit);
            chars.next();
        }
        match number.parse::<usize>() {
            Ok(position) => {
                let _ = write!(out, "{}", position + offset);
            }
            Err(_) => out.push_str(&number),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combined_writes_renumber_each_statement_after_the_ones_before() {
        let (sql, values) = combined(
            vec![
                (
                    "INSERT INTO a (x) SELECT * FROM json_to_recordset($1::json) AS r(x text)"
                        .into(),
                    vec![Value::from("[]")],
                ),
                (
                    "UPDATE b SET y = $2 WHERE z = $1 AND w = $10".into(),
                    (0..10).map(Value::from).collect(),
                ),
            ],
            Vec::new(),
        );
        assert_eq!(
            sql,
            "WITH w0 AS (INSERT INTO a (x) SELECT * FROM json_to_recordset($1::json) AS r(x text)), \
             w1 AS (UPDATE b SET y = $3 WHERE z = $2 AND w = $11) SELECT 1"
        );
        assert_eq!(values.len(), 11);
        let (counted, values) = combined(
            vec![
                ("INSERT INTO a (x) VALUES ($1)".into(), vec![Value::from(1)]),
                (
                    "UPDATE b SET y = $1 RETURNING 1".into(),
                    vec![Value::from(2)],
                ),
            ],
            vec![(1, 3, "stale".into())],
        );
        assert_eq!(
            counted,
            "WITH w0 AS (INSERT INTO a (x) VALUES ($1)), w1 AS (UPDATE b SET y = $2 RETURNING 1) \
             SELECT CASE WHEN (SELECT count(*) FROM w1) = $3::bigint THEN 0 \
             ELSE CAST($4::text || ' (' || (SELECT count(*) FROM w1) || ' of ' || $3::bigint || ')' \
             AS integer) END"
        );
        assert_eq!(
            values,
            vec![
                Value::from(1),
                Value::from(2),
                Value::from(3_i64),
                Value::from("stale".to_owned())
            ]
        );
    }

    #[test]
    fn values_rows_number_parameters_row_by_row() {
        assert_eq!(
            values_rows(DbBackend::Postgres, 2, 3),
            "($1, $2, $3), ($4, $5, $6)"
        );
        assert_eq!(values_rows(DbBackend::Sqlite, 2, 2), "(?, ?), (?, ?)");
    }

    #[test]
    fn postgres_rows_to_insert_are_typed_arrays_with_null_flags_for_nullable_columns() {
        let columns = [
            InsertColumn {
                name: "id",
                kind: SqlType::Text,
                nullable: false,
            },
            InsertColumn {
                name: "amount",
                kind: SqlType::BigInt,
                nullable: false,
            },
            InsertColumn {
                name: "note",
                kind: SqlType::Text,
                nullable: true,
            },
        ];
        let rows = vec![
            vec!["a".into(), 5_i64.into(), Value::String(None)],
            vec!["b\"".into(), (-7_i64).into(), "".into()],
        ];
        let sources = insert_sources(DbBackend::Postgres, &columns, rows).expect("source");
        assert_eq!(sources.len(), 1);
        assert_eq!(
            sources[0].sql,
            "SELECT r.\"id\", r.\"amount\", CASE WHEN r.\"note__null\" THEN NULL ELSE r.\"note\" END \
             FROM unnest($1::text[], $2::bigint[], $3::text[], $4::boolean[]) \
             AS r(\"id\", \"amount\", \"note\", \"note__null\")"
        );
        // An empty note and no note stay apart: the flag, not the placeholder, says NULL.
        assert_eq!(
            sources[0].values,
            vec![
                Value::from(vec!["a".to_owned(), "b\"".to_owned()]),
                Value::from(vec![5_i64, -7]),
                Value::from(vec![String::new(), String::new()]),
                Value::from(vec![true, false]),
            ]
        );
        let not_null = [InsertColumn {
            nullable: false,
            ..columns[2]
        }];
        assert!(
            insert_sources(
                DbBackend::Postgres,
                &not_null,
                vec![vec![Value::String(None)]]
            )
            .is_err(),
            "a NULL in a NOT NULL column is refused before it is sent"
        );
    }

    #[test]
    fn postgres_join_rows_are_one_array_per_column() {
        let columns = [("id", SqlType::Text), ("version", SqlType::BigInt)];
        let rows = vec![
            vec!["a".into(), 1_i64.into()],
            vec!["b".into(), 2_i64.into()],
        ];
        let sources = row_sources(DbBackend::Postgres, &columns, rows).expect("source");
        assert_eq!(
            sources[0].sql,
            "SELECT * FROM unnest($1::text[], $2::bigint[]) AS r(\"id\", \"version\") LIMIT $3"
        );
        assert_eq!(
            sources[0].values,
            vec![
                Value::from(vec!["a".to_owned(), "b".to_owned()]),
                Value::from(vec![1_i64, 2]),
                Value::from(2_i64),
            ]
        );
    }

    #[test]
    fn a_value_of_the_wrong_type_or_null_is_refused() {
        let columns = [("amount", SqlType::BigInt)];
        assert!(row_sources(DbBackend::Postgres, &columns, vec![vec!["1".into()]]).is_err());
        let insert_columns = [InsertColumn {
            name: "amount",
            kind: SqlType::BigInt,
            nullable: true,
        }];
        assert!(
            insert_sources(DbBackend::Postgres, &insert_columns, vec![vec!["1".into()]]).is_err()
        );
        let null = vec![vec![Value::BigInt(None)]];
        assert!(row_sources(DbBackend::Postgres, &columns, null).is_err());
    }

    #[test]
    fn sqlite_rows_are_chunked_values_lists() {
        let columns = [("id", SqlType::Text)];
        let rows = (0..SQLITE_ROWS_PER_STATEMENT_MAX + 1)
            .map(|index| vec![Value::from(index.to_string())])
            .collect();
        let sources = row_sources(DbBackend::Sqlite, &columns, rows).expect("sources");
        assert_eq!(sources.len(), 2);
        assert_eq!(sources[1].sql, "VALUES (?)");
        assert_eq!(sources[0].values.len(), SQLITE_ROWS_PER_STATEMENT_MAX);
    }
}
