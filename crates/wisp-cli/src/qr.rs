//! QR codes drawn in the terminal by `qrcode`'s own Unicode renderer
//! ([`Dense1x2`]): each text line holds two rows of modules (`▀` top, `▄`
//! bottom, `█` both, ` ` neither), so a code is as tall as it is wide on a
//! terminal's usual 1:2 cells.
//!
//! The light modules (and the quiet zone of four modules around the code)
//! are drawn, the dark ones left as background, like `qrencode -t UTF8`.
//! On a terminal the colours are set outright (white on black), so the
//! code shows dark on light, as scanners expect, whatever the terminal's
//! theme; piped, the text is plain.

use qrcode::render::unicode::Dense1x2;
use qrcode::{EcLevel, QrCode};

use crate::output::CliError;

/// `data` as a QR code (error correction level M), one string of lines
/// ending in newlines. Upper-case text (digits, A-Z, `:/-`) codes most
/// compactly.
pub(crate) fn render(data: &str) -> Result<String, CliError> {
    let code = QrCode::with_error_correction_level(data, EcLevel::M)
        .map_err(|e| CliError::failed(format!("cannot draw a QR code: {e}")))?;
    let text = draw(&code);
    Ok(if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        in_colour(&text)
    } else {
        text
    })
}

/// Each line white on black, reset at its end.
fn in_colour(text: &str) -> String {
    text.lines()
        .map(|line| format!("\x1b[97;40m{line}\x1b[0m\n"))
        .collect()
}

/// Draws `code`, one module a half cell, with its quiet zone; each line
/// ends in a newline.
fn draw(code: &QrCode) -> String {
    // The renderer draws what it is given as the dark colour on a
    // background of the light one: swapped, it draws the light modules
    // and the quiet zone, and leaves the dark modules (and the lower half
    // of the last line, when the rows are odd) as background.
    let mut text = code
        .render::<Dense1x2>()
        .dark_color(Dense1x2::Light)
        .light_color(Dense1x2::Dark)
        .quiet_zone(true)
        .module_dimensions(1, 1)
        .build();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use qrcode::Color;

    use super::*;

    /// Light modules around the code, as the QR standard asks (and as
    /// `qrcode` draws for a code that is not a Micro QR code).
    const QUIET_ZONE: usize = 4;

    #[test]
    fn on_a_terminal_each_line_is_white_on_black_and_reset() {
        let coloured = in_colour("█▀\n ▄\n");
        assert_eq!(coloured, "\x1b[97;40m█▀\x1b[0m\n\x1b[97;40m ▄\x1b[0m\n");
    }

    /// Reads the drawing back into modules (true = light), quiet zone and
    /// all.
    fn read_back(text: &str) -> Vec<Vec<bool>> {
        let mut rows = Vec::new();
        for line in text.lines() {
            let (top, bottom): (Vec<bool>, Vec<bool>) = line
                .chars()
                .map(|c| match c {
                    '█' => (true, true),
                    '▀' => (true, false),
                    '▄' => (false, true),
                    ' ' => (false, false),
                    other => panic!("unexpected {other:?}"),
                })
                .unzip();
            rows.push(top);
            rows.push(bottom);
        }
        rows
    }

    #[test]
    fn the_drawing_is_the_code_with_its_quiet_zone() {
        let data = "WISP://ADD/ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        let code = QrCode::with_error_correction_level(data, EcLevel::M).unwrap();
        let width = code.width();
        let colors = code.to_colors();
        let drawing = render(data).unwrap();
        // Each line ends in a newline, the last one too, so what is
        // printed after the code starts on a line of its own.
        assert!(drawing.ends_with('\n'), "{drawing:?}");
        let rows = read_back(&drawing);
        let size = width + 2 * QUIET_ZONE;
        // An odd size: the last line's lower halves are background.
        assert_eq!(size % 2, 1);
        assert_eq!(rows.len(), size + 1);
        assert!(rows[size].iter().all(|light| !light));
        for (y, row) in rows.iter().take(size).enumerate() {
            assert_eq!(row.len(), size);
            for (x, light) in row.iter().enumerate() {
                let in_code = (QUIET_ZONE..QUIET_ZONE + width).contains(&x)
                    && (QUIET_ZONE..QUIET_ZONE + width).contains(&y);
                let expected = if in_code {
                    colors[(y - QUIET_ZONE) * width + x - QUIET_ZONE] == Color::Light
                } else {
                    true
                };
                assert_eq!(*light, expected, "module ({x}, {y})");
            }
        }
    }

    #[test]
    fn an_invitation_fits_an_80_by_24_terminal_with_its_link() {
        // The longest invitation: every id is 32 characters.
        let link = format!("wisp://add/{}", "a".repeat(32)).to_ascii_uppercase();
        let drawing = render(&link).unwrap();
        let lines: Vec<&str> = drawing.lines().collect();
        // The link's line above it, a prompt line below it.
        assert!(lines.len() + 2 <= 24, "{} lines", lines.len());
        assert!(lines.iter().all(|l| l.chars().count() <= 80));
        // Version 3 (29 modules) in the alphanumeric mode.
        assert_eq!(lines[0].chars().count(), 29 + 2 * QUIET_ZONE);
    }
}
