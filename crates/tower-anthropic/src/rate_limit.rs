//! The `anthropic-ratelimit-*` response headers, parsed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderMap;

/// One limit: its size, what is left, and when the bucket is full again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimit {
    /// `...-limit`.
    pub limit: Option<u64>,
    /// `...-remaining`.
    pub remaining: Option<u64>,
    /// `...-reset`, an RFC 3339 instant.
    pub reset: Option<SystemTime>,
}

/// The twelve `anthropic-ratelimit-*` headers. Absent or unparsable values are `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimitHeaders {
    /// `anthropic-ratelimit-requests-*`.
    pub requests: RateLimit,
    /// `anthropic-ratelimit-tokens-*` (the most restrictive token limit in effect).
    pub tokens: RateLimit,
    /// `anthropic-ratelimit-input-tokens-*`.
    pub input_tokens: RateLimit,
    /// `anthropic-ratelimit-output-tokens-*`.
    pub output_tokens: RateLimit,
}

impl RateLimitHeaders {
    /// Limits and `remaining` scaled by `share` (0 to 1): one process's part of a quota.
    pub(crate) fn scaled(mut self, share: f64) -> Self {
        let f = |n: Option<u64>| n.map(|v| ((v as f64) * share).floor() as u64);
        for r in [
            &mut self.requests,
            &mut self.tokens,
            &mut self.input_tokens,
            &mut self.output_tokens,
        ] {
            r.limit = f(r.limit);
            r.remaining = f(r.remaining);
        }
        self
    }

    /// Parses the headers of a response: one pass over them, matching the
    /// `anthropic-ratelimit-` prefix (no hashed lookup per name); where a header is repeated,
    /// its first value counts.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        Self::parse(headers, true)
    }

    /// The limits and `remaining` counts of requests, input and output tokens only (every
    /// `reset` and the combined `tokens` left `None`): what a pacer learns from (it keeps its
    /// own clock and paces input and output apart), at a fraction of the cost.
    pub(crate) fn counts_from_headers(headers: &HeaderMap) -> Self {
        Self::parse(headers, false)
    }

    fn parse(headers: &HeaderMap, full: bool) -> Self {
        Self::parse_counted(headers, full).0
    }

    /// [`Self::parse`], and how many headers it looked at (it stops once it has every header
    /// it wants).
    fn parse_counted(headers: &HeaderMap, full: bool) -> (Self, usize) {
        const PREFIX: &[u8; 20] = b"anthropic-ratelimit-";
        // By bucket (0 requests, 1 tokens, 2 input tokens, 3 output tokens), then field (0
        // limit, 1 remaining, 2 reset): the name after the prefix.
        const NAMES: [[&[u8]; 3]; 4] = [
            [b"requests-limit", b"requests-remaining", b"requests-reset"],
            [b"tokens-limit", b"tokens-remaining", b"tokens-reset"],
            [
                b"input-tokens-limit",
                b"input-tokens-remaining",
                b"input-tokens-reset",
            ],
            [
                b"output-tokens-limit",
                b"output-tokens-remaining",
                b"output-tokens-reset",
            ],
        ];
        // A header's bit in `seen`: bucket `b`, field `f`.
        const fn bit(b: usize, f: usize) -> u16 {
            1 << (b * 3 + f)
        }
        // Every bit this parse looks for: all twelve, or the counts only (the limit and
        // `remaining` of requests, input and output tokens).
        const COUNTS: u16 = bit(0, 0) | bit(0, 1) | bit(2, 0) | bit(2, 1) | bit(3, 0) | bit(3, 1);
        let all: u16 = if full { 0o7777 } else { COUNTS };
        let mut out = Self::default();
        let mut seen = 0u16;
        let mut looked = 0;
        for (name, value) in headers {
            if seen == all {
                break;
            }
            looked += 1;
            // Most headers are not these: the length and one byte rule them out. Then the
            // byte after the prefix names the bucket and the last but one the field; only a
            // header this parse wants is compared whole (prefix and name).
            let name = name.as_str().as_bytes();
            if name.len() < 32 || name[0] != b'a' {
                continue;
            }
            let b = match name[PREFIX.len()] {
                b'r' => 0,
                b't' if full => 1,
                b'i' => 2,
                b'o' => 3,
                _ => continue,
            };
            let f = match name[name.len() - 2] {
                b'i' => 0,
                b'n' => 1,
                b'e' if full => 2,
                _ => continue,
            };
            let bit = bit(b, f);
            let (prefix, rest) = name.split_at(PREFIX.len());
            if seen & bit != 0 || prefix != PREFIX || !same_short(rest, NAMES[b][f]) {
                continue;
            }
            seen |= bit;
            let slot = match b {
                0 => &mut out.requests,
                1 => &mut out.tokens,
                2 => &mut out.input_tokens,
                _ => &mut out.output_tokens,
            };
            match f {
                0 => slot.limit = parse_count(value.as_bytes()),
                1 => slot.remaining = parse_count(value.as_bytes()),
                _ => slot.reset = value.to_str().ok().and_then(|v| parse_rfc3339(v.trim())),
            }
        }
        (out, looked)
    }

    /// Whether any of the headers was present.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Whether `a` and `b` (12 to 24 bytes) are equal: three 8-byte words compared (first,
