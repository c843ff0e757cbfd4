// The SQL that `tollgate migrate` runs against a PostgreSQL database.
#ifndef TOLLGATE_BACKENDS_POSTGRES_SCHEMA_H_
#define TOLLGATE_BACKENDS_POSTGRES_SCHEMA_H_

namespace tollgate::postgres {

// The script's body: BEGIN, an advisory lock (concurrent migrations run one after another), every
// table/sequence/function created idempotently (IF NOT EXISTS / CREATE OR REPLACE). The caller
// appends the statement recording the schema version and COMMIT; any error rolls all back.
extern const char kMigrationSql[];

}  // namespace tollgate::postgres

#endif  // TOLLGATE_BACKENDS_POSTGRES_SCHEMA_H_
