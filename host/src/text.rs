//! Guest and remote text made safe to show: every string a module (or a sidecar, or an object a
//! module wrote) hands the host is untrusted, and reaches logs, terminals, statuses and events.
//!
//! Invariants (unit tests below):
//! - [`escape`] leaves printable text alone and turns every control character (C0, DEL, C1),
//!   the Unicode line and paragraph separators and the bidirectional overrides into a visible
//!   escape (`\n`, `\u{1b}`), so a guest cannot forge a log line, clear a terminal or reorder
//!   what a reader sees (`control_characters_are_escaped`, `printable_text_is_unchanged`); the
//!   same goes for invisible characters (zero-width, byte-order mark, tags); [`json_safe`] does it
//!   for JSON text without changing the JSON (`json_stays_json_and_safe`);
//! - [`clip`] cuts at a character boundary and says how long the text was
//!   (`clip_cuts_at_a_char_boundary`); [`safe`] escapes, then clips, so the result is bounded
//!   whatever the input (`safe_output_is_bounded`).

use std::borrow::Cow;
use std::fmt::Write;

/// Whether a character must not reach a log line, a terminal, a status or an event as is.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        // Line and paragraph separators: some viewers break lines on them.
        || matches!(c, '\u{2028}' | '\u{2029}')
        // Bidirectional embeddings, overrides, isolates and marks ("Trojan Source").
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{061c}')
        // Invisible characters: zero-width spaces and joiners, word joiners and invisible
        // operators, the byte-order mark, soft hyphen, tag characters.
        || matches!(c, '\u{200b}'..='\u{200d}' | '\u{2060}'..='\u{2065}' | '\u{206a}'..='\u{206f}' | '\u{feff}' | '\u{ad}')
        || matches!(c, '\u{e0000}'..='\u{e007f}')
        // The rest of Unicode's default-ignorable and format characters, and blanks that render
        // as nothing: Mongolian vowel separator, interlinear annotations, Hangul fillers,
        // combining grapheme joiner, variation selectors, musical formatting, Braille blank, and
        // the Arabic, Syriac, Kaithi and Egyptian format characters.
        || matches!(c, '\u{180b}'..='\u{180f}' | '\u{fff9}'..='\u{fffb}' | '\u{3164}' | '\u{ffa0}' | '\u{115f}' | '\u{1160}')
        || matches!(c, '\u{034f}' | '\u{17b4}' | '\u{17b5}' | '\u{fe00}'..='\u{fe0f}' | '\u{e0100}'..='\u{e01ef}')
        || matches!(c, '\u{1d173}'..='\u{1d17a}' | '\u{2800}' | '\u{0600}'..='\u{0605}' | '\u{06dd}' | '\u{070f}' | '\u{08e2}')
        || matches!(c, '\u{110bd}' | '\u{110cd}' | '\u{13430}'..='\u{1343f}' | '\u{1bca0}'..='\u{1bca3}')
}

