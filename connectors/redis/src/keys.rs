//! Key names and member encoding.

/// The sorted set of one listener's events.
pub(crate) fn events_key(prefix: &str, user: &str) -> String {
    format!("{prefix}{{{user}}}:events")
}

/// The set of listeners with events.
pub(crate) fn users_key(prefix: &str) -> String {
    format!("{prefix}users")
}

/// The watermark `W`.
pub(crate) fn watermark_key(prefix: &str) -> String {
    format!("{prefix}watermark")
}

/// The member of one event. The time is part of it: a sorted set holds a member once, and
/// a listener plays the same track (for the same `ms_played`) many times.
pub(crate) fn member(ts_ms: i64, track_uri: &str, ms_played: i64) -> String {
    format!("{}{ms_played}", member_prefix(ts_ms, track_uri))
}

/// What identifies an event within a listener's set: `<ts>|<track_uri>|`.
pub(crate) fn member_prefix(ts_ms: i64, track_uri: &str) -> String {
    format!("{ts_ms}|{track_uri}|")
}

/// `(track_uri, ms_played)` of a member.
pub(crate) fn parse_member(member: &str) -> Option<(&str, i64)> {
    let (_ts, rest) = member.split_once('|')?;
    let (track, ms) = rest.rsplit_once('|')?;
    Some((track, ms.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        assert_eq!(events_key("sluice:", "u0001"), "sluice:{u0001}:events");
        assert_eq!(users_key("sluice:"), "sluice:users");
        let m = member(1700, "spotify:track:abc", 1234);
        assert_eq!(m, "1700|spotify:track:abc|1234");
        assert!(m.starts_with(&member_prefix(1700, "spotify:track:abc")));
        assert_ne!(
            m,
            member(1701, "spotify:track:abc", 1234),
            "replays are distinct"
        );
        assert_eq!(parse_member(&m), Some(("spotify:track:abc", 1234)));
        assert_eq!(parse_member("no-separator"), None);
        assert_eq!(parse_member("5|a|b|12"), Some(("a|b", 12)));
    }
}
