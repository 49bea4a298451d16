//! A request frame as a span names it: `db.operation.name` (a bounded
//! vocabulary: it labels metrics) and `db.query.text`, which keeps at most
//! the command's first key and never another argument — values, scripts,
//! passwords (`AUTH`, `HELLO … AUTH`, `ACL SETUSER`, `MIGRATE … AUTH`)
//! and host names stay out. Keys are kept only for commands known to take
//! a key first (an allowlist: an unknown command's first argument may be
//! anything).

use sonde_core::event::SharedStr;

use super::frame::{Frame, MAX_ARG};

/// Longest command name kept as an operation.
const MAX_NAME: usize = 32;

/// Commands whose first argument is a subcommand, kept in the operation
/// name (`CLIENT SETNAME`, `CONFIG GET`).
const CONTAINERS: &[&str] = &[
    "ACL", "CLIENT", "CLUSTER", "COMMAND", "CONFIG", "DEBUG", "FUNCTION", "LATENCY", "MEMORY", "MODULE", "OBJECT",
    "PUBSUB", "SCRIPT", "SENTINEL", "SLOWLOG", "XGROUP", "XINFO",
];

/// Commands whose first argument is a key (sorted: binary search).
const KEY_FIRST: &[&str] = &[
    "APPEND",
    "BITCOUNT",
    "BITFIELD",
    "BITPOS",
    "BLMOVE",
    "BLPOP",
    "BRPOP",
    "BRPOPLPUSH",
    "BZPOPMAX",
    "BZPOPMIN",
    "COPY",
    "DECR",
    "DECRBY",
    "DEL",
    "DUMP",
    "EXISTS",
    "EXPIRE",
    "EXPIREAT",
    "EXPIRETIME",
    "GEOADD",
    "GEODIST",
    "GEOHASH",
    "GEOPOS",
    "GEOSEARCH",
    "GET",
    "GETBIT",
    "GETDEL",
    "GETEX",
    "GETRANGE",
    "GETSET",
    "HDEL",
    "HEXISTS",
    "HGET",
    "HGETALL",
    "HINCRBY",
    "HINCRBYFLOAT",
    "HKEYS",
    "HLEN",
    "HMGET",
    "HMSET",
    "HRANDFIELD",
    "HSCAN",
    "HSET",
    "HSETNX",
    "HSTRLEN",
    "HVALS",
    "INCR",
    "INCRBY",
    "INCRBYFLOAT",
    "LINDEX",
    "LINSERT",
    "LLEN",
    "LMOVE",
    "LPOP",
    "LPOS",
    "LPUSH",
    "LPUSHX",
    "LRANGE",
    "LREM",
    "LSET",
    "LTRIM",
    "MGET",
    "MSET",
    "MSETNX",
    "PERSIST",
    "PEXPIRE",
    "PEXPIREAT",
    "PFADD",
    "PFCOUNT",
    "PFMERGE",
    "PSETEX",
    "PTTL",
    "RENAME",
    "RENAMENX",
    "RPOP",
    "RPOPLPUSH",
    "RPUSH",
    "RPUSHX",
    "SADD",
    "SCARD",
    "SDIFF",
    "SDIFFSTORE",
    "SET",
    "SETBIT",
    "SETEX",
    "SETNX",
    "SETRANGE",
    "SINTER",
    "SINTERSTORE",
    "SISMEMBER",
    "SMEMBERS",
    "SMISMEMBER",
    "SMOVE",
    "SORT",
    "SPOP",
    "SRANDMEMBER",
    "SREM",
    "SSCAN",
    "STRLEN",
    "SUNION",
    "SUNIONSTORE",
    "TOUCH",
    "TTL",
    "TYPE",
    "UNLINK",
    "WATCH",
    "XACK",
    "XADD",
    "XAUTOCLAIM",
    "XCLAIM",
    "XDEL",
    "XLEN",
    "XPENDING",
    "XRANGE",
    "XREVRANGE",
    "XTRIM",
    "ZADD",
    "ZCARD",
    "ZCOUNT",
    "ZDIFFSTORE",
    "ZINCRBY",
    "ZINTERSTORE",
    "ZLEXCOUNT",
    "ZMSCORE",
    "ZPOPMAX",
    "ZPOPMIN",
    "ZRANDMEMBER",
    "ZRANGE",
    "ZRANGEBYLEX",
    "ZRANGEBYSCORE",
    "ZRANGESTORE",
    "ZRANK",
    "ZREM",
    "ZREMRANGEBYLEX",
    "ZREMRANGEBYRANK",
    "ZREMRANGEBYSCORE",
    "ZREVRANGE",
    "ZREVRANGEBYLEX",
    "ZREVRANGEBYSCORE",
    "ZREVRANK",
    "ZSCAN",
    "ZSCORE",
    "ZUNIONSTORE",
];