/// JSON text (from `serde_json`, which escapes only C0 controls in strings) with every other
/// unsafe character written as a `\uXXXX` escape: still the same JSON, safe on a terminal.
pub fn json_safe(json: &str) -> Cow<'_, str> {
    // Newlines and tabs between JSON tokens are layout; inside strings serde_json escaped them.
    let needs_escape = |c: char| is_unsafe(c) && !matches!(c, '\n' | '\r' | '\t');
    if !json.chars().any(needs_escape) {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if needs_escape(c) {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                let _ = write!(out, "\\u{:04x}", u);
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `text` with every control, bidi-control and invisible character escaped (`\n`, `\r`, `\t`,
/// `\\u{…}`), and a backslash doubled, so that an escape cannot be forged (a literal `\n` shows
/// as `\\n`, not as an escaped newline).
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| c == '\\' || is_unsafe(c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_unsafe(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// `text` cut to at most `max` bytes at a character boundary, with the original length noted.
pub fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let cut = text.floor_char_boundary(max);
    format!("{}…[{} bytes]", &text[..cut], text.len())
}

/// Escaped, then clipped to `max` bytes (plus the length note): what any untrusted text becomes
/// before it is logged, printed, stored in a status or published in an event.
pub fn safe(text: &str, max: usize) -> String {
    // Escaping can only grow the text; clip first (generously) so a huge input is not copied.
    let head = &text[..text.floor_char_boundary(max.saturating_mul(2).min(text.len()))];
    let escaped = escape(head);
    if head.len() < text.len() {
        let cut = escaped.floor_char_boundary(max.min(escaped.len()));
        format!("{}…[{} bytes]", &escaped[..cut], text.len())
    } else {
        clip(&escaped, max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        for (input, want) in [
            ("a\nb", "a\\nb"),
            ("line\r\n2026-11-30T00:00:00Z INFO forged", "line\\r\\n2026-11-30T00:00:00Z INFO forged"),
            ("\u{1b}[2J\u{1b}[H", "\\u{1b}[2J\\u{1b}[H"),
            ("tab\there", "tab\\there"),
            ("nul\0", "nul\\u{0}"),
            ("del\u{7f}", "del\\u{7f}"),
            ("c1\u{9b}31m", "c1\\u{9b}31m"),
            ("sep\u{2028}x", "sep\\u{2028}x"),
            ("bidi\u{202e}txt.exe", "bidi\\u{202e}txt.exe"),
            ("iso\u{2066}x\u{2069}", "iso\\u{2066}x\\u{2069}"),
            ("zero\u{200b}width", "zero\\u{200b}width"),
            ("bom\u{feff}", "bom\\u{feff}"),
            ("tag\u{e0041}", "tag\\u{e0041}"),
            ("mvs\u{180e}x", "mvs\\u{180e}x"),
            ("hangul\u{3164}", "hangul\\u{3164}"),
            ("vs\u{fe0f}", "vs\\u{fe0f}"),
            ("braille\u{2800}", "braille\\u{2800}"),
            ("note\u{fff9}", "note\\u{fff9}"),
            // A literal backslash cannot pose as an escape.
            ("forged\\n2026 INFO", "forged\\\\n2026 INFO"),
        ] {
            assert_eq!(escape(input), want, "{input:?}");
            assert!(!escape(input).chars().any(is_unsafe));
        }
    }

    #[test]
    fn json_stays_json_and_safe() {
        let value = serde_json::json!({"m": "del\u{7f} c1\u{9b} bidi\u{202e} ok\n"});
        let text = serde_json::to_string_pretty(&value).unwrap();
        let safe = json_safe(&text);
        assert!(!safe.chars().any(|c| is_unsafe(c) && c != '\n'), "{safe}");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&safe).unwrap(), value, "the same JSON");
        assert!(matches!(json_safe("{\"a\": 1}"), Cow::Borrowed(_)));
    }

    #[test]
    fn printable_text_is_unchanged() {
        for s in ["", "plain", "ünïcödé ✓ 日本語", "quotes \" and / slashes"] {
            assert!(matches!(escape(s), Cow::Borrowed(_)), "{s}");
        }
    }

    #[test]
    fn clip_cuts_at_a_char_boundary() {
        assert_eq!(clip("short", 10), "short");
        assert_eq!(clip("ééééé", 3), "é…[10 bytes]");
        assert_eq!(clip("abcdef", 3), "abc…[6 bytes]");
    }

    #[test]
    fn safe_output_is_bounded() {
        let hostile = "\u{1b}".repeat(1 << 20);
        let s = safe(&hostile, 100);
        assert!(s.len() <= 100 + 32, "{}", s.len());
        assert!(s.ends_with(&format!("[{} bytes]", hostile.len())), "{s}");
        assert!(!s.chars().any(is_unsafe));
        assert_eq!(safe("ok\nfine", 100), "ok\\nfine");
        assert_eq!(safe("abcdef", 3), "abc…[6 bytes]");
    }
}
