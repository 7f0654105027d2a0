//! HTTP dates (RFC 9110 §5.6.7), from and to seconds since the Unix epoch, by the `httpdate`
//! crate. Only IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) is produced; all three forms are
//! parsed (IMF-fixdate and the obsolete RFC 850 and asctime forms), as RFC 9110 asks of a
//! recipient. Dates are those of years 1970 to 9999; a parsed date must name a real day and
//! its right weekday.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The last second that an HTTP date can name: 9999-12-31 23:59:59 GMT.
const LAST: u64 = 253_402_300_799;

/// Format Unix seconds as an IMF-fixdate. A time past the year 9999 is given as its last second.
pub fn format(unix_secs: u64) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(unix_secs.min(LAST)))
}

/// Parse an HTTP date into Unix seconds; `None` if it is not one.
pub fn parse(s: &str) -> Option<u64> {
    let t: SystemTime = httpdate::parse_http_date(s).ok()?;
    Some(t.duration_since(UNIX_EPOCH).ok()?.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_example() {
        assert_eq!(format(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(parse("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784_111_777));
    }

    #[test]
    fn epoch_and_leap_days() {
        assert_eq!(format(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        // 2000-02-29 (a leap day in a century leap year) and 2024-02-29.
        assert_eq!(format(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(format(1_709_164_800), "Thu, 29 Feb 2024 00:00:00 GMT");
        assert_eq!(format(4_102_444_799), "Thu, 31 Dec 2099 23:59:59 GMT");
    }

    #[test]
    fn round_trip() {
        for t in (0..4_000_000_000u64).step_by(86_399 * 37 + 11) {
            assert_eq!(parse(&format(t)), Some(t), "{}", format(t));
        }
    }

    #[test]
    fn obsolete_forms() {
        assert_eq!(parse("Sunday, 06-Nov-94 08:49:37 GMT"), Some(784_111_777));
        assert_eq!(parse("Sun Nov  6 08:49:37 1994"), Some(784_111_777));
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(parse("Sun, 06 Nov 1994 08:49:37 UTC"), None);
        assert_eq!(parse("Sun, 06 Xyz 1994 08:49:37 GMT"), None);
        assert_eq!(parse("Sun, 0x Nov 1994 08:49:37 GMT"), None);
        assert_eq!(parse(""), None);
    }

    #[test]
    fn never_panics_past_year_9999() {
        assert_eq!(format(LAST), "Fri, 31 Dec 9999 23:59:59 GMT");
        assert_eq!(format(u64::MAX), format(LAST));
    }
}