/// Commands that put a connection in (or take it out of) subscribed mode;
/// their confirmations come as `[kind, channel, count]` arrays or pushes.
pub const SUBSCRIBE: &[&str] = &[
    "SUBSCRIBE",
    "PSUBSCRIBE",
    "SSUBSCRIBE",
    "UNSUBSCRIBE",
    "PUNSUBSCRIBE",
    "SUNSUBSCRIBE",
];

/// What a span keeps of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    /// `db.operation.name`: `GET`, `CLIENT SETNAME`, `_OTHER`.
    pub operation: SharedStr,
    /// `db.query.text`: the operation, then the first key when kept.
    pub query: String,
    /// The key was cut.
    pub truncated: bool,
    /// `SELECT n`: the database it switches to.
    pub select: Option<SharedStr>,
    /// A subscribe-family command (upper case).
    pub subscribe: Option<&'static str>,
}

impl Command {
    /// Bytes held.
    pub fn memory(&self) -> usize {
        self.operation.len() + self.query.len()
    }
}

/// An argument as a command name: upper case when it is letters only and
/// short, else nothing.
fn name(arg: Option<&Vec<u8>>) -> Option<String> {
    let arg = arg?;
    let valid = (1..=MAX_NAME).contains(&arg.len()) && arg.iter().all(u8::is_ascii_alphabetic);
    valid.then(|| String::from_utf8_lossy(arg).to_ascii_uppercase())
}

/// A key as text: non-printable bytes become `?`, cut at [`MAX_ARG`].
fn key_text(key: &[u8]) -> (String, bool) {
    let cut = key.len() > MAX_ARG;
    let shown = &key[..key.len().min(MAX_ARG)];
    let text = String::from_utf8_lossy(shown)
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    (text, cut)
}

/// The command of a request frame; `keys` keeps the first key.
pub fn command(frame: &Frame, keys: bool) -> Command {
    let Some(first) = name(frame.args.first()) else {
        return Command {
            operation: SharedStr::from_static("_OTHER"),
            query: "_OTHER".into(),
            truncated: false,
            select: None,
            subscribe: None,
        };
    };
    let mut truncated = false;
    let (operation, query) = if CONTAINERS.contains(&first.as_str()) {
        let operation = match name(frame.args.get(1)) {
            Some(sub) => format!("{first} {sub}"),
            None => first,
        };
        (operation.clone(), operation)
    } else {
        let query = match frame.args.get(1) {
            Some(key) if keys && KEY_FIRST.binary_search(&first.as_str()).is_ok() => {
                let (key, cut) = key_text(key);
                truncated = cut;
                format!("{first} {key}")
            }
            _ => first.clone(),
        };
        (first, query)
    };
    let select = (operation == "SELECT")
        .then(|| frame.args.get(1))
        .flatten()
        .filter(|n| (1..=5).contains(&n.len()) && n.iter().all(u8::is_ascii_digit))
        .map(|n| SharedStr::from(String::from_utf8_lossy(n).into_owned()));
    let subscribe = SUBSCRIBE.iter().copied().find(|s| *s == operation);
    Command {
        operation: operation.into(),
        query,
        truncated,
        select,
        subscribe,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_allowlist_is_sorted_for_binary_search() {
        assert!(KEY_FIRST.windows(2).all(|w| w[0] < w[1]));
    }
}
