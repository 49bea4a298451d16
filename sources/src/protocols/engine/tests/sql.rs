//! SQL obfuscation, summaries and operations.

use super::super::settings::Queries;
use super::super::sql::{describe, obfuscate, operation, split, summary, Dialect};

#[test]
fn literals_become_placeholders_and_lists_one() {
    let pg = |s| obfuscate(s, Dialect::Postgres, 2048).0;
    let my = |s| obfuscate(s, Dialect::Mysql, 2048).0;
    assert_eq!(
        pg("SELECT * FROM t WHERE a = 'x''y' AND b = 42"),
        "SELECT * FROM t WHERE a = ? AND b = ?"
    );
    assert_eq!(
        pg("select id from t where id IN (1, 2, 3)"),
        "select id from t where id IN (?)"
    );
    assert_eq!(
        pg("INSERT INTO t VALUES (1, 'a'), (-2, E'b\\'c')"),
        "INSERT INTO t VALUES (?), (?)"
    );
    assert_eq!(pg("SELECT $body$ secret $body$, $$x$$"), "SELECT ?, ?");
    assert_eq!(
        pg("UPDATE \"T\" SET a = a + $1 -- note 5\n WHERE  b=$2 /* 7 */"),
        "UPDATE \"T\" SET a = a + $1 WHERE b=$2"
    );
    assert_eq!(pg("SELECT x'1F', N'abc', 1.5e3"), "SELECT ?, ?, ?");
    assert_eq!(
        my("SELECT * FROM `t1` WHERE s = \"secret\" AND h = 0xFF AND x = ?"),
        "SELECT * FROM `t1` WHERE s = ? AND h = ? AND x = ?"
    );
    assert_eq!(my("SELECT 'it\\'s'"), "SELECT ?");
    assert_eq!(
        pg("SELECT a FROM t WHERE a IN (SELECT 1)"),
        "SELECT a FROM t WHERE a IN (SELECT ?)"
    );
}

#[test]
fn cut_or_odd_text_still_masks_every_literal() {
    // Cut by the capture inside a string: the tokenizer refuses it.
    for (sql, secret) in [
        ("SELECT * FROM t WHERE name = 'Zorblax Quux", "Zorblax"),
        ("INSERT INTO t VALUES (\"Glorb", "Glorb"),
        (
            "SELECT 'a' || 'hunter2' FROM t WHERE x = 98765 AND y = 'unterminated",
            "98765",
        ),
        ("SELECT E'\\'hunter2", "hunter2"),
    ] {
        for dialect in [Dialect::Postgres, Dialect::Mysql] {
            let (masked, _) = obfuscate(sql, dialect, 2048);
            assert!(!masked.contains(secret), "{sql} → {masked}");
        }
    }
}

#[test]
fn an_unterminated_dollar_quote_masks_the_rest() {
    // MySQL reads `$tag$` as an identifier; PostgreSQL as a quote.
    let (masked, _) = obfuscate("SELECT $tag$ hidden 12345", Dialect::Postgres, 2048);
    assert_eq!(masked, "SELECT ?");
}

