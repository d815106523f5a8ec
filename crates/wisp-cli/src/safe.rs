//! Text from the network made safe to print: nothing a friend, a stranger
//! or a server sends can drive the terminal or pass for something the CLI
//! wrote.
//!
//! Every human-readable output path prints message text, names, ids from
//! links and server error text through this module. `--json` output needs
//! none of it: JSON escapes control characters itself.
//!
//! - C0 controls (ESC, BEL, backspace, carriage return, tab, …) and DEL
//!   are shown as `\x1b`-style escapes, C1 controls (U+0080–U+009F,
//!   including the 8-bit CSI U+009B) as `\u{9b}`: an escape sequence
//!   reaches the screen as harmless visible text, never as a sequence.
//! - Bidirectional embeddings, overrides, isolates and marks, zero-width
//!   and other invisible formatting characters, and Unicode line and
//!   paragraph separators are shown as `\u{202e}`-style escapes, so text
//!   cannot reorder or hide itself.
//! - A message's own line breaks stay line breaks, but every line after
//!   the first is indented under its sender ([`block`]), and when the
//!   output is a terminal, lines longer than it are wrapped here with the
//!   same indent ([`wrap_block`]): a row that starts at the left edge was
//!   always started by the CLI, so no text can forge another sender.

use std::fmt::Write;

use wisp_client::names::is_invisible_format;

/// How lines after a message's first are indented.
pub const CONTINUATION: &str = "    ";

/// `text` as one line safe to print: controls (line breaks included) and
/// invisible formatting characters shown as escapes.
pub fn line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        push_safe(&mut out, c);
    }
    out
}

/// `text`'s lines, each made safe by [`line`]. `\n`, `\r\n` and a lone
/// `\r` end a line (a carriage return would otherwise move back over what
/// the CLI printed at the start of the row).
pub fn lines(text: &str) -> Vec<String> {
    raw_lines(text).map(line).collect()
}

fn raw_lines(text: &str) -> impl Iterator<Item = &str> {
    text.split('\n').flat_map(|piece| {
        let piece = piece.strip_suffix('\r').unwrap_or(piece);
        piece.split('\r')
    })
}

/// `text` after a `prefix` the CLI wrote (a sender): its first line on the
/// prefix's row, every further line on a row of its own indented by
/// [`CONTINUATION`].
pub fn block(prefix: &str, text: &str) -> String {
    wrap_block(prefix, text, None)
}

/// Like [`block`], and when `width` (the terminal's columns) is given,
/// rows longer than it are cut here, the rest going on indented rows: the
/// terminal's own wrapping would start them at the left edge. An escape
/// shown for one character is never cut in two.
pub fn wrap_block(prefix: &str, text: &str, width: Option<usize>) -> String {
    let mut out = String::from(prefix);
    let mut unit = String::new();
    for (index, raw) in raw_lines(text).enumerate() {
        let mut used = if index == 0 {
            display_width(prefix)
        } else {
            out.push('\n');
            out.push_str(CONTINUATION);
            CONTINUATION.len()
        };
        for c in raw.chars() {
            unit.clear();
            push_safe(&mut unit, c);
            let cells = display_width(&unit);
            if let Some(width) = width
                && used + cells > width
                && used > CONTINUATION.len()
            {
                out.push('\n');
                out.push_str(CONTINUATION);
                used = CONTINUATION.len();
            }
            out.push_str(&unit);
            used += cells;
        }
    }
    out
}

/// Terminal cells `text` takes at most (already safe: no controls):
/// printable ASCII one, anything else two. Terminals disagree on the width
/// of emoji sequences, ambiguous-width and zero-width characters; counting
/// high only wraps a little early, where counting low would let the
/// terminal wrap by itself and start a row at its left edge.
pub fn display_width(text: &str) -> usize {
    text.chars().map(cells).sum()
}

fn cells(c: char) -> usize {
    if c.is_ascii() { 1 } else { 2 }
}

/// The columns of the terminal standard output is, if it is one.
pub fn terminal_width() -> Option<usize> {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() {
        return None;
    }
    crossterm::terminal::size()
        .ok()
        .map(|(columns, _)| usize::from(columns))
        .filter(|&columns| columns > CONTINUATION.len() + 8)
}

