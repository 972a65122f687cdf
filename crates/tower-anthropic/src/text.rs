//! Making text from a server safe to show: short, printable, one line.

/// A short, printable excerpt of a body: HTML tags removed, whitespace folded, control
/// characters dropped, at most `max` characters.
pub(crate) fn excerpt(body: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(max.saturating_mul(8))]);
    let mut out = String::new();
    let mut count = 0usize;
    let mut in_tag = false;
    let mut last_space = true;
    for c in text.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                if !last_space {
                    out.push(' ');
                    count += 1;
                    last_space = true;
                }
            }
            _ if in_tag => {}
            c if c.is_whitespace() => {
                if !last_space {
                    out.push(' ');
                    count += 1;
                    last_space = true;
                }
            }
            c if c.is_control() => {}
            c => {
                out.push(c);
                count += 1;
                last_space = false;
            }
        }
        if count >= max {
            break;
        }
    }
    out.trim().to_owned()
}

/// Whether `json` holds more than `max` JSON values (counted by the `[`, `{` and `,` outside
/// strings: a cheap scan). Decoding turns each value into a heap node of tens of bytes, so a
/// body of `[0,0,0,...]` would cost many times its size: the count bounds that before any
/// decoding.
pub(crate) fn too_many_json_values(json: &[u8], max: usize) -> bool {
    // Each counted value takes at least one byte: a body no longer than `max` cannot hold
    // more (the usual answer, a few hundred bytes, is then not scanned at all).
    if json.len() <= max {
        return false;
    }
    let mut count = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in json {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' | b',' => {
                count += 1;
                if count > max {
                    return true;
                }
            }
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_sanitizes_html() {
        let page = b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\x07<h1>502</h1></body></html>";
        assert_eq!(excerpt(page, 200), "502 Bad Gateway 502");
        assert_eq!(excerpt("x".repeat(1000).as_bytes(), 10).len(), 10);
    }

    #[test]
    fn json_values_are_counted_outside_strings() {
        assert!(!too_many_json_values(br#"{"a":"x,y,[{,,,,","b":[1,2]}"#, 4));
        assert!(too_many_json_values(br#"{"a":[1,2,3,4,5]}"#, 4));
        assert!(!too_many_json_values(br#"{"a":"\",[,,,,,,"}"#, 2));
        // At the length bound: as many counted bytes as the body is long.
        assert!(too_many_json_values(b"[,,,", 3));
        assert!(!too_many_json_values(b"[,,,", 4));
        assert!(!too_many_json_values(b"[,,", 3));
    }
}
