//! What database protocols (PostgreSQL, MySQL, Redis) have in common: the
//! exchange their sessions produce and its OpenTelemetry span fields
//! (`db.*`, semantic conventions 1.3x). Each protocol's parser lives in its
//! own module and fills a [`DbExchange`]; statements are obfuscated by the
//! parser before they get here.

pub mod fields;

use sonde_core::event::SharedStr;

/// `db.system.name`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DbSystem {
    /// PostgreSQL.
    Postgresql,
    /// MySQL.
    Mysql,
    /// MariaDB (told from MySQL by its server greeting).
    Mariadb,
    /// Redis (and servers speaking RESP: Valkey, KeyDB).
    Redis,
}

impl DbSystem {
    /// The semantic-convention value.
    pub fn name(self) -> &'static str {
        match self {
            DbSystem::Postgresql => "postgresql",
            DbSystem::Mysql => "mysql",
            DbSystem::Mariadb => "mariadb",
            DbSystem::Redis => "redis",
        }
    }
}

/// One statement (or command) and its outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DbExchange {
    /// `db.system.name`.
    pub system: DbSystem,
    /// `db.namespace`: the database (PostgreSQL's startup `database`,
    /// MySQL's schema, Redis's database index), when seen.
    pub namespace: Option<SharedStr>,
    /// `db.operation.name`: `SELECT`, `INSERT`, `GET`, `HSET`, `COPY` …
    /// (upper case; a bounded vocabulary, it labels metrics).
    pub operation: Option<SharedStr>,
    /// `db.query.text`: the statement, literals replaced with `?` unless
    /// obfuscation is off, cut at the configured length.
    pub query: Option<String>,
    /// `db.query.summary`: operation and main target (`SELECT users`),
    /// bounded.
    pub summary: Option<String>,
    /// The statement text was cut.
    pub truncated: bool,
    /// `db.response.status_code`: SQLSTATE (PostgreSQL, MySQL), the MySQL
    /// error number, or the Redis error prefix (`WRONGTYPE`); on success
    /// only where the protocol has one (PostgreSQL: `00000`).
    pub status_code: Option<SharedStr>,
    /// `error.type`: set when the statement failed (the status code, or
    /// the protocol's error class).
    pub error: Option<SharedStr>,
    /// `db.response.returned_rows`, when the response says.
    pub rows: Option<u64>,
    /// The prepared statement's name or id (`db.operation.parameter` is
    /// not used: parameter values are never kept).
    pub statement: Option<SharedStr>,
}

impl DbExchange {
    /// An exchange of `system` with nothing known yet.
    pub fn new(system: DbSystem) -> Self {
        DbExchange {
            system,
            namespace: None,
            operation: None,
            query: None,
            summary: None,
            truncated: false,
            status_code: None,
            error: None,
            rows: None,
            statement: None,
        }
    }
}