/// middle, last: together they cover such a slice) instead of a call to `memcmp`.
fn same_short(a: &[u8], b: &[u8]) -> bool {
    let n = b.len();
    debug_assert!((12..=24).contains(&n));
    if a.len() != n {
        return false;
    }
    let word = |s: &[u8], at: usize| u64::from_ne_bytes(s[at..at + 8].try_into().unwrap_or([0; 8]));
    let mid = (n - 8).min(8);
    word(a, 0) == word(b, 0) && word(a, mid) == word(b, mid) && word(a, n - 8) == word(b, n - 8)
}

/// A count as `u64::from_str` reads it (an optional `+`, then decimal digits, no overflow),
/// around it any whitespace `str::trim` would remove (in a header value: spaces and tabs).
fn parse_count(v: &[u8]) -> Option<u64> {
    // The usual value: 1 to 19 digits alone, which cannot overflow a `u64`.
    if !v.is_empty() && v.len() <= 19 {
        let mut n = 0u64;
        for &c in v {
            let d = c.wrapping_sub(b'0');
            if d > 9 {
                return parse_count_slow(v);
            }
            n = n * 10 + u64::from(d);
        }
        return Some(n);
    }
    parse_count_slow(v)
}

/// [`parse_count`] with whitespace, a sign and overflow to check.
#[cold]
fn parse_count_slow(v: &[u8]) -> Option<u64> {
    let v = v.trim_ascii();
    let digits = v.strip_prefix(b"+").unwrap_or(v);
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &c| {
        if c.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(c - b'0'))
        } else {
            None
        }
    })
}

