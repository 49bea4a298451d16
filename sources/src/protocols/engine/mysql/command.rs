//! Command bytes of the client/server protocol.

/// COM_QUIT: no response.
pub const QUIT: u8 = 0x01;
/// COM_INIT_DB: the schema changes.
pub const INIT_DB: u8 = 0x02;
/// COM_QUERY: SQL text.
pub const QUERY: u8 = 0x03;
/// COM_FIELD_LIST: column definitions up to an EOF.
pub const FIELD_LIST: u8 = 0x04;
/// COM_PING.
pub const PING: u8 = 0x0e;
/// COM_STMT_PREPARE: SQL text, answered with a statement id.
pub const STMT_PREPARE: u8 = 0x16;
/// COM_STMT_EXECUTE: a statement id and parameter values (never read).
pub const STMT_EXECUTE: u8 = 0x17;
/// COM_STMT_SEND_LONG_DATA: no response.
pub const STMT_SEND_LONG_DATA: u8 = 0x18;
/// COM_STMT_CLOSE: no response.
pub const STMT_CLOSE: u8 = 0x19;

/// Whether `byte` is a command a client sends (COM_SLEEP … COM_RESET_CONNECTION).
pub fn known(byte: u8) -> bool {
    (0x01..=0x1f).contains(&byte)
}

/// Whether the server answers `command`.
pub fn answered(command: u8) -> bool {
    !matches!(command, QUIT | STMT_SEND_LONG_DATA | STMT_CLOSE)
}