#[test]
fn no_generated_literal_survives() {
    let mut rng = fastrand::Rng::with_seed(55);
    let pieces = [
        "SELECT ", "FROM t ", "WHERE ", "a = ", ", ", "(", ")", " IN ", "'", "\"", "$$", "$q$", "--", "/*", "*/", "\n",
        "\\", "E'", "X'", "N'", ";", "0x", ".", "-", "$1", "?",
    ];
    for round in 0..20_000 {
        // No backquotes: MySQL reads what they wrap as a name, whatever it is.
        // Dollar quotes are PostgreSQL's (MySQL reads `$$1$$` as a name);
        // `"…"` strings MySQL's (PostgreSQL's are identifiers).
        let dialect = if round % 2 == 0 {
            Dialect::Postgres
        } else {
            Dialect::Mysql
        };
        let mut sql = String::new();
        let mut secrets = Vec::new();
        for _ in 0..rng.usize(1..12) {
            if rng.u8(0..3) == 0 {
                let secret = format!("{}", 1_000_000 + rng.u32(0..8_000_000));
                // Digits only: wherever an unbalanced quote before it puts it,
                // it is a string's content or a number, never an identifier.
                let quoted = match rng.u8(0..5) {
                    0 => format!("'{secret}'"),
                    1 if dialect == Dialect::Mysql => format!("\"{secret}\""),
                    2 if dialect == Dialect::Postgres => format!("$${secret}$$"),
                    3 => format!("E'\\'{secret}'"),
                    _ => format!(" {secret} "),
                };
                secrets.push(secret);
                sql.push_str(&quoted);
            } else {
                let piece = pieces[rng.usize(..pieces.len())];
                let foreign = match dialect {
                    Dialect::Postgres => piece.contains('"'),
                    Dialect::Mysql => piece.contains('$'),
                };
                if !foreign {
                    sql.push_str(piece);
                }
            }
            // Words glued to a quote are names (`x$$1$$` in PostgreSQL).
            sql.push(' ');
        }
        {
            let (masked, _) = obfuscate(&sql, dialect, 100_000);
            for secret in &secrets {
                // A number inside a comment may be dropped with it; anywhere else masked.
                assert!(!masked.contains(secret.as_str()), "{sql:?} → {masked:?}");
            }
            if let Some(summary) = summary(&sql, dialect) {
                for secret in &secrets {
                    assert!(!summary.contains(secret.as_str()), "{sql:?} → {summary:?}");
                }
            }
        }
    }
}

#[test]
fn summaries_name_operation_and_tables() {
    let s = |sql| summary(sql, Dialect::Postgres);
    assert_eq!(
        s("SELECT id, name FROM users WHERE email = 'x'").as_deref(),
        Some("SELECT users")
    );
    assert_eq!(s("insert into orders (a) values (1)").as_deref(), Some("INSERT orders"));
    assert_eq!(
        s("UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2").as_deref(),
        Some("UPDATE pgbench_accounts")
    );
    assert_eq!(
        s("DELETE FROM public.users WHERE id = 1").as_deref(),
        Some("DELETE public.users")
    );
    assert_eq!(
        s("SELECT * FROM a x, c JOIN b ON x.id = b.id LEFT JOIN e USING (id)").as_deref(),
        Some("SELECT a c b")
    );
    assert_eq!(s("BEGIN").as_deref(), Some("BEGIN"));
    assert_eq!(s("COPY users FROM STDIN").as_deref(), Some("COPY users"));
    assert_eq!(s("WITH x AS (SELECT 1) SELECT * FROM x").as_deref(), Some("SELECT x"));
    assert_eq!(s("frobnicate the table"), None);
    let long = format!("SELECT * FROM {}", "t".repeat(400));
    assert!(s(&long).unwrap().len() <= 255);
}

#[test]
fn operations_come_from_a_bounded_vocabulary() {
    assert_eq!(operation("  /* c */ select 1"), Some("SELECT"));
    assert_eq!(operation("(SELECT 1) UNION (SELECT 2)"), Some("SELECT"));
    assert_eq!(operation("end;"), Some("END"));
    assert_eq!(operation("Zorblax 1"), None);
    assert_eq!(operation(""), None);
}

#[test]
fn multi_statement_text_splits_at_top_level_semicolons() {
    assert_eq!(
        split("BEGIN; INSERT INTO t VALUES ('a;b'); COMMIT;", Dialect::Postgres),
        vec!["BEGIN", "INSERT INTO t VALUES ('a;b')", "COMMIT"]
    );
}

#[test]
fn raw_text_is_kept_when_obfuscation_is_off_but_still_cut() {
    let queries = Queries {
        obfuscate: false,
        max_length: 10,
        ..Queries::default()
    };
    let d = describe("SELECT 'abc' FROM t", Dialect::Postgres, &queries, false);
    assert_eq!(d.query.as_deref(), Some("SELECT 'ab"));
    assert!(d.truncated);
    let d = describe("SELECT 'abc' FROM t", Dialect::Postgres, &Queries::default(), false);
    assert_eq!(d.query.as_deref(), Some("SELECT ? FROM t"));
    assert!(!d.truncated);
}