fn push_safe(out: &mut String, c: char) {
    match c {
        '\t' => out.push_str("\\t"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\0'..='\u{1f}' | '\u{7f}' => {
            let _ = write!(out, "\\x{:02x}", u32::from(c));
        }
        c if c.is_control() || is_invisible_format(c) => {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        }
        c => out.push(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What no safe output may hold: a byte or character a terminal acts on.
    fn assert_inert(text: &str) {
        for c in text.chars() {
            assert!(
                c == '\n' || !(c.is_control() || is_invisible_format(c)),
                "{c:?} reached the output: {text:?}"
            );
        }
    }

    #[test]
    fn escape_sequences_become_visible_text() {
        let hostile = "\x1b[2J\x1b]0;pwned\x07\x1b[31mred\x1b[0m\u{9b}31m\u{7f}\x08\0";
        let safe = line(hostile);
        assert_eq!(
            safe,
            "\\x1b[2J\\x1b]0;pwned\\x07\\x1b[31mred\\x1b[0m\\u{9b}31m\\x7f\\x08\\x00"
        );
        assert_inert(&safe);
    }

    #[test]
    fn bidi_and_invisible_characters_are_neutralised() {
        let safe = line("invoice\u{202e}fdp.exe \u{2066}x\u{2069} a\u{200b}b \u{2028}");
        assert_eq!(
            safe,
            "invoice\\u{202e}fdp.exe \\u{2066}x\\u{2069} a\\u{200b}b \\u{2028}"
        );
        assert_inert(&safe);
    }

    #[test]
    fn ordinary_text_is_untouched() {
        let text = "héllo 李小龍 🐉 — \"quotes\" \\ back\\slash";
        assert_eq!(line(text), text);
        assert_eq!(block("Bob: ", text), format!("Bob: {text}"));
    }

    #[test]
    fn a_message_cannot_start_a_row_another_sender_seems_to_own() {
        let forged = "see you\nMallory: I am someone else\r\nEve: me too\rOscar: and me";
        let shown = block("Bob: ", forged);
        assert_eq!(
            shown,
            "Bob: see you\n    Mallory: I am someone else\n    Eve: me too\n    Oscar: and me"
        );
        // Every row but the first starts indented.
        assert!(
            shown
                .lines()
                .skip(1)
                .all(|row| row.starts_with(CONTINUATION))
        );
        assert_inert(&shown);
    }

    #[test]
    fn long_lines_wrap_indented_at_the_terminal_width() {
        let padding = "x".repeat(75);
        let forged = format!("{padding}Mallory: I am someone else");
        let shown = wrap_block("Bob: ", &forged, Some(80));
        let rows: Vec<&str> = shown.lines().collect();
        assert!(rows.len() >= 2, "{shown}");
        for row in &rows {
            assert!(display_width(row) <= 80, "{row:?}");
        }
        assert!(rows[1..].iter().all(|row| row.starts_with(CONTINUATION)));
        // Wide characters count as two cells, and so does anything not
        // ASCII (emoji sequences are two on many terminals, one here).
        let wide = wrap_block("", &"李".repeat(50), Some(20));
        assert!(wide.lines().all(|row| display_width(row) <= 20), "{wide}");
        let hearts = wrap_block("Bob: ", &"❤\u{fe0f}".repeat(40), Some(40));
        for row in hearts.lines() {
            // Such a terminal: ASCII one cell, each ❤️ (two characters) two.
            let hearts_in_row = row.matches("❤\u{fe0f}").count();
            let drawn = row.chars().filter(char::is_ascii).count() + 2 * hearts_in_row;
            assert!(
                drawn <= 40,
                "a terminal drawing ❤️ two cells wide wraps {row:?} itself"
            );
        }
        // An escape is never cut in two.
        let escaped = wrap_block("B: ", "abcd\u{202e}efg", Some(12));
        assert_eq!(escaped, "B: abcd\n    \\u{202e}\n    efg");
        // A huge message wraps in bounded rows, nothing lost.
        let huge = "y".repeat(10_000);
        let shown = wrap_block("B: ", &huge, Some(40));
        assert_eq!(shown.matches('y').count(), 10_000);
        assert!(shown.lines().all(|row| display_width(row) <= 40));
    }
}