/// Parses an RFC 3339 timestamp (`2025-08-21T12:40:59Z`, fractions and offsets allowed).
pub(crate) fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    // ASCII only: every slice below is then on a character boundary.
    if !s.is_ascii()
        || b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    // Digits only, read straight from the bytes (no sign, no whitespace).
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        b.get(r)?.iter().try_fold(0i64, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
        })
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let month_days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if !(1..=12).contains(&month)
        || !(1..=month_days).contains(&day)
        || hour > 23
        || min > 59
        || sec > 60
    {
        return None;
    }
    let mut rest = &s[19..];
    let mut nanos = 0u32;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        // The first nine digits, padded to nanoseconds; further ones are dropped.
        nanos = frac.as_bytes()[..digits]
            .iter()
            .chain(std::iter::repeat(&b'0'))
            .take(9)
            .fold(0u32, |n, &c| n * 10 + u32::from(c - b'0'));
        rest = &frac[digits..];
    }
    let offset_secs: i64 = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6
            && (rest.starts_with('+') || rest.starts_with('-'))
            && &rest[3..4] == ":" =>
        {
            let h: i64 = rest[1..3].parse().ok()?;
            let m: i64 = rest[4..6].parse().ok()?;
            let v = h * 3600 + m * 60;
            if rest.starts_with('-') { -v } else { v }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + min * 60 + sec - offset_secs;
    let secs = u64::try_from(secs).ok()?;
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

/// Howard Hinnant's civil-to-days algorithm.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn parses_rfc3339() {
        let t = |s| parse_rfc3339(s).map(|t| t.duration_since(UNIX_EPOCH).unwrap());
        assert_eq!(
            t("2025-08-21T12:40:59Z"),
            Some(Duration::from_secs(1_755_780_059))
        );
        assert_eq!(t("1970-01-01T00:00:00Z"), Some(Duration::ZERO));
        assert_eq!(
            t("2000-02-29T00:00:00.5Z"),
            Some(Duration::from_millis(951_782_400_500))
        );
        assert_eq!(
            t("2025-08-21T14:40:59+02:00"),
            Some(Duration::from_secs(1_755_780_059))
        );
        // Nanoseconds: nine digits kept, more dropped.
        assert_eq!(
            t("1970-01-01T00:00:01.123456789123Z"),
            Some(Duration::new(1, 123_456_789))
        );
        for bad in [
            "+025-08-21T12:40:59Z",
            "2025-0 -21T12:40:59Z",
            "",
            "2025-08-21",
            "2025-13-01T00:00:00Z",
            "2025-08-21T12:40:59",
            "garbage-garbage-ga",
            "2025-08-21T12:40:59.Z",
        ] {
            assert_eq!(t(bad), None, "{bad}");
        }
    }

    #[test]
    fn parses_the_twelve_headers() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("requests", "50"),
            ("tokens", "9000"),
            ("input-tokens", "8000"),
            ("output-tokens", "1000"),
        ] {
            h.insert(
                format!("anthropic-ratelimit-{k}-limit")
                    .parse::<http::HeaderName>()
                    .unwrap(),
                HeaderValue::from_static(v),
            );
            h.insert(
                format!("anthropic-ratelimit-{k}-remaining")
                    .parse::<http::HeaderName>()
                    .unwrap(),
                HeaderValue::from_static("7"),
            );
            h.insert(
                format!("anthropic-ratelimit-{k}-reset")
                    .parse::<http::HeaderName>()
                    .unwrap(),
                HeaderValue::from_static("2025-08-21T12:40:59Z"),
            );
        }
        let r = RateLimitHeaders::from_headers(&h);
        assert_eq!(r.requests.limit, Some(50));
        assert_eq!(r.output_tokens.limit, Some(1000));
        assert_eq!(r.input_tokens.remaining, Some(7));
        assert!(r.tokens.reset.is_some());
        h.insert(
            "anthropic-ratelimit-requests-limit",
            HeaderValue::from_static("lots"),
        );
        assert_eq!(RateLimitHeaders::from_headers(&h).requests.limit, None);
        assert!(RateLimitHeaders::from_headers(&HeaderMap::new()).is_empty());
        // A repeated header: the first value counts (as `HeaderMap::get` has it); names
        // that only look like these are ignored.
        h.insert(
            "anthropic-ratelimit-requests-limit",
            HeaderValue::from_static("60"),
        );
        h.append(
            "anthropic-ratelimit-requests-limit",
            HeaderValue::from_static("90"),
        );
        h.insert(
            "anthropic-ratelimit-requests-other",
            HeaderValue::from_static("1"),
        );
        h.insert(
            "anthropic-ratelimit-images-limit",
            HeaderValue::from_static("1"),
        );
        h.insert("anthropic-ratelimit-", HeaderValue::from_static("1"));
        // Names that only resemble the twelve: ignored.
        for fake in [
            "anthropic-ratelimit-tokensxlimit",
            "anthropic-ratelimit-tokens-xlimit",
            "anthropic-ratelimit-requests-rlimit",
            "anthropic-ratelimit-rrrrrrrr-limit",
            "anthropic-ratelimit-output-tokens-ximit",
            "anthropic-ratelimit-input-tokens-remainin",
            "anthropic-ratelimit-output-tokens-remaining-limit",
        ] {
            h.insert(
                fake.parse::<http::HeaderName>().unwrap(),
                HeaderValue::from_static("5"),
            );
        }
        let r = RateLimitHeaders::from_headers(&h);
        assert_eq!(r.requests.limit, Some(60));
        assert_eq!(r.requests.remaining, Some(7));
        assert_eq!(r.tokens.limit, Some(9000));
        assert_eq!(r.output_tokens.limit, Some(1000));
        assert_eq!(r.input_tokens.remaining, Some(7));
    }

    #[test]
    fn short_names_compare_whole() {
        let names = [
            "tokens-limit",
            "requests-limit",
            "output-tokens-remaining",
            "abcdefghijklmnopqrstuvwx",
        ];
        for n in names {
            assert!(same_short(n.as_bytes(), n.as_bytes()));
            assert!(!same_short(&n.as_bytes()[1..], n.as_bytes()));
            // Any one byte changed, anywhere, is told apart.
            for i in 0..n.len() {
                let mut other = n.as_bytes().to_vec();
                other[i] ^= 0x20;
                assert!(!same_short(&other, n.as_bytes()), "{n} at {i}");
            }
        }
    }

    #[test]
    fn counts_are_read_as_u64_from_str_reads_them() {
        for v in [
            "0",
            "7",
            "+7",
            " 42\t",
            "18446744073709551615",
            "18446744073709551616",
            "",
            "+",
            "-1",
            "1 2",
            "1e3",
            "٣",
            "0x10",
            "00012",
            "9999999999999999999",
            "99999999999999999999",
            "0000000000000000000000012",
            "+9999999999999999999",
            "12 ",
            "1\u{0}",
            "/",
            ":",
        ] {
            assert_eq!(
                parse_count(v.as_bytes()),
                v.trim().parse::<u64>().ok(),
                "{v:?}"
            );
        }
    }

    #[test]
    fn counts_only_is_the_full_parse_without_the_resets_and_combined_tokens() {
        let mut h = HeaderMap::new();
        for (i, k) in ["requests", "tokens", "input-tokens", "output-tokens"]
            .iter()
            .enumerate()
        {
            let n = |f: &str| format!("anthropic-ratelimit-{k}-{f}").parse::<http::HeaderName>();
            h.insert(n("limit").unwrap(), HeaderValue::from(1000 + i));
            h.insert(n("remaining").unwrap(), HeaderValue::from(10 * i));
            h.insert(
                n("reset").unwrap(),
                HeaderValue::from_static("2025-08-21T12:40:59Z"),
            );
        }
        h.insert(
            "anthropic-ratelimit-tokens-remaining",
            HeaderValue::from_static("n/a"),
        );
        let mut full = RateLimitHeaders::from_headers(&h);
        assert!(full.requests.reset.is_some());
        assert_eq!(full.tokens.remaining, None);
        for r in [
            &mut full.requests,
            &mut full.tokens,
            &mut full.input_tokens,
            &mut full.output_tokens,
        ] {
            r.reset = None;
        }
        let tokens = std::mem::take(&mut full.tokens);
        assert_eq!(tokens.limit, Some(1001));
        assert_eq!(RateLimitHeaders::counts_from_headers(&h), full);
        assert_eq!(full.output_tokens.limit, Some(1003));
    }

    #[test]
    fn a_parse_stops_once_it_has_every_header_it_wants() {
        let mut h = HeaderMap::new();
        for (name, value) in [
            ("anthropic-ratelimit-requests-limit", "50"),
            ("anthropic-ratelimit-requests-remaining", "49"),
            ("anthropic-ratelimit-input-tokens-limit", "1000"),
            ("anthropic-ratelimit-input-tokens-remaining", "900"),
            ("anthropic-ratelimit-output-tokens-limit", "400"),
            ("anthropic-ratelimit-output-tokens-remaining", "300"),
            ("content-type", "application/json"),
            ("anthropic-ratelimit-requests-reset", "2025-08-21T12:40:59Z"),
            ("anthropic-ratelimit-tokens-limit", "1400"),
            ("anthropic-ratelimit-tokens-remaining", "1200"),
            ("anthropic-ratelimit-tokens-reset", "2025-08-21T12:40:59Z"),
            (
                "anthropic-ratelimit-input-tokens-reset",
                "2025-08-21T12:40:59Z",
            ),
            (
                "anthropic-ratelimit-output-tokens-reset",
                "2025-08-21T12:40:59Z",
            ),
            ("date", "Thu, 21 Aug 2025 12:40:00 GMT"),
        ] {
            h.insert(name, HeaderValue::from_static(value));
        }
        // The counts are the first six headers: nothing after them is looked at.
        let (counts, looked) = RateLimitHeaders::parse_counted(&h, false);
        assert_eq!(looked, 6);
        assert_eq!(counts.output_tokens.remaining, Some(300));
        assert_eq!(counts.tokens, RateLimit::default());
        // All twelve: the last is the output tokens' reset, the thirteenth header.
        let (full, looked) = RateLimitHeaders::parse_counted(&h, true);
        assert_eq!(looked, 13);
        assert_eq!(full.tokens.remaining, Some(1200));
        assert!(full.output_tokens.reset.is_some());
    }

    #[test]
    fn hostile_timestamps_are_refused_without_panicking() {
        for bad in [
            "2025-02-31T00:00:00Z",
            "2025-04-31T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2025-0é-01T00:00:00Z",
            "ééééééééééééééééééééééé",
            "2025-08-21T12:40:59Zé",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
        assert!(
            parse_rfc3339("2024-02-29T00:00:00Z").is_some(),
            "a leap day"
        );
    }
}
