//! The fields the session reads from message bodies: NUL-terminated
//! strings, startup parameters, command tags and error fields.

use super::super::sql;

/// The NUL-terminated string at the start of `data` (lossy UTF-8) and the
/// rest after its NUL; a string cut before its NUL is all of `data`.
pub fn cstr(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|b| *b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[]),
    }
}

/// The `database` parameter of a startup packet's body (after its code),
/// or `user` when no database is named (the server's default). The user
/// name is otherwise never kept.
pub fn startup_database(params: &[u8]) -> Option<String> {
    let mut rest = params;
    let (mut database, mut user) = (None, None);
    while !rest.is_empty() && rest[0] != 0 {
        let (name, after) = cstr(rest);
        let (value, after) = cstr(after);
        match name {
            b"database" => database = Some(value),
            b"user" => user = Some(value),
            _ => {}
        }
        rest = after;
    }
    let name = database.or(user)?;
    (!name.is_empty() && name.len() <= 64).then(|| String::from_utf8_lossy(name).into_owned())
}

/// A CommandComplete tag (`INSERT 0 1`, `SELECT 5`, `CREATE TABLE`): the
/// operation when in the vocabulary, and the row count when it has one.
pub fn command_tag(body: &[u8]) -> (Option<&'static str>, Option<u64>) {
    let (tag, _) = cstr(body);
    let tag = String::from_utf8_lossy(tag);
    let mut words = tag.split(' ');
    let operation = words.next().and_then(sql::operation);
    let rows = match operation {
        Some("INSERT" | "SELECT" | "UPDATE" | "DELETE" | "MERGE" | "FETCH" | "MOVE" | "COPY") => {
            tag.rsplit(' ').next().and_then(|n| n.parse().ok())
        }
        _ => None,
    };
    (operation, rows)
}

/// An ErrorResponse's SQLSTATE (field `C`), when five plausible characters.
pub fn sqlstate(body: &[u8]) -> Option<String> {
    let mut rest = body;
    while let Some((&kind, after)) = rest.split_first() {
        if kind == 0 {
            break;
        }
        let (value, after) = cstr(after);
        if kind == b'C' {
            let ok = value.len() == 5 && value.iter().all(u8::is_ascii_alphanumeric);
            return ok.then(|| String::from_utf8_lossy(value).into_owned());
        }
        rest = after;
    }
    None
}
